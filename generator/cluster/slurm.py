"""``atlas slurm generate|examples``: one atlas job as a Slurm job array, one shard a task, and a job
after it that merges the shards, writes the wiring and builds the site.

Only the scripts and Slurm's own commands live here (``sbatch``, ``squeue``, ``scontrol``, ``scancel``,
``sinfo``); what a shard is and how shards merge is ``generator.cluster.shard_store``. Another scheduler is one more
module like this: a Kubernetes Indexed Job runs ``atlas generate ... --shard $JOB_COMPLETION_INDEX/N``.

The same command again submits only the shards that have not finished (each finished shard left a
record in the atlas) and a new merge job after them: a failed or cancelled task is redone alone, from
where it stopped.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from generator.atlas.store import AtlasStore
from generator.cluster.shard_store import check_merged, finished_shards
from generator.cluster.split import expand_ranges, ranges
from generator.errors import AtlasError
from generator.paths import logs_dir

# States of a job that has not ended yet (squeue's and scontrol's names).
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
          "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"}
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Request:
    """What ``atlas slurm`` was asked: the command and its options (without ``--shard``), the number of
    shards, and the Slurm settings of the tasks."""

    command: str  # generate | examples
    options: tuple[str, ...]  # the atlas command line each task runs, without --shard: ("generate", "--weights", ...)
    shards: int
    out: str
    model: str  # the model's name (its folder)
    model_args: tuple[str, ...]  # how the merge job's wiring names it: ("--model", "vgg16", "--weights", ...)
    device: str
    partition: str | None
    time: str | None
    gpus_per_task: int | None  # None: auto
    cpus_per_task: int | None
    compare: str | None
    site: bool
    python: str
    workdir: str

    @property
    def atlas(self) -> Path:
        return Path(os.path.abspath(os.path.join(self.workdir, self.out)))

    @property
    def logs(self) -> Path:
        return logs_dir(self.atlas)

    @property
    def stem(self) -> str:
        return f"{self.command}-{self.model}"

    @property
    def name(self) -> str:
        """The array's job name: the command, the model and the atlas folder (so its jobs can be found)."""
        return f"atlas-{self.stem}-{hashlib.sha256(str(self.atlas).encode()).hexdigest()[:8]}"


# --- the scripts ----------------------------------------------------------------------------------------------


def _quote(args) -> str:
    return " ".join(shlex.quote(str(a)) for a in args)


def _resources(req: Request, gpus: int) -> list[str]:
    lines = ["#SBATCH --ntasks=1", f"#SBATCH --chdir={req.workdir}"]
    if req.partition:
        lines.append(f"#SBATCH --partition={req.partition}")
    if req.time:
        lines.append(f"#SBATCH --time={req.time}")
    if req.cpus_per_task:
        lines.append(f"#SBATCH --cpus-per-task={req.cpus_per_task}")
    if gpus:
        lines.append(f"#SBATCH --gpus-per-task={gpus}")
    return lines


def array_script(req: Request, indices: list[int], gpus: int) -> str:
    """The job array: task K runs shard K/N of the command."""
    return "\n".join([
        "#!/bin/bash",
        f"#SBATCH --job-name={req.name}",
        f"#SBATCH --array={ranges(indices)}",
        f"#SBATCH --output={req.logs}/{req.stem}-%A_%a.log",
        *_resources(req, gpus),
        f"# Task K renders shard K/{req.shards} of the job into {req.out}. A task that fails or is cancelled keeps",
        "# what it finished: the same atlas slurm command again submits the shards without a finished record.",
        f'exec {_quote([req.python, "-m", "generator", *req.options])} --shard "$SLURM_ARRAY_TASK_ID/{req.shards}"',
        "",
    ])


def final_script(req: Request) -> str:
    """The job after the array: the merge, the wiring (generate) and the site."""
    atlas = [req.python, "-m", "generator"]
    steps = [_quote([*atlas, "merge", "--out", req.out])]
    if req.command == "generate":
        steps.append(_quote([*atlas, "wiring", *req.model_args, "--out", req.out]))
    if req.site:
        steps.append(_quote([*atlas, "site", "--data", req.out, "--out", "site_src",
                             *(["--compare", req.compare] if req.compare else [])]))
        if (Path(req.workdir) / "mkdocs.yml").exists():
            steps.append(_quote([req.python, "-m", "mkdocs", "build", "--strict"]))
    return "\n".join([
        "#!/bin/bash",
        f"#SBATCH --job-name={req.name}-merge",
        f"#SBATCH --output={req.logs}/{req.stem}-merge-%j.log",
        *_resources(req, 0),
        "# Runs once every task of the array has ended well (sbatch --dependency=afterok:<array>).",
        "set -eu",
        "export NO_MKDOCS_2_WARNING=1",
        *steps,
        "",
    ])


# --- Slurm's commands -----------------------------------------------------------------------------------------


def _slurm(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True)


def _require(command: str) -> None:
    if shutil.which(command) is None:
        raise AtlasError(f"{command} not found: atlas slurm runs on a Slurm login node (add --dry-run to see the "
                         "scripts, or run atlas generate|examples --shard K/N on each machine yourself)")


def cluster_gpus(partition: str | None) -> bool:
    """Whether the cluster's nodes (of ``partition``) offer GPUs as a generic resource."""
    if shutil.which("sinfo") is None:
        return True  # a dry run away from the cluster: show the GPU request a GPU job needs
    proc = _slurm(["sinfo", "-h", "-o", "%G", *(["-p", partition] if partition else [])])
    return proc.returncode == 0 and "gpu" in proc.stdout


