"""``atlas trust``: how far to trust a filter's picture, measured against the real images that drive it.

The scores and what each one means are ``generator.evidence.trust_scores``; the vectors they compare
are read on the device by ``generator.evidence.trust_probe``. This pass decides what to compute
(every rendered filter with dataset examples whose trust is missing or stale), reads the atlas's
pictures and the natural images each filter needs, and merges each filter's ``"trust"`` into its
record under the atlas's lock.

One pass per layer: the pictures and every natural image any filter of the layer needs go through the
model cut at every layer up to the target once each, in batches (one ``LayerProbe``).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generator.atlas.files import atomic_write_json, read_json
from generator.atlas.store import AtlasStore
from generator.errors import AtlasError
from generator.evidence.imagesets import ImageSet, load_image
from generator.evidence.trust_probe import (
    LayerProbe,
    Readout,
    auto_trust_batch,
    concat_readouts,
)
from generator.evidence.trust_scores import (
    SEED_PICTURES,
    TRUST_VERSION,
    FilterEvidence,
    against,
    filter_trust,
    is_current,
)
from generator.interrupt import StopFlag
from generator.network import backend
from generator.network.layers import Layer
from generator.network.models import LoadedModel
from generator.progress import Progress

PICK = 0x7472  # part of the seed of the deterministic random picks ("tr")


@dataclass(frozen=True)
class TrustConfig:
    """What the scores are computed against: the atlas's examples (image set, size, k) and weights."""

    model: str
    weights_sha256: str
    images: ImageSet
    size: int  # the examples' image side
    top: int  # the examples' k
    precision: str = "float32"
    backend: str = "tensorflow"

    def against(self) -> dict:
        """Stored with every filter's scores; a filter whose record says otherwise is computed again."""
        return against(self.images.sha256, self.size, self.top, self.weights_sha256)


@dataclass
class TrustSummary:
    computed: int = 0
    done: int = 0  # already there for these examples
    no_examples: int = 0  # rendered filters without an examples file
    layers: int = 0
    images: int = 0  # natural images read
    unreadable: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    out: str = ""

    def line(self) -> str:
        extra = f", {self.no_examples} without dataset examples" if self.no_examples else ""
        bad = f" ({self.unreadable} unreadable, left out)" if self.unreadable else ""
        return (f"trust of {self.computed} filters in {self.layers} layers computed from {self.images} natural "
                f"images{bad} in {self.seconds:.1f} s, {self.done} already done{extra}; in {self.out}")


def read_atlas(store: AtlasStore, model_args: str | None = None) -> tuple[dict, dict]:
    """The manifest and its examples record, or one line saying which command is missing (naming the
    network by ``model_args``, as the user gave it: a model file's folder name is no --model value)."""
    model_args = model_args or f"--model {store.model}"
    if not store.paths.manifest.exists():
        raise AtlasError(f"{store.paths.manifest}: no atlas here; run `atlas generate {model_args} --out "
                         f"{store.paths.root}` first")
    manifest = store.read_manifest()
    if "config_hash" not in manifest:
        raise AtlasError(f"{store.paths.model_dir}: the atlas has no pictures yet; run `atlas generate {model_args} "
                         f"--out {store.paths.root}` first")
    examples = manifest.get("examples")
    if not examples or not examples.get("images"):
        raise AtlasError(f"{store.paths.model_dir} has no dataset examples to check the pictures against; run "
                         f"`atlas examples --images DIR {model_args} --out {store.paths.root}` first")
    return manifest, examples


def check_images(examples: dict, images: ImageSet, folder: str) -> None:
    """The image set must be the one the examples came from (the same sorted list of files)."""
    recorded = examples["images"]
    if recorded.get("list_sha256") != images.sha256:
        raise AtlasError(f"--images {folder}: not the image set the dataset examples came from ({recorded.get('count')} "
                         f"images of {recorded.get('folder')}, list sha256 {str(recorded.get('list_sha256'))[:16]}; "
                         f"this folder has {len(images.files)}); give that folder")


def _picks(layer: Layer, f: int, purpose: int, choices: list[int], count: int) -> list[int]:
    """A deterministic random choice of ``count`` of ``choices`` for filter ``f`` (sorted)."""
    if not choices:
        return []
    rng = np.random.default_rng([PICK, layer.index, f, purpose])
    return sorted(int(c) for c in rng.choice(choices, size=min(count, len(choices)), replace=False))


def _random_image(layer: Layer, f: int, count: int, exclude: list[int]) -> int:
    """A deterministic random image index of ``count`` for filter ``f``, not one of ``exclude`` (unless
    they are all): ``_picks`` of the other indices, without listing them (an image set can be large)."""
    skip = sorted(set(exclude)) if len(set(exclude)) < count else []
    rng = np.random.default_rng([PICK, layer.index, f, 0])
    at = int(rng.choice(count - len(skip), size=1, replace=False)[0])  # the at-th index not skipped
    for index in skip:
        if index <= at:
            at += 1
    return at


