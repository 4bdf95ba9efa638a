"""``atlas examples``: the real image patches that drive each filter furthest up and down.

One forward pass over an image set serves every requested layer at once (the model cut at all their
pre-activation maps). Per filter, on the device and streaming, it keeps the top ``k`` images by the
spatial maximum of the filter's map and the bottom ``k`` by its minimum, each with where it happened,
and a histogram of the per-image maxima: memory stays ``k`` x filters whatever the number of images.
Images are decoded by a pool of CPU threads a few batches ahead of the device.

The pass is checkpointed every ``checkpoint`` images (atomically, in the model folder); an interrupted
or killed run resumes from its last checkpoint, with the batches cut exactly as before, so the result
equals an uninterrupted run byte for byte. At the end each filter gets ``NNNN.examples.json`` and one
WebP sprite of its crops (the receptive field around each position; where it reaches past the image,
grey), and the manifest records the image set.

With ``--labels`` the same pass also counts each class, and for a network with a classifier records each
image's top predictions and each filter's votes for the classes (``generator.classes``): every filter's
``examples.json`` gains ``classes``, its entries a ``label``, and the model ``accuracy.json``.
"""

from __future__ import annotations

import functools
import io
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from generator import backend, classes, inputs
from generator.errors import AtlasError
from generator.imagesets import ImageSet, load_image
from generator.interrupt import StopFlag
from generator.labels import LabelSet
from generator.layers import Layer
from generator.models import LoadedModel
from generator.progress import Progress
from generator.store import AtlasStore, atomic_write_bytes, atomic_write_json, read_json

HIST_BINS = 120  # uniform in sign(v) log10(1 + |v|) over +-HIST_DECADES: 0.1 decade per bin
HIST_DECADES = 6.0
CELL = 64  # side of one crop in the sprites
GREY = 128
STATE_VERSION = 1


@dataclass(frozen=True)
class ExamplesConfig:
    model: str
    weights_sha256: str
    size: int
    top: int
    images: ImageSet
    name: str | None = None
    license: str | None = None
    precision: str = "float32"
    backend: str = "tensorflow"
    labels: LabelSet | None = None  # each image's class (--labels)

    def image_set(self, skipped: int = 0) -> dict:
        """What the manifest says of the image set."""
        return {"folder": self.images.root.name, "count": len(self.images.files), "skipped": skipped,
                "list_sha256": self.images.sha256, "size": self.size, "name": self.name, "license": self.license}

    def fingerprint(self, layers: list[Layer], batch: int) -> dict:
        """Everything a checkpoint must share with this run to be resumed by it."""
        out = {"version": STATE_VERSION, "model": self.model, "weights_sha256": self.weights_sha256,
               "list_sha256": self.images.sha256, "size": self.size, "top": self.top, "batch": batch,
               "layers": [layer.name for layer in layers], "precision": self.precision, "backend": self.backend}
        if self.labels is not None:
            out["labels_sha256"] = self.labels.sha256
        return out


@dataclass
class ExamplesSummary:
    images: int
    skipped: int
    layers: int
    filters: int
    seconds: float
    interrupted: bool = False
    resumed_at: int = 0
    out: str = ""
    timings: dict = field(default_factory=dict)

    def line(self) -> str:
        rate = (self.images - self.resumed_at) / self.seconds if self.seconds > 0 else 0.0
        resumed = f", resumed at image {self.resumed_at}" if self.resumed_at else ""
        skipped = f" ({self.skipped} unreadable, skipped)" if self.skipped else ""
        return (f"{self.images} images{skipped} through {self.layers} layers in {self.seconds:.1f} s "
                f"({rate:.1f} images/s{resumed}); examples of {self.filters} filters in {self.out}")


# --- the streaming reduction on the device ----------------------------------------------------------------


def _symlog(x):
    from keras import ops

    return ops.sign(x) * ops.log10(1.0 + ops.abs(x))


