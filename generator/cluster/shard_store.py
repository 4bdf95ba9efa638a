"""The shard store: one shard of a job writing into the atlas folder beside the job's other shards, the
records they leave, and how far a job has come.

**Sharing one folder.** A shard holds the model folder shared and itself exclusively
(``atlas.locks.ShardLock``); it writes only its own filters' files, leaves the tables every shard
would race on (``layer.json``, the manifest's counts) to the merge, and when it has finished its part
it leaves a record in ``<model>/.shards/`` (settings, weights, its part and its counts). An examples
shard's result is its final tracker state.

**The merge** (``atlas merge``, ``generator.passes.merge``) joins the finished parts; until then
``atlas site`` refuses the atlas (``check_merged``).
"""

from __future__ import annotations

import datetime as _dt
import io
import platform
import sys
import time
from pathlib import Path

import numpy as np

from generator.atlas.files import atomic_write_bytes, atomic_write_json, read_json
from generator.atlas.locks import ShardLock, lock_holder
from generator.atlas.store import AtlasStore
from generator.cluster.jobs import COMMANDS
from generator.cluster.split import Shard, ranges
from generator.errors import AtlasError
from generator.network.layers import Layer
from generator.network.zoo import ModelSpec
from generator.paths import AtlasPaths
from generator.render.config import RenderConfig


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def command_line() -> list[str]:
    """This process's atlas arguments without ``--shard``: what every shard of a job shares."""
    args, out, skip = sys.argv[1:], [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--shard":
            skip = True
        elif not arg.startswith("--shard="):
            out.append(arg)
    return out


class ShardPaths(AtlasPaths):
    """The layout as one examples shard sees it: its checkpoint is its own."""

    def __init__(self, root: Path, model: str, command: str, shard: Shard) -> None:
        super().__init__(root, model)
        object.__setattr__(self, "_own", (command, shard))

    @property
    def examples_state(self) -> Path:
        command, shard = self._own
        return self.shard_file(command, shard.index, shard.count, ".state.npz")


class ShardStore(AtlasStore):
    """The atlas as one shard of a job writes it, beside the job's other shards at the same time.

    It holds the model folder shared and itself alone (``ShardLock``); it reads and writes the manifest
    only under the manifest lock, and writes it only when it is missing or being replaced; it leaves
    ``layer.json`` to the merge (``refresh_layer`` only reads, ``write_layer`` does nothing); it removes
    no temporary files (another shard may be writing them: the merge, alone in the folder, does); and
    it records what it finished in ``.shards/``.
    """

    def __init__(self, root: Path | str, model: str, job, shard: Shard, network: ModelSpec | None = None) -> None:
        super().__init__(root, model)
        self.job, self.shard = job, shard
        self.network = network  # what the merge needs of a user's network, recorded with each shard
        self.paths = ShardPaths(Path(root), model, job.command, shard)
        self.started = _now()
        self.clock = time.monotonic()

    def file(self, suffix: str) -> Path:
        return self.paths.shard_file(self.job.command, self.shard.index, self.shard.count, suffix)

    def lock(self) -> ShardLock:
        return ShardLock(self.paths, self.job.command, self.shard.index, self.shard.count)

    def remove_stale_temporaries(self) -> None:
        pass

    def check_job(self, force: bool) -> None:
        """Refuse (or with ``force`` remove) the records of another job of this command: two jobs'
        shards at once could write one filter's file together. Call under the manifest lock."""
        for path, record in read_records(self):
            if record.get("command") != self.job.command or record.get("job") == self.job.id:
                continue
            holder = lock_holder(self.paths.shard_file(record["command"], record["shard"], record["count"], ".lock"))
            if holder:
                raise AtlasError(f"{self.paths.model_dir} is being written by a shard of another {self.job.command} "
                                 f"job ({holder}); wait for it to end or use another --out")
            if not force:
                raise AtlasError(
                    f"{self.paths.model_dir} holds shards of another {self.job.command} job (split "
                    f"{record['count']} ways, {' '.join(record.get('command_line', []))[:120]}); finish it and run "
                    f"`atlas merge --out {self.paths.root}`, or add --force to drop its records")
            for suffix in (".json", ".npz", ".state.npz"):  # its record and results; lock files stay (ours may share a name)
                self.paths.shard_file(record["command"], record["shard"], record["count"], suffix).unlink(missing_ok=True)

    def begin(self, force: bool) -> bool:
        """Check the folder holds no other job's shards and sign this one in; True if this shard had
        already finished its part (its record and result are kept). Call under the manifest lock."""
        self.check_job(force)
        path = self.file(".json")
        if path.exists():
            old = read_json(path, "shard record")
            if (old.get("job") == self.job.id and old.get("finished")
                    and (self.job.command != "examples" or self.file(".npz").exists())):
                return True
        self.write_record(finished=False)
        return False

    def prepare(self, config: RenderConfig, loaded, force: bool) -> None:
        with self.manifest_lock():
            old = read_json(self.paths.manifest, "manifest") if self.paths.manifest.exists() else {}
            if old.get("config_hash") != config.hash:
                super().prepare(config, loaded, force)
            self.begin(force)

    def refresh_layer(self, layer: Layer, config: RenderConfig) -> dict[int, dict]:
        return self.rows(layer, config.hash)

    def write_layer(self, layer: Layer, rows: dict[int, dict], config: RenderConfig) -> None:
        pass

    def write_record(self, finished: bool, result: dict | None = None) -> None:
        """What this shard is and, once ``finished``, what it did."""
        record = {
            "command": self.job.command, "shard": self.shard.index, "count": self.shard.count, "job": self.job.id,
            "finished": finished, "command_line": command_line(), "model": self.model, **self.job.settings(),
            **self._network_record(),
            "share": self.share_description(), "result": result or {}, "host": platform.node(),
            "started": self.started, "ended": _now() if finished else None,
            "seconds": round(time.monotonic() - self.clock, 1) if finished else None,
        }
        atomic_write_json(self.file(".json"), record)

    def _network_record(self) -> dict:
        """A user's network as the manifest describes it (no path to its file): the merge writes the
        manifest from it without reading the file or starting a backend."""
        from generator.network.modelfile import describe

        spec = self.network
        return {"user_model": describe(spec, spec.layers)} if spec is not None and not spec.zoo else {}

    def share_description(self) -> dict:
        if self.job.command == "generate":
            return {"work": {layer.name: ranges(f) for layer, f in self.job.share(self.shard.index)},
                    "views": [v.name for v in self.job.views], "cost": self.job.split().loads[self.shard.index]}
        lo, hi = self.job.range(self.shard.index)
        return {"images": [lo, hi]}

    def finish_examples(self, state: list[dict], skips: list[tuple[int, str]]) -> None:
        """Keep this shard's final tracker state and the files it skipped, with their reasons (image
        indices of the whole set), for the merge."""
        lo, hi = self.job.range(self.shard.index)
        shifted = []
        for s in state:
            s = dict(s)
            for key in ("top_img", "bot_img"):
                if key in s:
                    s[key] = np.where(s[key] >= 0, s[key] + lo, s[key]).astype(np.int32)
            if "pred" in s:  # a labelled pass's predictions: each image at its row of the whole set
                whole = np.full((len(self.job.config.images.files), s["pred"].shape[1]), -1, np.int32)
                whole[lo:hi] = np.asarray(s["pred"])[: hi - lo]
                s["pred"] = whole
            shifted.append(s)
        save_state(self.file(".npz"), shifted)
        self.write_record(finished=True, result={"skipped": len(skips),
                                                 "skips": [[int(i) + lo, reason] for i, reason in skips]})
        self.paths.examples_state.unlink(missing_ok=True)


def save_state(path: Path, state: list[dict]) -> None:
    arrays = {f"{i}:{key}": np.asarray(value) for i, s in enumerate(state) for key, value in s.items()}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path, layers: int) -> list[dict]:
    """A finished shard's tracker state: one part per layer, then the class part of a labelled pass."""
    try:
        with np.load(path) as data:
            parts: dict[int, dict] = {}
            for name in data.files:
                i, key = name.split(":", 1)
                parts.setdefault(int(i), {})[key] = data[name]
            if sorted(parts) != list(range(len(parts))) or len(parts) < layers:
                raise ValueError("parts missing")
            return [parts[i] for i in range(len(parts))]
    except (OSError, ValueError, KeyError):
        raise AtlasError(f"{path}: unreadable examples state of a finished shard; run that shard again") from None