def _picture_row(readout: Readout, row: int, first: bool) -> tuple[list[np.ndarray], float, np.ndarray]:
    """One picture's vectors per layer, its value at its strongest unit, and its vector at the layer
    before the target (the first layer: the input patch it reads)."""
    before = readout.patches[row] if first else readout.vectors[-2][row]
    return [v[row] for v in readout.vectors], float(readout.value[row]), before


def _load_picture(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), np.uint8)
    except OSError:
        raise AtlasError(f"{path}: not a readable picture; rerun `atlas generate` to write it again") from None


class LayerTrust:
    """The trust pass of one layer: its pictures and every natural image its filters need, through one
    ``LayerProbe``; per filter the sums and vectors its scores need, then the scores."""

    def __init__(self, store: AtlasStore, layer: Layer, config: TrustConfig, records: dict[int, dict],
                 rendered: list[int], todo: list[int]) -> None:
        self.store, self.layer, self.config, self.todo = store, layer, config, todo
        paths = store.paths
        index = {name: i for i, name in enumerate(config.images.files)}
        self.examples = {f: read_json(paths.examples_json(layer.name, f), f"dataset examples of {layer.name}:{f}")
                         for f in todo}
        # the seed agreement's baseline: the channel pictures of other filters, drawn per filter
        self.diversity = [f for f in todo if "diversity" in store.done_views(layer, records[f])]
        self.others = {f: _picks(layer, f, 1, [g for g in rendered if g != f], SEED_PICTURES) for f in self.diversity}
        self.channel = sorted(set(todo) | {g for picks in self.others.values() for g in picks})
        self.accent = {f: records[f]["views"]["accentuation"]["start"]["image"] for f in todo
                       if "accentuation" in store.done_views(layer, records[f])}  # scored too, with its start
        self.field = [f for f in todo if "field" in store.done_views(layer, records[f])]  # at its own scale
        # per filter its top and bottom examples at their units, and one random image (not a top one)
        # at its strongest unit: (image index, filter slot, kind, entry, y, x)
        self.requests = []
        count = len(config.images.files)
        for slot, f in enumerate(todo):
            tops = []
            for kind in ("top", "bottom"):
                for i, e in enumerate(self.examples[f].get(kind, [])[: config.top]):
                    if e.get("image") in index:
                        self.requests.append((index[e["image"]], slot, kind, i, int(e["y"]), int(e["x"])))
                        tops += [index[e["image"]]] if kind == "top" else []
            self.requests.append((_random_image(layer, f, count, tops), slot, "random", 0, -1, -1))
        self.natural = sorted({r[0] for r in self.requests})
        self.unreadable = 0

    @property
    def images(self) -> int:
        """Pictures and natural images this layer reads."""
        return (len(self.channel) + len(self.diversity) * SEED_PICTURES + len(self.accent) + len(self.field)
                + len(self.natural))

    def _read_pictures(self, probe: LayerProbe, files: list[Path], filters: list[int], batch: int,
                       pool: ThreadPoolExecutor, flag: StopFlag, progress: Progress) -> Readout | None:
        readouts = []
        for start in range(0, len(files), batch):
            if flag.stop:
                return None
            images = np.stack(list(pool.map(_load_picture, files[start:start + batch])))
            span = filters[start:start + batch]
            readouts.append(probe.read(images, range(len(span)), span))
            progress.update(len(span), f"{self.layer.name} pictures")
        return concat_readouts(readouts) if readouts else None

    def run(self, probe: LayerProbe, batch: int, pool: ThreadPoolExecutor, flag: StopFlag,
            progress: Progress) -> dict[int, dict] | None:
        """The trust records of the filters to do, or None if stopped part-way."""
        layer, paths, name = self.layer, self.store.paths, self.layer.name
        pictures = self._read_pictures(probe, [paths.filter_png(name, f) for f in self.channel], self.channel,
                                       batch, pool, flag, progress)
        if pictures is None:
            return None
        row = {f: i for i, f in enumerate(self.channel)}
        suffixes = [f".diversity-{i}" for i in range(1, SEED_PICTURES + 1)]
        diversity = None
        if self.diversity:
            diversity = self._read_pictures(probe, [paths.filter_png(name, f, s) for f in self.diversity for s in suffixes],
                                            [f for f in self.diversity for _ in suffixes], batch, pool, flag, progress)
            if diversity is None:
                return None
        accent = list(self.accent)
        accented = self._read_pictures(probe, [paths.filter_png(name, f, ".accentuation") for f in accent], accent,
                                       batch, pool, flag, progress) if accent else None
        if accent and accented is None:
            return None
        at_scale = self._read_pictures(probe, [paths.filter_png(name, f, ".field") for f in self.field], self.field,
                                       batch, pool, flag, progress) if self.field else None
        if self.field and at_scale is None:
            return None
        natural = self._read_natural(probe, batch, pool, flag, progress)
        if natural is None:
            return None
        depth = len(probe.layers)
        before = probe.layers[-2].name if depth > 1 else "input"
        names = [x.name for x in probe.layers]
        out = {}
        for slot, f in enumerate(self.todo):
            r = row[f]
            n_top = int(natural["top_count"][slot])
            top_values = [e["value"] for e in self.examples[f].get("top", [])]
            picture, picture_value, picture_before = _picture_row(pictures, r, layer.index == 0)
            evidence = FilterEvidence(
                picture=picture, picture_value=picture_value, picture_before=picture_before,
                top_mean=[s[slot] / n_top for s in natural["top_sum"]] if n_top else None,
                top_before=natural["top_before"][slot][natural["top_valid"][slot]],
                bottom_before=natural["bottom_before"][slot][natural["bottom_valid"][slot]],
                random=[v[slot] for v in natural["random"]] if natural["random_file"][slot] else None,
                strongest_photo=float(top_values[0]) if top_values else None,
                random_image=natural["random_file"][slot],
            )
            if natural["top_valid"][slot][0] and n_top >= 2:  # the strongest example, held out as the "picture"
                evidence.held = [v[slot] for v in natural["held"]]
                evidence.held_before = natural["top_before"][slot][0]
                evidence.rest_mean = [(s[slot] - h[slot]) / (n_top - 1) for s, h in zip(natural["top_sum"], natural["held"])]
            if f in self.accent:
                evidence.accent, evidence.accent_value, evidence.accent_before = _picture_row(
                    accented, accent.index(f), layer.index == 0)
                evidence.accent_start = self.accent[f]
            if f in self.field:
                evidence.field, evidence.field_value, evidence.field_before = _picture_row(
                    at_scale, self.field.index(f), layer.index == 0)
            if f in self.others:
                at = self.diversity.index(f) * SEED_PICTURES
                evidence.diversity = diversity.means[at:at + SEED_PICTURES]
                picks = self.others[f]
                evidence.others = pictures.means[[row[g] for g in picks]] if len(picks) >= 2 else None
                evidence.other_filters = picks
            out[f] = filter_trust(evidence, names, before, self.config.against())
        return out

    def _read_natural(self, probe: LayerProbe, batch: int, pool: ThreadPoolExecutor, flag: StopFlag,
                      progress: Progress) -> dict | None:
        """Per filter: the sum of its top examples' vectors and their count, the top and bottom
        examples' vectors at the layer before the target, and the random image's vectors."""
        k, n = self.config.top, len(self.todo)
        widths = [x.filters for x in probe.layers]
        d = probe.before_width
        acc = {
            "top_sum": [np.zeros((n, c), np.float64) for c in widths], "top_count": np.zeros(n, np.int64),
            "top_before": np.zeros((n, k, d), np.float32), "top_valid": np.zeros((n, k), bool),
            "bottom_before": np.zeros((n, k, d), np.float32), "bottom_valid": np.zeros((n, k), bool),
            "random": [np.zeros((n, c), np.float32) for c in widths], "random_file": [None] * n,
            "held": [np.zeros((n, c), np.float32) for c in widths],  # the strongest top example (the natural reference)
        }
        by_image: dict[int, list[tuple]] = {}
        for req in self.requests:
            by_image.setdefault(req[0], []).append(req)
        load = lambda i: load_image(self.config.images.path(i), self.config.size)  # noqa: E731
        batches = [self.natural[s:s + batch] for s in range(0, len(self.natural), batch)]
        ahead = [pool.submit(load, i) for i in batches[0]] if batches else []
        for b, ids in enumerate(batches):
            if flag.stop:
                return None
            futures = ahead
            ahead = [pool.submit(load, i) for i in batches[b + 1]] if b + 1 < len(batches) else []
            good = [(i, image) for i, image in zip(ids, (fut.result() for fut in futures)) if image is not None]
            self.unreadable += len(ids) - len(good)
            progress.update(len(ids), f"{self.layer.name} images")
            if not good:
                continue
            rows = {i: r for r, (i, _) in enumerate(good)}
            reqs = [req for i, _ in good for req in by_image[i]]
            readout = probe.read(np.stack([image for _, image in good]), [rows[q[0]] for q in reqs],
                                 [self.todo[q[1]] for q in reqs], [q[4] for q in reqs], [q[5] for q in reqs])
            for j, (image, slot, kind, i, _, _) in enumerate(reqs):
                if kind == "top":
                    for total, v in zip(acc["top_sum"], readout.vectors):
                        total[slot] += v[j]
                    acc["top_count"][slot] += 1
                    if i == 0:
                        for keep, v in zip(acc["held"], readout.vectors):
                            keep[slot] = v[j]
                if kind == "random":
                    for keep, v in zip(acc["random"], readout.vectors):
                        keep[slot] = v[j]
                    acc["random_file"][slot] = self.config.images.files[image]
                else:
                    before = readout.patches[j] if self.layer.index == 0 else readout.vectors[-2][j]
                    acc[f"{kind}_before"][slot, i] = before
                    acc[f"{kind}_valid"][slot, i] = True
        return acc