def histogram_edges() -> list[float]:
    """The bin edges of the per-image-maximum histograms, in value units."""
    t = np.linspace(-HIST_DECADES, HIST_DECADES, HIST_BINS + 1)
    return [float(f"{np.sign(v) * (10 ** abs(v) - 1):.6g}") for v in t]


HISTOGRAM_EDGES = histogram_edges()


class Tracker:
    """Running top-k / bottom-k and histograms of every filter of ``layers``, updated per batch."""

    def __init__(self, loaded: LoadedModel, layers: list[Layer], top: int, precision: str, mode: str,
                 labels: LabelSet | None = None, batch: int = 0, count: int = 0) -> None:
        self.layers, self.k, self.mode = layers, top, mode
        self.labels = labels  # with labels: the class counts; with a classifier too: predictions and votes
        self.classify = labels is not None and loaded.spec.head is not None
        self.count = count
        if self.classify:
            self.net = classes.ClassNet(loaded, layers, precision, batch)
            self._value_and_grad = backend.value_and_grad(self._class_logit)
        else:
            self.net = loaded.tap_net(layers, precision)
        self._update = backend.compile_fn(self._update_fn)

    def initial_state(self) -> list[dict]:
        state = []
        for layer in self.layers:
            c = layer.filters
            state.append({
                "top_val": np.full((self.k, c), -np.inf, np.float32), "top_img": np.full((self.k, c), -1, np.int32),
                "top_pos": np.zeros((self.k, c), np.int32),
                "bot_val": np.full((self.k, c), -np.inf, np.float32), "bot_img": np.full((self.k, c), -1, np.int32),
                "bot_pos": np.zeros((self.k, c), np.int32),
                "hist": np.zeros((c, HIST_BINS), np.int32),
            })
            if self.classify:
                state[-1]["votes"] = np.zeros((len(self.labels.classes), c), np.float32)
        if self.labels is not None:
            state.append({"count": np.zeros((len(self.labels.classes),), np.int32)})
            if self.classify:
                state[-1]["pred"] = np.full((self.count + self.batch_rows, classes.PREDICTIONS), -1, np.int32)
        return state

    @property
    def batch_rows(self) -> int:
        return self.net.shapes[0][0] if self.classify else 0

    def _class_logit(self, offsets, x, labels, variables):
        """The sum over the batch of each labelled image's own class logit (and the maps and logits)."""
        from keras import ops

        maps, logits = self.net(x, offsets, variables)
        known = labels >= 0
        picked = ops.take_along_axis(logits, ops.expand_dims(ops.where(known, labels, 0), 1), axis=1)[:, 0]
        return ops.sum(ops.where(known, picked, 0.0)), (maps, logits)

    def _merge(self, values, images, positions, new_values, new_images, new_positions):
        """Keep the k largest of the running entries and a batch's; ties go to the lower image index
        (running entries come first, and top_k keeps the earlier of equal values)."""
        from keras import ops

        all_values = ops.transpose(ops.concatenate([values, new_values], axis=0))  # (C, k + B)
        all_images = ops.transpose(ops.concatenate([images, new_images], axis=0))
        all_positions = ops.transpose(ops.concatenate([positions, new_positions], axis=0))
        kept, index = ops.top_k(all_values, self.k, sorted=True)
        pick = lambda a: ops.transpose(ops.take_along_axis(a, index, axis=1))  # noqa: E731
        return ops.transpose(kept), pick(all_images), pick(all_positions)

    def _update_fn(self, state, images, valid, first, labels, variables):
        from keras import ops

        x = inputs.from_rgb(ops.cast(images, "float32") / 255.0, self.mode)
        if self.classify:
            _, (maps, logits), grads = self._value_and_grad(self.net.zero_offsets(), x, labels, variables)
        else:
            maps = self.net(x, variables)
        ids = first + ops.arange(images.shape[0], dtype="int32")
        out = []
        if self.labels is not None:
            known = ops.logical_and(valid, labels >= 0)
            onehot = ops.one_hot(ops.where(known, labels, 0), len(self.labels.classes)) * ops.cast(known, "float32")[:, None]
            extra = {"count": state[-1]["count"] + ops.cast(ops.sum(onehot, axis=0), "int32")}
            if self.classify:
                _, top = ops.top_k(logits, min(classes.PREDICTIONS, logits.shape[1]))
                top = ops.pad(ops.cast(top, "int32"), [[0, 0], [0, classes.PREDICTIONS - top.shape[1]]], constant_values=-1)
                top = ops.where(valid[:, None], top, -1)  # an unreadable image has no prediction
                extra["pred"] = ops.slice_update(state[-1]["pred"], (first, 0), top)
        for i, (s, m) in enumerate(zip(state, maps)):
            b, h, w, c = m.shape
            flat = ops.reshape(m, (b, h * w, c))
            keep = valid[:, None]
            high = ops.where(keep, ops.max(flat, axis=1), -np.inf)
            low = ops.where(keep, -ops.min(flat, axis=1), -np.inf)
            where_high = ops.cast(ops.argmax(flat, axis=1), "int32")
            where_low = ops.cast(ops.argmin(flat, axis=1), "int32")
            idb = ops.broadcast_to(ids[:, None], (b, c))
            top = self._merge(s["top_val"], s["top_img"], s["top_pos"], high, idb, where_high)
            bot = self._merge(s["bot_val"], s["bot_img"], s["bot_pos"], low, idb, where_low)
            level = (_symlog(ops.where(keep, high, 0.0)) + HIST_DECADES) / (2 * HIST_DECADES) * HIST_BINS
            bins = ops.clip(ops.cast(ops.floor(level), "int32"), 0, HIST_BINS - 1)
            counts = ops.sum(ops.one_hot(bins, HIST_BINS) * ops.cast(keep, "float32")[:, :, None], axis=0)
            out.append({"top_val": top[0], "top_img": top[1], "top_pos": top[2],
                        "bot_val": bot[0], "bot_img": bot[1], "bot_pos": bot[2],
                        "hist": s["hist"] + ops.cast(counts, "int32")})
            if self.classify:  # each image's gradient row added to its class's row
                out[-1]["votes"] = s["votes"] + ops.matmul(ops.transpose(onehot), grads[i])
        if self.labels is not None:
            out.append(extra)
        return out

    def update(self, state, images: np.ndarray, valid: np.ndarray, first: int):
        from keras import ops

        labels = np.full((images.shape[0],), -1, np.int32)
        if self.labels is not None:
            chunk = self.labels.array[first:first + images.shape[0]]
            labels[:len(chunk)] = chunk
        return self._update(state, ops.convert_to_tensor(images), ops.convert_to_tensor(valid),
                            ops.convert_to_tensor(np.int32(first)), ops.convert_to_tensor(labels), self.net.variables)


