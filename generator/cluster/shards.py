"""Shards: one atlas job cut into N disjoint parts that run at once, on one machine or many, into one
atlas folder, and the merge that joins them into the atlas one machine would have made.

**The split** depends only on the settings and N, never on the machine. ``atlas generate`` cuts the
job's filters, in layer order, into N contiguous runs of about equal cost (``split_generate``): a
deep filter weighs what it costs, and a shard holds whole runs of few layers, so it renders full
batches and compiles few programs. The cost model (``picture_cost``): a filter costs its views'
pictures, each the activation values the network cut at its layer computes plus a share per image
pixel, which is what a GPU's time follows (FLOP do not: block5 has 177 times block1_conv1's FLOP and
takes 2.5 times its time on an H100); a shard that renders any filter of a layer with the contrast
term (the first layers) also pays once for that layer's reference pictures. ``atlas examples`` cuts the image list into contiguous runs at multiples of
``EXAMPLES_GRAIN`` images (a multiple of the CPU batch, so a shard's batches are the one-machine
run's batches); every image costs the same.

**Sharing one folder.** A shard holds the model folder shared and itself exclusively
(``atlas.locks.ShardLock``); it writes only its own filters' files, leaves the tables every shard would race
on (``layer.json``, the manifest's counts) to the merge, and when it has finished its part it leaves a
record in ``<model>/.shards/`` (settings, weights, its part and its counts). An examples shard's
result is its final tracker state.

**The merge** (``atlas merge``, ``generator.passes.merge``) joins the finished parts; until then
``atlas site`` refuses the atlas (``check_merged``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from generator.atlas.files import atomic_write_bytes, atomic_write_json, read_json
from generator.atlas.locks import ShardLock, lock_holder
from generator.atlas.store import AtlasStore
from generator.errors import AtlasError
from generator.network.layers import Layer
from generator.paths import AtlasPaths
from generator.render.config import RenderConfig
from generator.render.views import CHANNEL, DIVERSITY

EXAMPLES_GRAIN = 64  # images: shards of the examples pass start at multiples of this
COMMANDS = ("generate", "examples")


# --- K/N ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` (from 0)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``K/N`` -> Shard; anything else is one line saying what a shard looks like."""
    parts = text.split("/")
    try:
        index, count = (int(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        index = count = None
    if index is None:
        raise AtlasError(f"{text!r} is not K/N: part K of N parts, counted from 0 (0/4, 1/4, 2/4, 3/4)")
    if count < 1:
        raise AtlasError(f"{text!r}: N must be 1 or more")
    if not 0 <= index < count:
        raise AtlasError(f"{text!r}: K counts from 0 to N-1 (0/{count} … {count - 1}/{count})")
    return Shard(index, count)


def ranges(values) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2,5`` (the --filters syntax)."""
    out, values = [], sorted(values)
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(out)


def expand_ranges(spec: str) -> list[int]:
    """``0-2,5`` -> ``[0, 1, 2, 5]``."""
    out = []
    for part in filter(None, spec.split(",")):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


# --- the split of atlas generate ----------------------------------------------------------------------------


PIXEL_COST = 14.0  # activation values' worth of work per image pixel: the picture's own parameterization and transforms


def picture_cost(layer: Layer, size: int) -> float:
    """Cost of one picture of a filter of ``layer`` (per step), in activation values: every value of
    every map the network cut at the layer computes, plus ``PIXEL_COST`` per image pixel. On a GPU the
    render is bound by moving those values, not by FLOP: fit to the per-layer times of one H100
    (BENCHMARKS.md, GPU check), it is within 12% for every VGG16 layer but block1_conv2 (which runs
    faster), where FLOP put block5 at 177 times block1_conv1 and the H100 at 2.5 times."""
    from generator.network.layers import model_layers

    upstream = model_layers(layer_model(layer))[: layer.index + 1]
    return float(sum(x.output_size(size) ** 2 * x.filters for x in upstream)) + PIXEL_COST * size * size


def layer_model(layer: Layer) -> str:
    """The model whose table holds ``layer``."""
    from generator.network.layers import model_layers
    from generator.network.zoo import known_models

    for name in known_models():
        table = model_layers(name)
        if layer.index < len(table) and table[layer.index] == layer:
            return name
    raise AtlasError(f"{layer.name}: not a layer of a known model")


def filter_view_cost(layer: Layer, size: int, views, cost=picture_cost) -> float:
    """Cost of one filter of ``layer`` with all of ``views``: its pictures."""
    return cost(layer, size) * sum(view.images for view in views)


def reference_cost(layer: Layer, views, config: RenderConfig, cost=picture_cost) -> float:
    """What a shard pays once for a layer whose pictures carry the contrast term: the reference
    pictures it renders first (see ``render.LayerRenderer.reference``)."""
    from generator.render.renderer import REFERENCE_FILTERS

    contrasted = (config.method == "lucid" and config.contrast > 0 and layer.receptive_field <= config.contrast_field
                  and any(view in (CHANNEL, DIVERSITY) for view in views))
    return cost(layer, config.size) * min(REFERENCE_FILTERS, layer.filters) if contrasted else 0.0


@dataclass
class Split:
    """The parts of a job: ``shares[k]`` is shard k's (layer, filters) in layer order; ``loads[k]`` its cost."""

    shares: list[list[tuple[Layer, list[int]]]]
    loads: list[float]

    @property
    def spread(self) -> float:
        """The slowest shard against the mean (1.0: perfectly even)."""
        mean = sum(self.loads) / len(self.loads)
        return max(self.loads) / mean if mean else 1.0


def split_generate(work: list[tuple[Layer, list[int]]], views, config: RenderConfig, count: int,
                   cost=picture_cost) -> Split:
    """Cut ``work``'s filters, in layer order, into ``count`` contiguous runs: the cuts that make the
    slowest run cheapest (a binary search on its cost, each try dealt greedily), every shard holding
    at least one filter when there are enough. Contiguous runs keep each shard to few layers, so it
    renders full batches and compiles few programs. ``cost(layer, size)``: one picture's (the bench
    compares others)."""
    items = [(layer, f) for layer, filters in work for f in filters]
    unit = {layer.name: filter_view_cost(layer, config.size, views, cost) for layer, _ in work}
    overhead = {layer.name: reference_cost(layer, views, config, cost) for layer, _ in work}

    def deal(cap: float) -> tuple[list[list[int]], list[float]]:
        parts, loads, held = [[]], [0.0], set()
        for i, (layer, _) in enumerate(items):
            cost = unit[layer.name] + (0.0 if layer.name in held else overhead[layer.name])
            one_each = len(items) - i <= count - len(parts)  # as many filters left as shards still empty
            if parts[-1] and (loads[-1] + cost > cap or one_each):
                parts.append([])
                loads.append(0.0)
                held = set()
                cost = unit[layer.name] + overhead[layer.name]
            parts[-1].append(i)
            loads[-1] += cost
            held.add(layer.name)
        return parts, loads

    if not items:
        return Split([[] for _ in range(count)], [0.0] * count)
    lo = max(unit[name] + overhead[name] for name in unit)  # no cap below the dearest single filter
    hi = sum(unit[layer.name] for layer, _ in items) + sum(overhead.values())
    for _ in range(64):  # the same float steps everywhere: the split does not depend on the machine
        mid = (lo + hi) / 2
        if len(deal(mid)[0]) <= count:
            hi = mid
        else:
            lo = mid
    parts, loads = deal(hi)
    parts += [[] for _ in range(count - len(parts))]
    loads += [0.0] * (count - len(loads))
    shares = []
    for part in parts:
        held: dict[str, list[int]] = {}
        for i in part:
            held.setdefault(items[i][0].name, []).append(items[i][1])
        shares.append([(layer, held[layer.name]) for layer, _ in work if layer.name in held])
    return Split(shares, loads)


# --- jobs: what a shard belongs to --------------------------------------------------------------------------


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class GenerateJob:
    """An ``atlas generate`` run split ``count`` ways."""

    work: tuple
    views: tuple
    config: RenderConfig
    count: int
    weights: str = ""  # the weight source as given (a file's path), for the merge to load the model by
    command: str = "generate"
    _split: list = field(default_factory=list, compare=False, repr=False)

    def describe(self) -> dict:
        return {"command": self.command, "count": self.count, "config_hash": self.config.hash,
                "views": [v.name for v in self.views], "work": {layer.name: ranges(f) for layer, f in self.work}}

    @property
    def id(self) -> str:
        return _digest(self.describe())

    def split(self) -> Split:
        if not self._split:
            self._split.append(split_generate(list(self.work), self.views, self.config, self.count))
        return self._split[0]

    def share(self, index: int) -> list[tuple[Layer, list[int]]]:
        return self.split().shares[index]

    def settings(self) -> dict:
        return {"config": self.config.to_dict(), "weights": {"name": self.weights or self.config.weights,
                                                               "sha256": self.config.weights_sha256}}


def image_range(images: int, shard: Shard) -> tuple[int, int]:
    """The contiguous images [lo, hi) of ``shard``, cut at multiples of ``EXAMPLES_GRAIN``."""
    units = math.ceil(images / EXAMPLES_GRAIN)
    lo = units * shard.index // shard.count * EXAMPLES_GRAIN
    hi = units * (shard.index + 1) // shard.count * EXAMPLES_GRAIN
    return min(lo, images), min(hi, images)


@dataclass(frozen=True)
class ExamplesJob:
    """An ``atlas examples`` pass split ``count`` ways."""

    config: object  # examples.ExamplesConfig of the whole image set
    layers: tuple
    count: int
    weights: str = ""  # the weight source's name, for the merge to load the model by
    command: str = "examples"

    def describe(self) -> dict:
        c = self.config
        return {"command": self.command, "count": self.count, "model": c.model, "weights_sha256": c.weights_sha256,
                "list_sha256": c.images.sha256, "images": len(c.images.files), "size": c.size, "top": c.top,
                "layers": [layer.name for layer in self.layers], "precision": c.precision, "backend": c.backend,
                **({"labels_sha256": c.labels.sha256} if getattr(c, "labels", None) is not None else {})}

    @property
    def id(self) -> str:
        return _digest(self.describe())

    def range(self, index: int) -> tuple[int, int]:
        return image_range(len(self.config.images.files), Shard(index, self.count))

    def share(self, index: int):
        """The ExamplesConfig of shard ``index``: its images only (indices counted from its first)."""
        lo, hi = self.range(index)
        images = replace(self.config.images, files=self.config.images.files[lo:hi])
        labels = self.config.labels
        if labels is not None:
            labels = replace(labels, index=labels.index[lo:hi])
        return replace(self.config, images=images, labels=labels)

    def settings(self) -> dict:
        c = self.config
        return {"examples": {"images_root": str(Path(c.images.root).resolve()), "size": c.size, "top": c.top,
                             "name": c.name, "license": c.license, "precision": c.precision, "backend": c.backend,
                             "layers": [layer.name for layer in self.layers],
                             **({"labels": asdict(c.labels)} if c.labels is not None else {})},
                "weights": {"name": self.weights, "sha256": c.weights_sha256}}


def generate_units(work: list[tuple[Layer, list[int]]]) -> int:
    """Filters of a generate job: more shards than this would leave some empty."""
    return sum(len(f) for _, f in work)


def examples_units(images: int) -> int:
    """Runs of images an examples pass is cut into."""
    return math.ceil(images / EXAMPLES_GRAIN)


# --- a shard's store ------------------------------------------------------------------------------------------


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

    def __init__(self, root: Path | str, model: str, job, shard: Shard) -> None:
        super().__init__(root, model)
        self.job, self.shard = job, shard
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
            **_model_file(self.model),
            "share": self.share_description(), "result": result or {}, "host": platform.node(),
            "started": self.started, "ended": _now() if finished else None,
            "seconds": round(time.monotonic() - self.clock, 1) if finished else None,
        }
        atomic_write_json(self.file(".json"), record)

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


# --- records --------------------------------------------------------------------------------------------------


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


def _model_file(model: str) -> dict:
    """A user's network: where its file is, for the merge to read it again (a shard record is not
    published: ``atlas merge`` removes it)."""
    from generator.network.modelfile import reopen_record

    record = reopen_record(model)
    return {"model_file": record} if record else {}
