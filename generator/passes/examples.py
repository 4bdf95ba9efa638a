"""``atlas examples``: the real image patches that drive each filter furthest up and down.

One forward pass over an image set serves every requested layer at once (the model cut at all their
pre-activation maps). Per filter, on the device and streaming, it keeps the top ``k`` images by the
spatial maximum of the filter's map and the bottom ``k`` by its minimum, each with where it happened,
and a histogram of the per-image maxima: memory stays ``k`` x filters whatever the number of images.
Images are decoded by a pool of CPU threads a few batches ahead of the device.

The pass is checkpointed every ``checkpoint`` images (atomically, in the model folder); an interrupted
or killed run resumes from its last checkpoint, with the batches cut exactly as before (with ``--batch``
auto, the checkpoint's batch), so the result equals an uninterrupted run byte for byte; a checkpoint
that is not used is named with the reason. The finished pass is saved too, before each filter gets
``NNNN.examples.json`` and one WebP sprite of its crops (the receptive field around each position;
where it reaches past the image, grey), written a chunk of filters at a time with a bounded cache of
decoded images; a failure while writing (a full disk) does not redo the pass. The manifest records the
image set, and every file skipped with its reason.

With ``--labels`` the same pass also counts each class, and for a network with a classifier records each
image's top predictions and each filter's votes for the classes (``generator.evidence.classes``): every filter's
``examples.json`` gains ``classes``, its entries a ``label``, and the model ``accuracy.json``.
"""

from __future__ import annotations

import functools
import io
import json
import os
import sys
import time
import zipfile
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from generator.atlas.files import atomic_write_bytes, atomic_write_json, read_json
from generator.atlas.store import AtlasStore, weights_name
from generator.cluster.jobs import ExamplesJob
from generator.cluster.shard_store import ShardStore
from generator.cluster.split import Shard
from generator.errors import AtlasError
from generator.evidence import classes
from generator.evidence.imagesets import (
    SKIP_REASONS,
    UNREADABLE_FOLDER,
    ImageSet,
    decode_image,
    display_name,
    load_image,
)
from generator.evidence.labels import LabelSet
from generator.interrupt import StopFlag
from generator.network import backend, inputs
from generator.network.layers import Layer
from generator.network.models import LoadedModel
from generator.progress import Progress

HIST_BINS = 120  # uniform in sign(v) log10(1 + |v|) over +-HIST_DECADES: 0.1 decade per bin
HIST_DECADES = 6.0
CELL = 64  # side of one crop in the sprites
GREY = 128
STATE_VERSION = 2  # 2: images are cut before they are resampled, skipped files kept with their reason
# Decoded images the writing of the sprites holds at once (about 1,700 at 224 px), whatever the number
# of filters and examples: the crops of a layer are written a chunk of filters at a time.
IMAGE_CACHE_BYTES = 256 << 20


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

    def image_set(self, skips: list[tuple[int, str]] | None = None) -> dict:
        """What the manifest says of the image set; with ``skips`` (image index, reason), every file
        and folder skipped, named, and their count by reason."""
        out = {"folder": display_name(self.images.root.name), "count": len(self.images.files),
               "list_sha256": self.images.sha256, "size": self.size, "name": self.name, "license": self.license}
        if skips is not None:
            files = skipped_files(self.images, skips)
            out.update({"skipped": len(files), "skipped_by_reason": count_reasons(files), "skipped_files": files})
        return out

    def fingerprint(self, layers: list[Layer], batch: int) -> dict:
        """Everything a checkpoint must share with this run to be resumed by it."""
        out = {"version": STATE_VERSION, "model": self.model, "weights_sha256": self.weights_sha256,
               "list_sha256": self.images.sha256, "size": self.size, "top": self.top, "batch": batch,
               "layers": [layer.name for layer in layers], "precision": self.precision, "backend": self.backend}
        if self.labels is not None:
            out["labels_sha256"] = self.labels.sha256
        return out


def skipped_files(images: ImageSet, skips: list[tuple[int, str]]) -> list[dict]:
    """The files of the set the pass skipped, and the folders it could not read, each with its reason."""
    return ([{"image": display_name(images.files[i]), "reason": reason} for i, reason in sorted(skips)]
            + [{"image": display_name(folder), "reason": UNREADABLE_FOLDER} for folder in images.unlisted])