def auto_examples_batch(layers: list[Layer], model_layers: tuple[Layer, ...], size: int,
                        facts: backend.DeviceFacts) -> int:
    """Images per batch: 32 on a CPU; on a GPU what half the free memory holds (the maps of every
    layer up to the deepest, in float32, twice over), at most 512."""
    if facts.kind != "gpu":
        return 32
    if not facts.free_bytes:
        return 64
    deepest = max(layer.index for layer in layers)
    values = sum(x.output_size(size) ** 2 * x.filters * (1 if x.fused else 3) for x in model_layers[: deepest + 1])
    return int(max(8, min(512, facts.free_bytes * 0.5 // max(1, values * 8))))


# --- the pass ----------------------------------------------------------------------------------------------


def _decode_batch(pool: ThreadPoolExecutor, image_set: ImageSet, start: int, batch: int, size: int):
    count = len(image_set.files)
    indices = range(start, min(start + batch, count))
    return [pool.submit(load_image, image_set.path(i), size) for i in indices]


def _collect(futures, batch: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    images = np.full((batch, size, size, 3), GREY, np.uint8)
    valid = np.zeros((batch,), bool)
    for i, future in enumerate(futures):
        image = future.result()
        if image is not None:
            images[i], valid[i] = image, True
    return images, valid


def _save_state(store: AtlasStore, state: list[dict], fingerprint: dict, position: int, skipped: int) -> None:
    arrays = {f"{i}:{key}": np.asarray(value) for i, s in enumerate(state) for key, value in s.items()}
    meta = json.dumps({"fingerprint": fingerprint, "position": position, "skipped": skipped})
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(meta.encode(), np.uint8), **arrays)
    atomic_write_bytes(store.paths.examples_state, buffer.getvalue())


def _load_state(store: AtlasStore, fingerprint: dict, layers: list[Layer]):
    path = store.paths.examples_state
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta["fingerprint"] != fingerprint:
                return None
            parts = len(layers) + ("labels_sha256" in fingerprint)  # the class counts come after the layers
            state = [{key.split(":", 1)[1]: data[key] for key in data.files if key.startswith(f"{i}:")}
                     for i in range(parts)]
    except (OSError, ValueError, KeyError):
        return None  # unreadable: start the pass again
    return state, meta["position"], meta["skipped"]


def _check_atlas(store: AtlasStore, config: ExamplesConfig, force: bool) -> None:
    """The folder's weights must be these, and its examples from this image set and size (or --force)."""
    if not store.paths.manifest.exists():
        return
    manifest = read_json(store.paths.manifest, "manifest")
    weights = manifest.get("weights", {}).get("sha256")
    if weights and weights != config.weights_sha256:
        raise AtlasError(f"{store.paths.model_dir} holds an atlas of other weights ({manifest['weights']['name']}, "
                         f"sha256 {weights[:16]}); use the same --weights or another --out")
    old = manifest.get("examples", {}).get("images")
    if old and (old["list_sha256"], old["size"]) != (config.images.sha256, config.size):
        if not force:
            raise AtlasError(
                f"{store.paths.model_dir} holds examples from another image set or size ({old['count']} images of "
                f"{old['folder']}, {old['size']} px); add --force to replace them, or use another --out"
            )
        for path in store.paths.model_dir.glob("*/[0-9][0-9][0-9][0-9].examples.*"):
            path.unlink()
        store.paths.examples_state.unlink(missing_ok=True)
        store.paths.accuracy_json.unlink(missing_ok=True)
        manifest.pop("examples", None)
        atomic_write_json(store.paths.manifest, manifest)


def run_examples(loaded: LoadedModel, layers: list[Layer], config: ExamplesConfig, out: str,
                 batch: int | None = None, force: bool = False, facts: backend.DeviceFacts | None = None,
                 checkpoint: int = 1024, progress: Progress | None = None) -> ExamplesSummary:
    """The whole pass: resume or start, stream every image through, write the examples."""
    start_time = time.monotonic()
    facts = facts or backend.device_facts()
    store = AtlasStore(out, config.model)
    if not batch:
        batch = auto_examples_batch(layers, loaded.layers, config.size, facts)
        if config.labels is not None and loaded.spec.head and facts.kind == "gpu":
            batch = max(8, batch // 2)  # the votes' backward pass keeps every map for its gradient
    every = max(batch, checkpoint // batch * batch)
    fingerprint = config.fingerprint(layers, batch)
    count = len(config.images.files)
    summary = ExamplesSummary(count, 0, len(layers), sum(layer.filters for layer in layers), 0.0,
                              out=f"{out}/{config.model}")
    with store.lock():
        store.remove_stale_temporaries()
        _check_atlas(store, config, force)
        tracker = Tracker(loaded, layers, config.top, config.precision, loaded.spec.preprocessing, config.labels,
                          batch, count)
        resumed = _load_state(store, fingerprint, layers)
        state, position, skipped = resumed if resumed else (tracker.initial_state(), 0, 0)
        summary.resumed_at = position
        progress = progress or Progress(count - position, unit="images")
        workers = min(16, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool, StopFlag() as flag:
            ahead = [_decode_batch(pool, config.images, s, batch, config.size)
                     for s in range(position, min(count, position + 3 * batch), batch)]
            while position < count and not flag.stop:
                futures = ahead.pop(0)
                following = position + len(ahead) * batch + batch
                if following < count:
                    ahead.append(_decode_batch(pool, config.images, following, batch, config.size))
                images, valid = _collect(futures, batch, config.size)
                state = tracker.update(state, images, valid, position)
                skipped += len(futures) - int(valid.sum())
                position += len(futures)
                progress.update(len(futures), "examples")
                if position % every == 0 and position < count:
                    state = [{k: backend.to_numpy(v) for k, v in s.items()} for s in state]
                    _save_state(store, state, fingerprint, position, skipped)
            state = [{k: backend.to_numpy(v) for k, v in s.items()} for s in state]
            summary.skipped = skipped
            if flag.stop and position < count:
                _save_state(store, state, fingerprint, position, skipped)
                summary.interrupted = True
                progress.close()
                summary.seconds = time.monotonic() - start_time
                return summary
            progress.close()
            summary.timings["pass"] = time.monotonic() - start_time
            evidence = _class_evidence(store, loaded, layers, state, config, tracker)
            _write_examples(store, layers, state, config, pool, evidence, loaded.spec.preprocessing)
        if not tracker.classify:
            store.paths.accuracy_json.unlink(missing_ok=True)  # of an earlier pass: its examples are replaced
        labels = config.labels.summary() if config.labels is not None else None
        store.write_manifest(None, loaded, extra={"labels": labels, "examples": {
            "images": config.image_set(skipped), "top": config.top,
            "layers": sorted(set(_manifest_layers(store)) | {layer.name for layer in layers},
                             key=lambda name: [x.name for x in loaded.layers].index(name)),
            "precision": config.precision, "backend": config.backend,
            "of": "the spatial maximum (top) and minimum (bottom) of each filter's map before its activation",
        }})
        store.paths.examples_state.unlink(missing_ok=True)
    summary.seconds = time.monotonic() - start_time
    return summary


def _class_evidence(store: AtlasStore, loaded: LoadedModel, layers: list[Layer], state: list[dict],
                    config: ExamplesConfig, tracker: Tracker) -> classes.ClassEvidence | None:
    """The class counts and votes of the pass, and ``accuracy.json`` for a network with a classifier."""
    if config.labels is None:
        return None
    extra = state[len(layers)]
    votes = {layer.name: s["votes"] for layer, s in zip(layers, state) if "votes" in s}
    if tracker.classify:
        predictions = extra["pred"][: len(config.images.files)]
        valid = predictions[:, 0] >= 0  # unreadable images got no prediction
        atomic_write_json(store.paths.accuracy_json, classes.accuracy(config.labels, predictions, valid, config.model),
                          indent=None)
    return classes.ClassEvidence(config.labels, extra["count"], votes)


def _manifest_layers(store: AtlasStore) -> list[str]:
    manifest = read_json(store.paths.manifest, "manifest") if store.paths.manifest.exists() else {}
    return manifest.get("examples", {}).get("layers", [])


# --- writing each filter's examples ----------------------------------------------------------------------


def _entries(values, images, positions, width: int, sign: float) -> list[tuple[float, int, int, int]]:
    out = []
    for value, image, pos in zip(values, images, positions):
        if image < 0 or not np.isfinite(value):
            continue
        out.append((float(sign * value), int(image), int(pos) // width, int(pos) % width))
    return out


def crop(image: np.ndarray, layer: Layer, y: int, x: int, cell: int = CELL) -> np.ndarray:
    """The receptive field of unit (y, x) in ``image``, grey where it reaches past the image, as a
    ``cell`` x ``cell`` picture (small fields enlarged with visible pixels, large ones reduced)."""
    from PIL import Image

    rf = layer.receptive_field
    cy, cx = layer.centre(y, x)
    top, left = int(round(cy - (rf - 1) / 2)), int(round(cx - (rf - 1) / 2))
    patch = np.full((rf, rf, 3), GREY, np.uint8)
    h, w = image.shape[:2]
    y0, x0, y1, x1 = max(0, top), max(0, left), min(h, top + rf), min(w, left + rf)
    if y1 > y0 and x1 > x0:
        patch[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    resample = Image.NEAREST if rf <= cell else Image.LANCZOS
    return np.asarray(Image.fromarray(patch).resize((cell, cell), resample))


def _write_examples(store: AtlasStore, layers: list[Layer], state: list[dict], config: ExamplesConfig,
                    pool: ThreadPoolExecutor, evidence: classes.ClassEvidence | None = None,
                    mode: object = "caffe") -> None:
    for layer, s in zip(layers, state):
        width = layer.output_size(config.size)
        tops = [_entries(s["top_val"][:, f], s["top_img"][:, f], s["top_pos"][:, f], width, 1.0) for f in range(layer.filters)]
        bots = [_entries(s["bot_val"][:, f], s["bot_img"][:, f], s["bot_pos"][:, f], width, -1.0) for f in range(layer.filters)]
        needed = sorted({e[1] for entries in tops + bots for e in entries})
        decoded = dict(zip(needed, pool.map(lambda i: load_image(config.images.path(i), config.size), needed)))
        if inputs.resolve(mode).channels == 1:  # a grayscale network's crops as it sees them
            decoded = {i: None if image is None else inputs.as_seen(image, mode) for i, image in decoded.items()}
        write = functools.partial(_write_filter, store, layer, config, decoded, tops, bots, s["hist"], evidence)
        list(pool.map(write, range(layer.filters)))  # image encoding releases the GIL: one filter per thread


def _write_filter(store: AtlasStore, layer: Layer, config: ExamplesConfig, decoded: dict, tops: list, bots: list,
                  hist: np.ndarray, evidence: classes.ClassEvidence | None, f: int) -> None:
    """One filter's sprite (top row, then bottom row) and its ``examples.json``."""
    from PIL import Image

    k = config.top
    sprite = np.full((2 * CELL, k * CELL, 3), GREY, np.uint8)
    for row, entries in enumerate((tops[f], bots[f])):
        for i, (_, image, y, x) in enumerate(entries):
            if decoded.get(image) is not None:
                sprite[row * CELL:(row + 1) * CELL, i * CELL:(i + 1) * CELL] = crop(decoded[image], layer, y, x)
    buffer = io.BytesIO()
    Image.fromarray(sprite).save(buffer, format="WEBP", quality=80, method=3)
    atomic_write_bytes(store.paths.examples_sprite(layer.name, f), buffer.getvalue())
    record = {
        "model": config.model, "layer": layer.name, "filter": f,
        "images": {key: value for key, value in config.image_set().items() if key != "skipped"},
        "of": "the filter's map before its activation: its maximum over each image (top) and minimum (bottom)",
        "top": [_entry_json(config, e) for e in tops[f]],
        "bottom": [_entry_json(config, e) for e in bots[f]],
        "histogram": {"of": "per-image maximum", "edges": HISTOGRAM_EDGES, "counts": [int(c) for c in hist[f]]},
        "sprite": {"file": store.paths.examples_sprite(layer.name, f).name, "cell": CELL,
                   "rows": ["top", "bottom"], "columns": k},
    }
    if evidence is not None:
        for entries, kind in ((tops[f], "top"), (bots[f], "bottom")):
            for entry, (_, image, _, _) in zip(record[kind], entries):
                entry["label"] = evidence.label(image)
        record["classes"] = evidence.record(layer, f, [image for _, image, _, _ in tops[f]])
    atomic_write_json(store.paths.examples_json(layer.name, f), record, indent=None)


def _entry_json(config: ExamplesConfig, entry: tuple[float, int, int, int]) -> dict:
    value, image, y, x = entry
    return {"image": config.images.files[image], "value": float(f"{value:.6g}"), "y": y, "x": x}