def plan_trust(store: AtlasStore, layers: list[Layer], config: TrustConfig, manifest: dict,
               examples: dict) -> tuple[list[LayerTrust], int, int]:
    """The layers' work: per layer the rendered filters with dataset examples whose trust is not yet
    there for these examples; and how many are done already, how many have no examples."""
    with_examples = set(examples.get("layers", []))
    against = config.against()
    plan, done, missing = [], 0, 0
    for layer in layers:
        if layer.name not in with_examples:
            continue
        records = store.records(layer, manifest["config_hash"])
        views = {f: store.done_views(layer, r) for f, r in records.items()}
        rendered = sorted(f for f, v in views.items() if "channel" in v)
        have = [f for f in rendered if store.paths.examples_json(layer.name, f).exists()]
        missing += len(rendered) - len(have)
        todo = [f for f in have if not is_current(records[f], against, "diversity" in views[f], "accentuation" in views[f],
                                                  "field" in views[f])]
        done += len(have) - len(todo)
        if todo:
            plan.append(LayerTrust(store, layer, config, records, rendered, todo))
    return plan, done, missing


def run_trust(loaded: LoadedModel, layers: list[Layer], config: TrustConfig, out: str, batch: int | None = None,
              facts: backend.DeviceFacts | None = None, progress: Progress | None = None) -> TrustSummary:
    """Compute and store the trust of every rendered filter with dataset examples in ``layers``.

    Under the atlas's lock: each filter's JSON is read again just before its ``"trust"`` is merged in
    and written whole, so nothing another command wrote is lost. A layer is written when all of it is
    computed; Ctrl-C stops at the next batch and keeps the layers written."""
    from generator.render.config import RenderConfig

    start = time.monotonic()
    facts = facts or backend.device_facts()
    store = AtlasStore(out, config.model)
    summary = TrustSummary(out=f"{out}/{config.model}")
    with store.lock():
        store.remove_stale_temporaries()
        manifest, examples = read_atlas(store)
        weights = manifest.get("weights", {})
        if weights.get("sha256") != config.weights_sha256:
            raise AtlasError(f"{store.paths.model_dir} holds an atlas of other weights ({weights.get('name')}, sha256 "
                             f"{str(weights.get('sha256'))[:16]}); use the same --weights")
        check_images(examples, config.images, str(config.images.root))
        render_config = RenderConfig(**manifest["config"])
        if render_config.hash != manifest["config_hash"]:
            raise AtlasError(f"{store.paths.manifest}: its config does not give its config hash; regenerate the atlas")
        plan, summary.done, summary.no_examples = plan_trust(store, layers, config, manifest, examples)
        progress = progress or Progress(sum(work.images for work in plan), unit="images")
        chunk = 1024 if facts.kind == "gpu" else 256
        with ThreadPoolExecutor(max_workers=8) as pool, StopFlag() as flag:
            for work in plan:
                if flag.stop:
                    break
                layer = work.layer
                size = batch or auto_trust_batch(layer, loaded.layers, max(config.size, render_config.size), facts)
                probe = LayerProbe(loaded, layer, config.precision, chunk, size)
                result = work.run(probe, size, pool, flag, progress)
                summary.unreadable += work.unreadable
                if result is None:
                    break
                summary.images += len(work.natural) - work.unreadable
                for f, trust in result.items():
                    path = store.paths.filter_json(layer.name, f)
                    record = read_json(path, f"record of {layer.name}:{f}")
                    record["trust"] = {**trust, "precision": config.precision, "backend": config.backend}
                    atomic_write_json(path, record)
                    summary.computed += 1
                store.refresh_layer(layer, render_config)
                summary.layers += 1
            summary.interrupted = flag.stop
        progress.close()
        if summary.computed:
            store.write_manifest(None, loaded, extra={"trust": {
                "version": TRUST_VERSION, **config.against(), "precision": config.precision, "backend": config.backend,
                "of": "each rendered filter with dataset examples: beyond nature, path similarity, two-image "
                      "prediction, seed agreement, the natural reference (NNNN.json, \"trust\")",
            }})
    summary.seconds = time.monotonic() - start
    return summary