def count_reasons(files: list[dict]) -> dict[str, int]:
    counts = {reason: sum(f["reason"] == reason for f in files) for reason in SKIP_REASONS}
    return {reason: n for reason, n in counts.items() if n}


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
    skipped_by_reason: dict = field(default_factory=dict)
    done_before: bool = False  # a shard whose part had finished before: nothing was streamed

    def line(self) -> str:
        rate = (self.images - self.resumed_at) / self.seconds if self.seconds > 0 else 0.0
        if self.done_before:
            resumed = ", done before: nothing redone"
        elif self.images and self.resumed_at >= self.images:
            resumed = ", the pass itself read from its checkpoint"
        else:
            resumed = f", resumed at image {self.resumed_at}" if self.resumed_at else ""
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped_by_reason.items())
        skipped = f" (skipped {self.skipped}: {reasons})" if self.skipped else ""
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
                 labels: LabelSet | None = None, batch: int = 0, count: int = 0,
                 device: backend.Device | None = None) -> None:
        self.layers, self.k, self.mode, self.device = layers, top, mode, device
        self.labels = labels  # with labels: the class counts; with a classifier too: predictions and votes
        self.classify = labels is not None and loaded.spec.head is not None
        self.count = count
        if self.classify:
            self.net = classes.ClassNet(loaded, layers, precision, batch)
            self._value_and_grad = backend.value_and_grad(self._class_logit)
        else:
            self.net = loaded.tap_net(layers, precision)
        self.variables = backend.place(self.net.variables, device)  # on its device once
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
        """The state after one batch (on JAX the call returns at once: the device works on while the
        next batch is decoded, and another device can take it)."""
        from keras import ops

        labels = np.full((images.shape[0],), -1, np.int32)
        if self.labels is not None:
            chunk = self.labels.array[first:first + images.shape[0]]
            labels[:len(chunk)] = chunk
        args = backend.place((state, ops.convert_to_tensor(images), ops.convert_to_tensor(valid),
                              ops.convert_to_tensor(np.int32(first)), ops.convert_to_tensor(labels)), self.device)
        with backend.on(self.device):
            return self._update(*args, self.variables)


def _joined(states: list[list[dict]]) -> list[dict]:
    """The devices' states as one, on the host (one device: its own state as it is)."""
    host = [[{k: backend.to_numpy(v) for k, v in s.items()} for s in state] for state in states]
    return host[0] if len(host) == 1 else merge_tracker_states(host)


def merge_tracker_states(states: list[list[dict]]) -> list[dict]:
    """One tracker state from several taken over disjoint images (shards, devices), image indices
    counted in the whole set: per filter the ``k`` best entries of them all by value, descending, ties to
    the lower image index (the order one uninterrupted pass keeps, so the merge equals it), and the
    histograms, class votes and class counts summed; each image's predictions are in one part only
    (the others hold -1 there)."""
    merged = []
    for parts in zip(*states):
        if "top_val" not in parts[0]:  # the class entry after the layers (a labelled pass)
            out = {"count": np.sum([p["count"] for p in parts], axis=0).astype(np.int32)}
            if "pred" in parts[0]:
                out["pred"] = np.max([p["pred"] for p in parts], axis=0).astype(np.int32)
            merged.append(out)
            continue
        k = parts[0]["top_val"].shape[0]
        out = {"hist": np.sum([p["hist"] for p in parts], axis=0).astype(np.int32)}
        if "votes" in parts[0]:
            out["votes"] = np.sum([p["votes"] for p in parts], axis=0, dtype=np.float32)
        for side in ("top", "bot"):
            values = np.concatenate([np.asarray(p[f"{side}_val"], np.float32) for p in parts])  # (parts x k, C)
            images = np.concatenate([np.asarray(p[f"{side}_img"], np.int32) for p in parts])
            positions = np.concatenate([np.asarray(p[f"{side}_pos"], np.int32) for p in parts])
            empty_last = np.where(images < 0, np.iinfo(np.int32).max, images)
            order = np.lexsort((empty_last, -values), axis=0)[:k]  # by value descending, then image index
            out[f"{side}_val"] = np.take_along_axis(values, order, axis=0)
            out[f"{side}_img"] = np.take_along_axis(images, order, axis=0)
            out[f"{side}_pos"] = np.take_along_axis(positions, order, axis=0)
        merged.append(out)
    return merged


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
    return [pool.submit(decode_image, image_set.path(i), size) for i in indices]


