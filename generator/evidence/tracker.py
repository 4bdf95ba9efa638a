"""The examples tracker: per filter, the real images that drive it furthest up and down, kept on the
device while an image set streams through.

One forward pass serves every requested layer at once (the model cut at all their pre-activation
maps). Per filter, updated batch by batch, the tracker keeps the top ``k`` images by the spatial
maximum of the filter's map and the bottom ``k`` by its minimum, each with where it happened, and a
histogram of the per-image maxima: memory stays ``k`` x filters whatever the number of images. With
labels it also counts each class, and for a network with a classifier records each image's top
predictions and each filter's votes for the classes (``generator.evidence.classes``).

Its state is a list of plain arrays (one dict per layer, then the class part of a labelled pass), so
a pass can checkpoint it and states taken over disjoint images (devices, shards) merge into the one an
uninterrupted pass keeps (``merge_tracker_states``).
"""

from __future__ import annotations

import numpy as np

from generator.evidence import classes
from generator.evidence.labels import LabelSet
from generator.network import backend, inputs
from generator.network.layers import Layer
from generator.network.models import LoadedModel

HIST_BINS = 120  # uniform in sign(v) log10(1 + |v|) over +-HIST_DECADES: 0.1 decade per bin
HIST_DECADES = 6.0


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


def join_states(states: list[list[dict]]) -> list[dict]:
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
