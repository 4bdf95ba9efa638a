"""The trust probe: the model cut at every layer up to a target, reading on the device the activation
vectors that the trust scores (``generator.evidence.trust_scores``) compare.

The activation vectors are compared unit for unit: a picture fills the frame, a natural image drives
the unit in one place. At each layer the vector is that layer's activations (after its
nonlinearity) averaged over the *footprint* of one target unit, the units of that layer inside the
target unit's receptive field (``footprint``): for the picture at its own strongest unit, for each
natural example at the unit where the examples pass found its value, for the random image at its
strongest unit. At the first layer there is no layer before it; its two-image closeness is taken on
the network's input over the unit's receptive field, pixel by pixel (``input_patch``: its mean colour
would throw away the very pattern a first-layer filter reads).

A batch of images goes through the cut model once; the maps stay on the device as running sums along
their rows, from which any footprint's mean is two lookups and a masked sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generator.errors import AtlasError
from generator.network import backend, inputs
from generator.network.layers import Layer
from generator.network.models import LoadedModel

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
    """The network's input ``x`` (H, W, channels, preprocessed) over unit (y, x_)'s receptive field, flattened;
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
    patches: np.ndarray | None  # (R, rf*rf*channels): the input over the unit's receptive field (first layer only)
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
        self.channels = inputs.resolve(self.mode).channels  # 3, or 1 for a grayscale network
        self.chunk, self.batch = chunk, batch
        self.net = loaded.tap_net(self.layers, precision)
        self.activations = [keras.activations.get(layer.activation) for layer in self.layers]
        self._programs: dict[tuple, tuple] = {}

    @property
    def before_width(self) -> int:
        """Length of a vector at the layer before the target: the input patch over the first layer's
        receptive field (its pixels times the network's input channels), else that layer's filters."""
        if self.target.index == 0:
            return self.target.receptive_field ** 2 * self.channels
        return self.layers[-2].filters

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
                if n else np.zeros((0, self.before_width), np.float32)
        return Readout(vectors, out_y, out_x, value, patches, backend.to_numpy(means)[:count])


def concat_readouts(readouts: list[Readout]) -> Readout:
    """Several batches' readouts as one, in order."""

    def cat(items):
        return np.concatenate(items) if items else np.zeros((0,))

    first = readouts[0]
    return Readout([cat([r.vectors[i] for r in readouts]) for i in range(len(first.vectors))],
                   cat([r.y for r in readouts]), cat([r.x for r in readouts]), cat([r.value for r in readouts]),
                   None if first.patches is None else cat([r.patches for r in readouts]), cat([r.means for r in readouts]))


def auto_trust_batch(layer: Layer, layers: tuple[Layer, ...], size: int, facts: backend.DeviceFacts) -> int:
    """Images per batch: 16 on a CPU; on a GPU what a third of the free memory holds (every map up to
    the target in float32, its running sums, a transposed copy and the activation), at most 256."""
    if facts.kind != "gpu":
        return 16
    if not facts.free_bytes:
        return 32
    values = sum(x.output_size(size) ** 2 * x.filters * (1 if x.fused else 3) for x in layers[: layer.index + 1])
    return int(max(4, min(256, facts.free_bytes / 3 // max(1, values * 4 * 4))))