def _collect(futures, batch: int, size: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """The batch's images, which rows hold one, and (row, reason) of each file skipped."""
    images = np.full((batch, size, size, 3), GREY, np.uint8)
    valid = np.zeros((batch,), bool)
    skips = []
    for i, future in enumerate(futures):
        image = future.result()
        if isinstance(image, str):
            skips.append((i, image))
        else:
            images[i], valid[i] = image, True
    return images, valid, skips


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _save_state(store: AtlasStore, state: list[dict], fingerprint: dict, position: int,
                skips: list[tuple[int, str]]) -> None:
    arrays = {f"{i}:{key}": np.asarray(value) for i, s in enumerate(state) for key, value in s.items()}
    meta = json.dumps({"fingerprint": fingerprint, "position": position, "skipped": [list(s) for s in skips]})
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(meta.encode(), np.uint8), **arrays)
    atomic_write_bytes(store.paths.examples_state, buffer.getvalue())


def _load_state(store: AtlasStore, config: ExamplesConfig, layers: list[Layer], batch: int, auto: bool):
    """((state, position, skips, batch) or None, a line saying why a checkpoint there is not used).
    With ``--batch`` auto the checkpoint's batch is taken: auto-sizing follows free GPU memory, which
    another job may have taken meanwhile."""
    path = store.paths.examples_state
    if not path.exists():
        return None, None
    try:
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            old = meta["fingerprint"]
            new = config.fingerprint(layers, old.get("batch", batch) if auto else batch)
            if old != new:
                return None, _not_used(path, meta.get("position", 0), old, new)
            parts = len(layers) + ("labels_sha256" in new)  # the class counts come after the layers
            state = [{key.split(":", 1)[1]: data[key] for key in data.files if key.startswith(f"{i}:")}
                     for i in range(parts)]
            skips = [(int(i), str(reason)) for i, reason in meta["skipped"]]
            position = int(meta["position"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile) as exc:
        return None, (f"{path}: the checkpoint is unreadable ({exc.__class__.__name__}) and not used; the pass "
                      "starts again from image 0")
    return (state, position, skips, new["batch"]), None


CHECKPOINT_KEYS = {"version": "an older version of atlas examples", "model": "--model", "weights_sha256": "other weights",
                   "list_sha256": "another image set", "size": "--size", "top": "--top", "batch": "--batch",
                   "layers": "--layers", "precision": "--precision", "backend": "--backend"}


def _not_used(path, position: int, old: dict, new: dict) -> str:
    """The line that says why a checkpoint is not used: the first setting it differs in."""
    key = next((k for k in CHECKPOINT_KEYS if old.get(k) != new.get(k)), None)
    what = CHECKPOINT_KEYS.get(key, "other settings")
    if key in ("size", "top", "batch", "precision", "backend", "model", "layers"):
        show = lambda v: ",".join(v) if isinstance(v, list) else v  # noqa: E731
        what = f"{what} {show(old.get(key))} (this run: {show(new.get(key))})"
    hint = f"; rerun with --batch {old.get('batch')} or auto to resume it" if key == "batch" else ""
    return (f"{path}: the checkpoint at image {position} was made with {what} and is not used; the pass starts "
            f"again from image 0{hint}")


def _check_atlas(store: AtlasStore, loaded: LoadedModel, config: ExamplesConfig, force: bool) -> None:
    """The folder's weights must be these, and its examples from this image set and size (or --force)."""
    store.check_weights(config.weights_sha256, weights_name(loaded.weights), force)
    if not store.paths.manifest.exists():
        return
    manifest = read_json(store.paths.manifest, "manifest")
    old = manifest.get("examples", {}).get("images")
    if old and (old["list_sha256"], old["size"]) != (config.images.sha256, config.size):
        if not force:
            raise AtlasError(
                f"{store.paths.model_dir} holds examples from another image set or size ({old['count']} images of "
                f"{old['folder']}, {old['size']} px); add --force to replace them, or use another --out"
            )
        for path in store.paths.model_dir.glob("*/[0-9][0-9][0-9][0-9].examples.*"):
            path.unlink()
        if store.paths.examples_state.exists():
            _say(f"{store.paths.examples_state}: the checkpoint of the other image set is removed (--force)")
            store.paths.examples_state.unlink()
        store.paths.accuracy_json.unlink(missing_ok=True)
        manifest.pop("examples", None)
        atomic_write_json(store.paths.manifest, manifest)


def run_examples(loaded: LoadedModel, layers: list[Layer], config: ExamplesConfig, out: str,
                 batch: int | None = None, force: bool = False, facts: backend.DeviceFacts | None = None,
                 checkpoint: int = 1024, progress: Progress | None = None, shard: Shard | None = None,
                 devices: list[backend.Device] | None = None) -> ExamplesSummary:
    """The whole pass: resume or start, stream every image through, write the examples. A ``shard``
    streams its part of the images and keeps its tracker state for ``atlas merge``; several
    ``devices`` take the batches in turn."""
    start_time = time.monotonic()
    if facts is None:  # batches sized by the device with the least free memory
        known = [d.facts for d in devices or [] if d is not None]
        facts = min(known, key=lambda f: f.free_bytes or 0) if known else backend.device_facts()
    auto = batch is None
    whole, job = config, None
    if shard is None:
        store = AtlasStore(out, config.model)
    else:
        job = ExamplesJob(config, tuple(layers), shard.count, weights=loaded.weights)
        store, config = ShardStore(out, config.model, job, shard), job.share(shard.index)
    if not batch:
        batch = auto_examples_batch(layers, loaded.layers, config.size, facts)
        if config.labels is not None and loaded.spec.head and facts.kind == "gpu":
            batch = max(8, batch // 2)  # the votes' backward pass keeps every map for its gradient
    count = len(config.images.files)
    summary = ExamplesSummary(count, 0, len(layers), sum(layer.filters for layer in layers), 0.0,
                              out=f"{out}/{config.model}")
    with store.lock():
        store.remove_stale_temporaries()
        with store.manifest_lock():
            _check_atlas(store, loaded, whole, force)
            finished = job is not None and store.begin(force)
        if finished:  # this shard's part was done before: nothing to redo
            summary.resumed_at, summary.done_before = count, True
            return summary
        resumed, note = _load_state(store, config, layers, batch, auto)
        if note:
            _say(note)
        state, position, skips = None, 0, []
        if resumed:
            state, position, skips, batch = resumed
        # one tracker a device; batch i goes to device i mod n, and the devices' states are merged (at
        # every checkpoint and at the end) by value, then image: the one-device result, byte for byte
        trackers = [Tracker(loaded, layers, config.top, config.precision, loaded.spec.preprocessing, config.labels,
                            batch, count, device) for device in devices or [None]]
        tracker = trackers[0]
        states = [state or tracker.initial_state()] + [t.initial_state() for t in trackers[1:]]
        every = max(batch, checkpoint // batch * batch)
        fingerprint = config.fingerprint(layers, batch)
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
                images, valid, batch_skips = _collect(futures, batch, config.size)
                turn = position // batch % len(trackers)
                states[turn] = trackers[turn].update(states[turn], images, valid, position)
                skips += [(position + i, reason) for i, reason in batch_skips]
                position += len(futures)
                progress.update(len(futures), "examples")
                if position % every == 0 and position < count:
                    states = [_joined(states)] + [t.initial_state() for t in trackers[1:]]
                    _save_state(store, states[0], fingerprint, position, skips)
            state = _joined(states)
            skipped = skipped_files(config.images, skips)
            summary.skipped, summary.skipped_by_reason = len(skipped), count_reasons(skipped)
            if flag.stop and position < count:
                _save_state(store, state, fingerprint, position, skips)
                summary.interrupted = True
                progress.close()
                summary.seconds = time.monotonic() - start_time
                return summary
            progress.close()
            summary.timings["pass"] = time.monotonic() - start_time
            if job is not None:
                store.finish_examples(state, skips)
            else:
                if summary.resumed_at < count:  # saved before the files: a failure there (a full disk) keeps the pass
                    _save_state(store, state, fingerprint, position, skips)
                write_examples(store, loaded, layers, state, config, skips, pool, tracker.classify)
        store.paths.examples_state.unlink(missing_ok=True)
    summary.seconds = time.monotonic() - start_time
    return summary


def write_examples(store: AtlasStore, loaded: LoadedModel, layers: list[Layer], state: list[dict],
                   config: ExamplesConfig, skips: list[tuple[int, str]], pool: ThreadPoolExecutor,
                   classify: bool = False) -> None:
    """The end of a pass over the whole image set (or of ``atlas merge``): every filter's examples
    and sprite, the class evidence and ``accuracy.json`` where there are labels, then the manifest."""
    evidence = _class_evidence(store, layers, state, config, classify)
    _write_examples(store, layers, state, config, pool, evidence, loaded.spec.preprocessing)
    if not classify:
        store.paths.accuracy_json.unlink(missing_ok=True)  # of an earlier pass: its examples are replaced
    labels = config.labels.summary() if config.labels is not None else None
    store.write_manifest(None, loaded, extra={"labels": labels, "examples": {
        "images": config.image_set(skips), "top": config.top,
        "layers": sorted(set(_manifest_layers(store)) | {layer.name for layer in layers},
                         key=lambda name: [x.name for x in loaded.layers].index(name)),
        "precision": config.precision, "backend": config.backend,
        "of": "the spatial maximum (top) and minimum (bottom) of each filter's map before its activation",
    }})


def _class_evidence(store: AtlasStore, layers: list[Layer], state: list[dict], config: ExamplesConfig,
                    classify: bool) -> classes.ClassEvidence | None:
    """The class counts and votes of the pass, and ``accuracy.json`` for a network with a classifier."""
    if config.labels is None:
        return None
    extra = state[len(layers)]
    votes = {layer.name: s["votes"] for layer, s in zip(layers, state) if "votes" in s}
    if classify:
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


class _DecodedImages:
    """Decoded images of the set, at most ``capacity`` held at once, the least recently used dropped
    first (one layer's strongest images are often the next one's too)."""

    def __init__(self, config: ExamplesConfig, pool: ThreadPoolExecutor, capacity: int) -> None:
        self.config, self.pool, self.capacity = config, pool, capacity
        self.held: OrderedDict[int, np.ndarray | None] = OrderedDict()

    def fetch(self, needed: list[int]) -> dict[int, np.ndarray | None]:
        """``needed`` (at most ``capacity`` of them), decoding those not held, in parallel."""
        missing = [i for i in needed if i not in self.held]
        wanted = set(needed)
        for i in [i for i in self.held if i not in wanted]:
            if len(self.held) + len(missing) <= self.capacity:
                break
            del self.held[i]
        decode = lambda i: load_image(self.config.images.path(i), self.config.size)  # noqa: E731
        for i, image in zip(missing, self.pool.map(decode, missing)):
            self.held[i] = image
        for i in needed:
            self.held.move_to_end(i)
        return {i: self.held[i] for i in needed}


def _filter_chunks(images_of: list[set[int]], capacity: int):
    """Consecutive filters whose examples together need at most ``capacity`` images (a filter that
    needs more alone)."""
    chunk, images = [], set()
    for f, needed in enumerate(images_of):
        if chunk and len(images | needed) > capacity:
            yield chunk, sorted(images)
            chunk, images = [], set()
        chunk.append(f)
        images |= needed
    if chunk:
        yield chunk, sorted(images)


def _write_examples(store: AtlasStore, layers: list[Layer], state: list[dict], config: ExamplesConfig,
                    pool: ThreadPoolExecutor, evidence: classes.ClassEvidence | None = None,
                    mode: object = "caffe") -> None:
    capacity = max(2 * config.top, IMAGE_CACHE_BYTES // (config.size * config.size * 3))
    cache = _DecodedImages(config, pool, capacity)
    for layer, s in zip(layers, state):
        width = layer.output_size(config.size)
        tops = [_entries(s["top_val"][:, f], s["top_img"][:, f], s["top_pos"][:, f], width, 1.0) for f in range(layer.filters)]
        bots = [_entries(s["bot_val"][:, f], s["bot_img"][:, f], s["bot_pos"][:, f], width, -1.0) for f in range(layer.filters)]
        images_of = [{e[1] for e in tops[f] + bots[f]} for f in range(layer.filters)]
        for chunk, needed in _filter_chunks(images_of, capacity):
            decoded = cache.fetch(needed)
            if inputs.resolve(mode).channels == 1:  # a grayscale network's crops as it sees them
                decoded = {i: None if image is None else inputs.as_seen(image, mode) for i, image in decoded.items()}
            write = functools.partial(_write_filter, store, layer, config, decoded, tops, bots, s["hist"], evidence)
            list(pool.map(write, chunk))  # image encoding releases the GIL: one filter per thread


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
        "images": config.image_set(),
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
    return {"image": display_name(config.images.files[image]), "value": float(f"{value:.6g}"), "y": y, "x": x}