def read_records(store: AtlasStore) -> list[tuple[Path, dict]]:
    folder = store.paths.shards_dir
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*-of-*.json")):
        record = read_json(path, "shard record")
        if record.get("command") in COMMANDS:
            out.append((path, record))
    return out


def remove_job_files(paths: AtlasPaths, command: str, count: int) -> None:
    """Every file of a merged job's shards (call holding the model folder alone)."""
    for path in paths.shards_dir.glob(f"{command}-*-of-{count}.*"):
        path.unlink(missing_ok=True)


def finished_shards(out: str, model: str, command: str, count: int, line: list[str]) -> list[int]:
    """Shards of the job ``atlas <line> --shard K/count`` whose records say they finished."""
    done = []
    for _, record in read_records(AtlasStore(out, model)):
        if (record["command"], record["count"], record.get("command_line"), record.get("finished")) == (
                command, count, line, True):
            done.append(record["shard"])
    return sorted(done)


def job_progress(records: list[dict], count: int) -> tuple[list[int], list[int], list[int]]:
    finished = sorted(r["shard"] for r in records if r.get("finished"))
    started = sorted(r["shard"] for r in records if not r.get("finished"))
    missing = [k for k in range(count) if k not in finished and k not in started]
    return finished, started, missing


def describe_missing(command: str, count: int, started: list[int], missing: list[int]) -> str:
    parts = []
    if started:
        parts.append(f"shard{'s' if len(started) > 1 else ''} {ranges(started)} started but did not finish")
    if missing:
        parts.append(f"shard{'s' if len(missing) > 1 else ''} {ranges(missing)} never ran")
    return f"the {command} job split {count} ways is not complete: {' and '.join(parts)}"


def check_merged(store: AtlasStore) -> None:
    """Refuse an atlas whose shards are not merged (for ``atlas site``), in one line."""
    jobs = {}
    for _, record in read_records(store):
        jobs.setdefault((record["command"], record["count"]), []).append(record)
    for (command, count), records in jobs.items():
        finished, started, missing = job_progress(records, count)
        if started or missing:
            raise AtlasError(f"{store.paths.model_dir}: {describe_missing(command, count, started, missing)}; run "
                             f"them (--shard K/{count}, or the same atlas slurm command again), then "
                             f"`atlas merge --out {store.paths.root}`")
        raise AtlasError(f"{store.paths.model_dir}: the {count} shards of its {command} job are not merged yet; run "
                         f"`atlas merge --out {store.paths.root}` first")