def sbatch(args: list[str]) -> str:
    """Submit; the job id."""
    proc = _slurm(["sbatch", "--parsable", *args])
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()] or ["no reason given"]
        raise AtlasError(f"sbatch refused the job: {lines[-1].strip()}")
    return proc.stdout.strip().split(";")[0]


def queued(names: list[str]) -> list[str]:
    """Ids of the jobs of these names still in Slurm's queue."""
    proc = _slurm(["squeue", "-h", "-n", ",".join(names), "-o", "%i"])
    return proc.stdout.split() if proc.returncode == 0 else []


def job_states(job_id: str) -> dict[int | None, str]:
    """The state of each task of an array (by index), or of a single job (under None); {} once Slurm
    has forgotten the job."""
    proc = _slurm(["scontrol", "show", "job", "-o", str(job_id)])
    if proc.returncode != 0:
        return {}
    states: dict[int | None, str] = {}
    for line in proc.stdout.splitlines():
        state, task = re.search(r"\bJobState=(\S+)", line), re.search(r"\bArrayTaskId=(\S+)", line)
        if not state:
            continue
        if task:
            for index in expand_ranges(task.group(1).split("%")[0]):
                states[index] = state.group(1)
        else:
            states[None] = state.group(1)
    return states


def watch(array_id: str | None, final_id: str, poll: float = POLL_SECONDS) -> tuple[dict[int, str], str | None]:
    """Wait until every task of the array has ended, then the final job: (the tasks that did not
    complete, by index, with their state; the final job's state, None if it never ran)."""
    if array_id is not None:
        while True:
            tasks = job_states(array_id)
            if all(state not in ACTIVE for state in tasks.values()):
                break
            time.sleep(poll)
        failed = {k: s for k, s in tasks.items() if s != "COMPLETED"}
        if failed:
            _slurm(["scancel", final_id])  # it can never start (Slurm also drops it: --kill-on-invalid-dep)
            return failed, None
    while True:
        state = job_states(final_id).get(None)
        if state not in ACTIVE:
            return {}, state
        time.sleep(poll)


# --- the command ----------------------------------------------------------------------------------------------


def run(req: Request, wait: bool = False, dry_run: bool = False) -> int:
    """Submit the shards that have not finished and the merge after them; with ``wait``, see them end."""
    done = finished_shards(str(req.atlas), req.model, req.command, req.shards, list(req.options))
    todo = [k for k in range(req.shards) if k not in done]
    gpus = req.gpus_per_task
    if gpus is None:
        gpus = 0 if req.device == "cpu" else int(cluster_gpus(req.partition))
    array_file, final_file = req.logs / f"{req.stem}.sbatch", req.logs / f"{req.stem}-merge.sbatch"
    scripts = [(array_file, array_script(req, todo, gpus))] if todo else []
    scripts.append((final_file, final_script(req)))
    if dry_run:
        for path, text in scripts:
            after = ("" if path == array_file or not todo
                     else " --dependency=afterok:<the array's job id> --kill-on-invalid-dep=yes")
            print(f"# sbatch --parsable{after} {path}\n{text}")
        return 0
    _require("sbatch")
    waiting = queued([req.name, f"{req.name}-merge"])
    if waiting:
        raise AtlasError(f"jobs of this atlas are still in Slurm's queue ({', '.join(waiting)}); wait for them to end "
                         f"or scancel them, then run this again")
    req.logs.mkdir(parents=True, exist_ok=True)
    for path, text in scripts:
        path.write_text(text)
    array_id = sbatch([str(array_file)]) if todo else None
    final_id = sbatch([f"--dependency=afterok:{array_id}", "--kill-on-invalid-dep=yes", str(final_file)]
                      if array_id else [str(final_file)])
    kept = f"; shards {ranges(done)} had finished and are kept" if done else ""
    if array_id:
        print(f"submitted shards {ranges(todo)} of {req.shards} as job array {array_id} and the merge as job "
              f"{final_id} after it{kept}; logs in {req.logs}", flush=True)
    else:
        print(f"every shard had finished: submitted the merge as job {final_id}; logs in {req.logs}", flush=True)
    if not wait:
        print(f"watch them with: squeue -j {','.join(filter(None, [array_id, final_id]))}")
        return 0
    try:
        failed, final_state = watch(array_id, final_id)
    except KeyboardInterrupt:
        print(f"stopped waiting; the jobs run on (squeue -j {','.join(filter(None, [array_id, final_id]))})",
              file=sys.stderr)
        return 130
    if failed:
        shown = ", ".join(f"{k} {state}" for k, state in sorted(failed.items()))
        log = req.logs / f"{req.stem}-{array_id}_{min(failed)}.log"
        raise AtlasError(f"shard{'s' if len(failed) > 1 else ''} of job array {array_id} did not complete ({shown}; "
                         f"log {log}); the finished shards are kept: run the same command again to submit the rest")
    if final_state not in (None, "COMPLETED"):
        raise AtlasError(f"the merge job {final_id} ended {final_state} (log {req.logs}/{req.stem}-merge-{final_id}.log)")
    check_merged(AtlasStore(str(req.atlas), req.model))
    site = " and the site built" if req.site else ""
    print(f"done: {req.atlas / req.model} merged{site} (job array {array_id}, merge job {final_id})")
    return 0
