"""``atlas trust``: how far to trust a filter's picture, measured against the real images that drive it.

A feature visualization can show one thing while the network's natural behaviour is another (Geirhos
et al., "Don't trust your eyes: on the (un)reliability of feature visualizations", ICML 2024), and how
much a picture helps predict which of two real images drives a unit more is an empirical question
(Zimmermann et al., "How well do feature visualizations support causal understanding of CNN
activations?", NeurIPS 2021). Four checks per filter, from its channel picture, its dataset examples
(``atlas examples``) and the network:

beyond nature: the picture's highest unit of the filter's map before the activation, over the best
    natural example's (the examples pass's top value: the same measure).
path similarity: at each layer up to the target, Spearman's rank correlation between the picture's
    activation vector and the mean of the top-k natural examples' (after Geirhos et al.), beside the
    same for a random natural image: is the picture processed along the path real images take?
two-image prediction: over the top-k and bottom-k examples, the share of (top, bottom) pairs whose top
    image is closer to the picture (cosine similarity at the layer just before the target), an
    automated version of Zimmermann et al.'s task; 0.5 is chance.
seed agreement: the mean pairwise cosine similarity of the four diversity pictures at the target
    layer, beside that of four other filters' channel pictures.

The activation vectors are compared unit for unit: a picture fills the frame, a natural image drives
the unit in one place. At each layer the vector is that layer's activations (after its
nonlinearity) averaged over the *footprint* of one target unit, the units of that layer inside the
target unit's receptive field (``footprint``): for the picture at its own strongest unit, for each
natural example at the unit where the examples pass found its value, for the random image at its
strongest unit. At the first layer there is no layer before it; its two-image closeness is taken on
the network's input over the unit's receptive field, pixel by pixel (its mean colour would throw away
the very pattern a first-layer filter reads).

One pass per layer: the pictures and every natural image any filter of the layer needs go through the
model cut at every layer up to the target once each, in batches; the maps stay on the device as
running sums along their rows, from which any footprint's mean is two lookups and a masked sum.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from generator.atlas.files import atomic_write_json, read_json
from generator.atlas.store import AtlasStore
from generator.errors import AtlasError
from generator.evidence.imagesets import ImageSet, load_image
from generator.interrupt import StopFlag
from generator.network import backend, inputs
from generator.network.layers import Layer
from generator.network.models import LoadedModel
from generator.progress import Progress

TRUST_VERSION = 2  # 2: layers of fewer than MIN_RANKED filters left out of the path, seeds of one filter None
MIN_RANKED = 3  # a rank correlation of fewer values says nothing (of one: undefined)
SEED_PICTURES = 4  # the diversity view's pictures, and the other filters' channel pictures of its baseline
PICK = 0x7472  # part of the seed of the deterministic random picks ("tr")


# --- the scores, pure numpy ----------------------------------------------------------------------------


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given the mean of the ranks they span (as ``scipy.stats.rankdata``)."""
    a = np.asarray(values, np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    ordered = a[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]  # the start of each run of equal values
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    counts = np.diff(np.r_[starts, len(a)])
    out = np.empty(len(a), np.float64)
    out[order] = (starts + (counts + 1) / 2.0)[group]
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two vectors; 0 where either does not vary (it ranks nothing)."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    norm = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / norm) if norm > 0 else 0.0


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of the rows of ``a`` (N, D) with ``b`` (D,) or row by row with (N, D); 0 for a
    zero vector."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    dot = (a * b).sum(axis=-1)
    norm = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.where(norm > 0, dot / np.where(norm > 0, norm, 1.0), 0.0)


def pair_share(picture: np.ndarray, tops: np.ndarray, bottoms: np.ndarray) -> float | None:
    """The share of (top, bottom) pairs whose top image is closer to the picture (cosine similarity of
    their vectors), ties counting half; None without a pair."""
    if len(tops) == 0 or len(bottoms) == 0:
        return None
    up, down = cosine(tops, picture), cosine(bottoms, picture)
    wins = (up[:, None] > down[None, :]).sum() + 0.5 * (up[:, None] == down[None, :]).sum()
    return float(wins / (len(up) * len(down)))


def mean_pairwise_cosine(vectors: np.ndarray) -> float | None:
    """The mean cosine similarity over every pair of rows; None for fewer than two."""
    v = np.asarray(vectors, np.float64)
    if len(v) < 2:
        return None
    i, j = np.triu_indices(len(v), 1)
    return float(np.mean(cosine(v[i], v[j])))


# --- geometry -----------------------------------------------------------------------------------------------


def footprint(target: Layer, earlier: Layer, ys, xs, side: int) -> tuple[np.ndarray, ...]:
    """The units of ``earlier``'s map (``side`` x ``side``) that target unit(s) (``ys``, ``xs``) read:
    those whose receptive field lies inside the target unit's, i.e. whose centre is within
    ``(rf_target - rf_earlier) / 2`` pixels of the target unit's centre. Inclusive bounds (y0, y1, x0,
    x1), clipped to the map (a unit at the border reads padding there, which is no activation)."""
    half = (target.receptive_field - earlier.receptive_field) / 2.0

    def bounds(units):
        centre = target.start + np.asarray(units, np.float64) * target.stride
        lo = np.ceil((centre - half - earlier.start) / earlier.stride - 1e-6)
        hi = np.floor((centre + half - earlier.start) / earlier.stride + 1e-6)
        lo, hi = np.clip(lo, 0, side - 1), np.clip(hi, 0, side - 1)
        return lo.astype(np.int32), np.maximum(hi, lo).astype(np.int32)

    y0, y1 = bounds(ys)
    x0, x1 = bounds(xs)
    return y0, y1, x0, x1


def input_patch(x: np.ndarray, layer: Layer, y: int, x_: int) -> np.ndarray:
    """The network's input ``x`` (H, W, 3, preprocessed) over unit (y, x_)'s receptive field, flattened;
    zero (the network's own padding) where the field reaches past the image."""
    rf = layer.receptive_field
    cy, cx = layer.centre(y, x_)
    top, left = int(round(cy - (rf - 1) / 2)), int(round(cx - (rf - 1) / 2))
    patch = np.zeros((rf, rf, x.shape[-1]), np.float32)
    h, w = x.shape[:2]
    y0, x0, y1, x1 = max(0, top), max(0, left), min(h, top + rf), min(w, left + rf)
    if y1 > y0 and x1 > x0:
        patch[y0 - top:y1 - top, x0 - left:x1 - left] = x[y0:y1, x0:x1]
    return patch.ravel()


# --- reading units on the device ------------------------------------------------------------------------------


@dataclass
class Readout:
    """What one batch of images says at the requested units (R requests)."""

    vectors: list[np.ndarray]  # per layer up to the target: (R, C) its activation averaged over the footprint
    y: np.ndarray  # (R,) the target unit read
    x: np.ndarray
    value: np.ndarray  # (R,) the target filter's value there, before the activation
    patches: np.ndarray | None  # (R, rf*rf*3): the input over the unit's receptive field (first layer only)
    means: np.ndarray  # (B, C) per image, the target layer's activation averaged over the whole map


class LayerProbe:
    """The model cut at every layer up to ``target``; reads activation vectors of chosen target units.

    A request is (image row, filter, y, x); y = x = -1 asks for the filter's strongest unit in that
    image. Requests are read ``chunk`` at a time, one compiled program per image size."""

    def __init__(self, loaded: LoadedModel, target: Layer, precision: str = "float32", chunk: int = 256,
                 batch: int | None = None) -> None:
        import keras

        self.target = target
        self.layers = [layer for layer in loaded.layers if layer.index <= target.index]
        if not self.layers or self.layers[-1] != target:
            raise AtlasError(f"{target.name}: not a layer of {loaded.name}")
        self.mode = loaded.spec.preprocessing
        self.chunk, self.batch = chunk, batch
        self.net = loaded.tap_net(self.layers, precision)
        self.activations = [keras.activations.get(layer.activation) for layer in self.layers]
        self._programs: dict[tuple, tuple] = {}

    def _compiled(self, shape: tuple) -> tuple:
        """The three programs for one batch shape (each shape its own, so none is traced loosely)."""
        if shape not in self._programs:
            self._programs[shape] = tuple(backend.compile_fn(fn) for fn in (self._forward_fn, self._peaks_fn, self._pool_fn))
        return self._programs[shape]

    def _forward_fn(self, x, variables):
        """Every layer's activated map as running sums along its rows, (B, W + 1, H, C) with a leading
        zero column (so a row's sum over x0..x1 is two lookups); the target's map before its activation;
        the target's activated map averaged over each image."""
        from keras import ops

        maps = self.net(x, variables)
        tables = []
        for m, activation in zip(maps, self.activations):
            # columns first: TensorFlow's CPU scan is fastest along an outer axis
            running = ops.cumsum(ops.transpose(activation(m), (0, 2, 1, 3)), axis=1)
            tables.append(ops.pad(running, ((0, 0), (1, 0), (0, 0), (0, 0))))
        target = maps[-1]
        return tables, target, ops.mean(self.activations[-1](target), axis=(1, 2))

    def _peaks_fn(self, target, rows, filters):
        from keras import ops

        b, h, w, c = target.shape
        flat = ops.reshape(ops.transpose(target, (0, 3, 1, 2)), (b * c, h * w))
        picked = ops.take(flat, rows * c + filters, axis=0)  # (R, h * w)
        where = ops.cast(ops.argmax(picked, axis=1), "int32")
        return where // w, where % w

    def _pool_fn(self, tables, target, rows, filters, ys, xs, bounds):
        from keras import ops

        out = []
        for i, table in enumerate(tables):
            b, w1, h, c = table.shape
            flat = ops.reshape(table, (b * w1, h, c))
            y0, y1, x0, x1 = bounds[i, 0], bounds[i, 1], bounds[i, 2], bounds[i, 3]
            strip = ops.take(flat, rows * w1 + x1 + 1, axis=0) - ops.take(flat, rows * w1 + x0, axis=0)  # (R, h, C)
            line = ops.arange(h, dtype="int32")[None, :]
            inside = ops.cast(ops.logical_and(line >= y0[:, None], line <= y1[:, None]), "float32")
            count = ops.cast((y1 - y0 + 1) * (x1 - x0 + 1), "float32")
            out.append(ops.einsum("rhc,rh->rc", strip, inside) / count[:, None])
        _, th, tw, tc = target.shape
        flat = ops.reshape(target, (-1,))
        value = ops.take(flat, ((rows * th + ys) * tw + xs) * tc + filters)
        return out, value

    def read(self, images: np.ndarray, rows, filters, ys=None, xs=None) -> Readout:
        """``images`` (B, S, S, 3) uint8 RGB; per request its row in ``images``, its filter and unit
        (``ys``/``xs`` -1 or None: the filter's strongest unit in that image)."""
        from keras import ops

        rows = np.asarray(rows, np.int32)
        filters = np.asarray(filters, np.int32)
        n = len(rows)
        ys = np.full(n, -1, np.int32) if ys is None else np.asarray(ys, np.int32)
        xs = np.full(n, -1, np.int32) if xs is None else np.asarray(xs, np.int32)
        count = len(images)
        if self.batch and count < self.batch:  # every batch of a size the same shape: one program
            images = np.concatenate([images, np.zeros((self.batch - count, *images.shape[1:]), images.dtype)])
        x = inputs.from_uint8(images, self.mode)
        forward, peaks, pool = self._compiled(x.shape)
        tables, target, means = forward(ops.convert_to_tensor(x), self.net.variables)
        side = images.shape[1]
        sides = [layer.output_size(side) for layer in self.layers]
        vectors = [np.zeros((n, layer.filters), np.float32) for layer in self.layers]
        value = np.zeros(n, np.float32)
        out_y, out_x = ys.copy(), xs.copy()
        for start in range(0, n, self.chunk):
            span = slice(start, min(n, start + self.chunk))
            pad = self.chunk - (span.stop - span.start)
            r = np.pad(rows[span], (0, pad))
            f = np.pad(filters[span], (0, pad))
            cy, cx = np.pad(ys[span], (0, pad)), np.pad(xs[span], (0, pad))
            strongest = cy < 0
            if strongest.any():
                py, px = (backend.to_numpy(v) for v in peaks(target, ops.convert_to_tensor(r), ops.convert_to_tensor(f)))
                cy, cx = np.where(strongest, py, cy), np.where(strongest, px, cx)
            bounds = np.stack([np.stack(footprint(self.target, layer, cy, cx, s)) for layer, s in zip(self.layers, sides)])
            pooled, v = pool(tables, target, *(ops.convert_to_tensor(a) for a in (r, f, cy.astype(np.int32),
                                                                                        cx.astype(np.int32), bounds)))
            keep = span.stop - span.start
            for out, p in zip(vectors, pooled):
                out[span] = backend.to_numpy(p)[:keep]
            value[span] = backend.to_numpy(v)[:keep]
            out_y[span], out_x[span] = cy[:keep], cx[:keep]
        patches = None
        if self.target.index == 0:
            patches = np.stack([input_patch(x[r], self.target, y, x_) for r, y, x_ in zip(rows, out_y, out_x)]) \
                if n else np.zeros((0, self.target.receptive_field ** 2 * 3), np.float32)
        return Readout(vectors, out_y, out_x, value, patches, backend.to_numpy(means)[:count])


# --- one filter's record -----------------------------------------------------------------------------------


@dataclass
class FilterEvidence:
    """Everything one filter's scores are computed from; vectors per layer up to the target."""

    picture: list[np.ndarray]  # per layer (C,): the channel picture at its strongest unit
    picture_value: float  # the filter's value there, before the activation
    picture_before: np.ndarray  # (D,): the picture at the layer before the target (the input, first layer)
    top_mean: list[np.ndarray] | None  # per layer (C,): the mean of the top natural examples at their units
    top_before: np.ndarray  # (n_top, D)
    bottom_before: np.ndarray  # (n_bottom, D)
    random: list[np.ndarray] | None  # per layer (C,): a random natural image at its strongest unit
    strongest_photo: float | None  # the examples pass's top value
    random_image: str | None = None
    diversity: np.ndarray | None = None  # (4, C): the diversity pictures, averaged over the target map
    others: np.ndarray | None = None  # (n, C): other filters' channel pictures, the same way
    other_filters: list[int] = field(default_factory=list)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


def filter_trust(e: FilterEvidence, layers: list[str], before: str, against: dict) -> dict:
    """The ``"trust"`` record of one filter (the module docstring says what each score is), with a
    ``summary`` of one number per score for the layer table."""
    ratio = e.picture_value / e.strongest_photo if e.strongest_photo is not None and e.strongest_photo > 0 else None
    ranked = [i for i, m in enumerate(e.top_mean or []) if np.asarray(m).size >= MIN_RANKED]
    path = [spearman(e.picture[i], e.top_mean[i]) for i in ranked] or None
    path_random = [spearman(e.random[i], e.top_mean[i]) for i in ranked] if path and e.random else None
    two = pair_share(e.picture_before, e.top_before, e.bottom_before)
    seed = None
    if e.diversity is not None:  # a layer of one filter: its pictures' vectors are numbers, alike by nature
        alike = np.asarray(e.diversity).shape[-1] >= 2
        seed = {"diversity": _round(mean_pairwise_cosine(e.diversity)) if alike else None,
                "random_filters": _round(mean_pairwise_cosine(e.others)) if alike and e.others is not None else None,
                "filters": list(e.other_filters)}
    return {
        "version": TRUST_VERSION,
        "against": against,
        "beyond_nature": {"ratio": _round(ratio), "picture": _round(e.picture_value, 6),
                          "strongest_photo": _round(e.strongest_photo, 6)},
        "path_similarity": {"layers": [layers[i] for i in ranked], "picture": [_round(v) for v in path] if path else None,
                            "random_image": [_round(v) for v in path_random] if path_random else None,
                            "random_image_file": e.random_image, "top": len(e.top_before)},
        "two_image": {"score": _round(two), "pairs": len(e.top_before) * len(e.bottom_before), "layer": before},
        "seed_agreement": seed,
        "summary": {
            "beyond_nature": _round(ratio),
            "path": _round(float(np.mean(path))) if path else None,
            "path_random": _round(float(np.mean(path_random))) if path_random else None,
            "two_image": _round(two),
            "seed": seed["diversity"] if seed else None,
            "seed_random": seed["random_filters"] if seed else None,
        },
    }


# --- the pass --------------------------------------------------------------------------------------------------


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


def against(examples_sha256: str, size: int, top: int, weights_sha256: str) -> dict:
    """What a filter's scores were computed against: the examples' image set, size and k, the weights."""
    return {"examples": examples_sha256, "size": size, "top": top, "weights_sha256": weights_sha256}


def current_against(manifest: dict) -> dict | None:
    """What scores must have been computed against to belong to the atlas as its manifest stands (None
    without dataset examples): scores from an image set the examples were since replaced by are stale."""
    examples = manifest.get("examples") or {}
    images = examples.get("images") or {}
    if not images.get("list_sha256"):
        return None
    return against(images["list_sha256"], images.get("size"), examples.get("top"),
                   (manifest.get("weights") or {}).get("sha256"))


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


def read_atlas(store: AtlasStore) -> tuple[dict, dict]:
    """The manifest and its examples record, or one line saying which command is missing."""
    manifest = store.read_manifest()
    if "config_hash" not in manifest:
        raise AtlasError(f"{store.paths.model_dir}: the atlas has no pictures yet; run `atlas generate --model "
                         f"{store.model} --out {store.paths.root}` first")
    examples = manifest.get("examples")
    if not examples or not examples.get("images"):
        raise AtlasError(f"{store.paths.model_dir} has no dataset examples to check the pictures against; run "
                         f"`atlas examples --images DIR --model {store.model} --out {store.paths.root}` first")
    return manifest, examples


def check_images(examples: dict, images: ImageSet, folder: str) -> None:
    """The image set must be the one the examples came from (the same sorted list of files)."""
    recorded = examples["images"]
    if recorded.get("list_sha256") != images.sha256:
        raise AtlasError(f"--images {folder}: not the image set the dataset examples came from ({recorded.get('count')} "
                         f"images of {recorded.get('folder')}, list sha256 {str(recorded.get('list_sha256'))[:16]}; "
                         f"this folder has {len(images.files)}); give that folder")


def is_current(record: dict, against: dict, has_diversity: bool) -> bool:
    """Whether a filter's stored trust was computed against these examples and weights (and, once its
    diversity view exists, has its seed agreement)."""
    trust = record.get("trust")
    if not isinstance(trust, dict) or trust.get("version") != TRUST_VERSION or trust.get("against") != against:
        return False
    return trust.get("seed_agreement") is not None or not has_diversity


def auto_trust_batch(layer: Layer, layers: tuple[Layer, ...], size: int, facts: backend.DeviceFacts) -> int:
    """Images per batch: 16 on a CPU; on a GPU what a third of the free memory holds (every map up to
    the target in float32, its running sums, a transposed copy and the activation), at most 256."""
    if facts.kind != "gpu":
        return 16
    if not facts.free_bytes:
        return 32
    values = sum(x.output_size(size) ** 2 * x.filters * (1 if x.fused else 3) for x in layers[: layer.index + 1])
    return int(max(4, min(256, facts.free_bytes / 3 // max(1, values * 4 * 4))))


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


def _concat(readouts: list[Readout]) -> Readout:
    def cat(items):
        return np.concatenate(items) if items else np.zeros((0,))

    first = readouts[0]
    return Readout([cat([r.vectors[i] for r in readouts]) for i in range(len(first.vectors))],
                   cat([r.y for r in readouts]), cat([r.x for r in readouts]), cat([r.value for r in readouts]),
                   None if first.patches is None else cat([r.patches for r in readouts]), cat([r.means for r in readouts]))


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
        return len(self.channel) + len(self.diversity) * SEED_PICTURES + len(self.natural)

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
        return _concat(readouts) if readouts else None

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
            evidence = FilterEvidence(
                picture=[v[r] for v in pictures.vectors],
                picture_value=float(pictures.value[r]),
                picture_before=pictures.patches[r] if layer.index == 0 else pictures.vectors[depth - 2][r],
                top_mean=[s[slot] / n_top for s in natural["top_sum"]] if n_top else None,
                top_before=natural["top_before"][slot][natural["top_valid"][slot]],
                bottom_before=natural["bottom_before"][slot][natural["bottom_valid"][slot]],
                random=[v[slot] for v in natural["random"]] if natural["random_file"][slot] else None,
                strongest_photo=float(top_values[0]) if top_values else None,
                random_image=natural["random_file"][slot],
            )
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
        d = self.layer.receptive_field ** 2 * 3 if self.layer.index == 0 else widths[-2]
        acc = {
            "top_sum": [np.zeros((n, c), np.float64) for c in widths], "top_count": np.zeros(n, np.int64),
            "top_before": np.zeros((n, k, d), np.float32), "top_valid": np.zeros((n, k), bool),
            "bottom_before": np.zeros((n, k, d), np.float32), "bottom_valid": np.zeros((n, k), bool),
            "random": [np.zeros((n, c), np.float32) for c in widths], "random_file": [None] * n,
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
        todo = [f for f in have if not is_current(records[f], against, "diversity" in views[f])]
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
                      "prediction, seed agreement (NNNN.json, \"trust\")",
            }})
    summary.seconds = time.monotonic() - start
    return summary
