"""Giving a shard job up. A job whose shards never all finish would otherwise keep ``atlas merge`` and
``atlas site`` refusing the atlas for ever; two things end it:

- a whole run (no ``--shard``) that finishes and did all of the job's work: the job's records are
  dropped at its end (``supersede``), since the atlas is what the merge would have made;
- ``atlas merge --forget-shards``: the user gives the unfinished jobs up (``unfinished_jobs`` names
  them, ``forget_job`` removes their records, states and lock files; what their shards rendered stays).
"""

from __future__ import annotations

from generator.atlas.store import AtlasStore
from generator.cluster.shard_store import job_progress, read_records
from generator.cluster.split import expand_ranges
from generator.errors import AtlasError
from generator.paths import AtlasPaths

SHARD_FILES = (".json", ".npz", ".state.npz", ".lock")


def jobs_of(records: list[dict]) -> dict[tuple[str, str, int], list[dict]]:
    """The records grouped by job: (command, job id, shard count) -> its records."""
    jobs: dict[tuple[str, str, int], list[dict]] = {}
    for record in records:
        jobs.setdefault((record["command"], record.get("job", ""), record["count"]), []).append(record)
    return jobs


def unfinished_jobs(records: list[dict]) -> dict[tuple[str, str, int], list[dict]]:
    """The jobs some of whose shards did not finish (or never ran)."""
    out = {}
    for key, group in jobs_of(records).items():
        _, started, missing = job_progress(group, key[2])
        if started or missing:
            out[key] = group
    return out


def forget_job(paths: AtlasPaths, group: list[dict]) -> None:
    """Remove every file of a job's shards (call holding the model folder alone)."""
    for record in group:
        for suffix in SHARD_FILES:
            paths.shard_file(record["command"], record["shard"], record["count"], suffix).unlink(missing_ok=True)


def _covers(run: dict, job: dict) -> bool:
    """Whether a whole run (its job's description) did all the work of the shard job ``job``."""
    if run.get("command") != job.get("command"):
        return False
    if run["command"] == "generate":
        if run["config_hash"] != job.get("config_hash") or not set(job.get("views", [])) <= set(run["views"]):
            return False
        return all(set(expand_ranges(spec)) <= set(expand_ranges(run["work"].get(name, "")))
                   for name, spec in job.get("work", {}).items())
    same = {k: v for k, v in run.items() if k not in ("count", "layers")}
    return same == {k: v for k, v in job.items() if k not in ("count", "layers")} and set(job.get("layers", [])) <= set(
        run["layers"])


def supersede(root: str, model: str, run_job) -> list[str]:
    """After a whole run of ``run_job`` finished: drop the records of the shard jobs whose work it did
    (finished or not, merged or not: the atlas is now what their merge would make). One line each.
    Nothing is dropped while a shard holds the folder."""
    store = AtlasStore(root, model)
    if not read_records(store):
        return []
    run = run_job.describe()
    lines = []
    try:
        with store.lock():
            for (command, _, count), group in jobs_of([r for _, r in read_records(store)]).items():
                whole = group[0].get("whole")
                if isinstance(whole, dict) and _covers(run, whole):
                    forget_job(store.paths, group)
                    lines.append(f"the records of an earlier {command} job split {count} ways were dropped: this "
                                 "run did its work")
    except AtlasError:
        return []
    return lines
