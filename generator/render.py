"""Batched gradient ascent: many filters of one layer at once, one compiled step per layer.

Row b of a batch renders filter ``filters[b]`` of the layer; the model is truncated at that layer, so a
block1 filter never pays for block5. Per step only the device works: the random transform parameters
of the whole run are uploaded once, and the loss of every row at every step stays on the device until
the batch ends. Each filter's randomness comes from (seed, layer, filter) alone, so its picture is the
same whichever batch it lands in.

Methods:
    lucid: Fourier-parameterized image, decorrelated colour, sigmoid, transformation robustness and Adam
        (Olah et al. 2017), on the filter's activation after its ReLU plus a small share of it before.
        A row whose map has no positive unit on the current step's image is *woken*: its objective is
        the pre-ReLU centre unit (a single unit has a clear direction to go where a map that is off
        everywhere has none) and its transforms are off (a jittered image cannot hold the precise
        pattern that unit needs). Once a unit is on, the wake level fades over 1/16 of the run back to
        the channel objective with full transforms.
    naive: the original script, kept as the baseline: pixels fed straight in, post-ReLU channel mean,
        ``x += lr * g / ||g||``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generator import backend, network, objectives
from generator.config import RenderConfig, robustness_for
from generator.models import VGG16_LAYERS, ConvLayer, LoadedModel
from generator.params import (
    caffe_to_uint8,
    fourier_constants,
    fourier_to_rgb,
    initial_spectrum,
    rgb_to_caffe,
    rgb_to_uint8,
    uint8_to_caffe,
)
from generator.transforms import calm_draws, random_transform

ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8
COMPUTE_DTYPE = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


@dataclass
class RenderedFilter:
    """One filter's picture and what it did, judged on the saved 8-bit image."""

    filter: int
    image: np.ndarray  # (size, size, 3) uint8 RGB
    loss: np.ndarray  # (steps,) float32, minus the method's channel objective at each step
    activation: float  # mean post-ReLU activation of the filter on the 8-bit image
    pre_relu_mean: float
    pre_relu_max: float
    dead: bool  # the post-ReLU map is all zero on the 8-bit image
    precision: str  # what it was rendered in (float32 after a non-finite mixed-precision batch)
    retried: bool


def filter_rng(seed: int, layer: ConvLayer, filter_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, layer.index, filter_index])


class LayerRenderer:
    """Renders batches of one layer's filters; compiles its step once per precision."""

    def __init__(self, loaded: LoadedModel, layer: ConvLayer, config: RenderConfig) -> None:
        from keras import ops

        config.check_layer(layer)
        self.layer = layer
        self.config = config
        kernels = loaded.kernels()[: layer.index + 1]
        self.weights = [(ops.convert_to_tensor(k), ops.convert_to_tensor(b)) for k, b in kernels]
        self.constants = {k: ops.convert_to_tensor(v) for k, v in fourier_constants(config.size, config.decay_power).items()}
        self.robustness = robustness_for(layer)
        self._steps: dict[str, object] = {}
        self._evaluate = backend.compile_fn(self._evaluate_fn)

    # --- the compiled pieces -------------------------------------------------------------------

    def _lucid_step(self, dtype: str):
        from keras import ops

        layer, pre_share = self.layer, self.config.pre_share
        wake = 1.0 if self.config.wake else 0.0
        fade = float(0.5 ** (16.0 / self.config.steps))  # the wake level halves every 1/16 of the run

        def objective(spectrum, weights, filters, draws, wake_level, loss_scale, constants):
            rgb = random_transform(fourier_to_rgb(spectrum, constants), calm_draws(draws, 1.0 - wake_level))
            maps = network.pre_relu(rgb_to_caffe(rgb), weights, layer, dtype)
            target = objectives.select_filters(maps, filters, layer.filters)
            chan = objectives.channel_mix(target, pre_share)
            # a row whose map has no positive unit is woken at its centre unit; the wake level then
            # fades (and the transforms fade back in) so the pattern it found can spread and settle
            dead = ops.cast(ops.max(target, axis=(1, 2)) <= 0, "float32")
            level = ops.stop_gradient(ops.maximum(wake_level, dead * wake))
            mixed = (1.0 - level) * chan + level * objectives.neuron(target)
            return -ops.sum(mixed) * loss_scale, (chan, level)

        value_and_grad = backend.value_and_grad(objective)

        def step(spectrum, m, v, t, weights, filters, draws, wake_level, lr, loss_scale, constants):
            _, (chan, wake_level), grad = value_and_grad(
                spectrum, weights, filters, draws, wake_level * fade, loss_scale, constants
            )
            grad = grad / loss_scale
            ok = ops.logical_and(ops.all(ops.isfinite(grad)), ops.all(ops.isfinite(chan)))
            grad = ops.where(ok, grad, ops.zeros_like(grad))
            m = ADAM_B1 * m + (1.0 - ADAM_B1) * grad
            v = ADAM_B2 * v + (1.0 - ADAM_B2) * grad * grad
            m_hat = m / (1.0 - ops.power(ADAM_B1, t))
            v_hat = v / (1.0 - ops.power(ADAM_B2, t))
            spectrum = spectrum - lr * m_hat / (ops.sqrt(v_hat) + ADAM_EPS)
            return spectrum, m, v, wake_level, -chan, ok

        return backend.compile_fn(step)

    def _naive_step(self, dtype: str):
        from keras import ops

        layer = self.layer

        def objective(image, weights, filters, loss_scale):
            maps = network.pre_relu(image, weights, layer, dtype)
            chan = objectives.post_relu_channel(objectives.select_filters(maps, filters, layer.filters))
            return ops.sum(chan) * loss_scale, chan

        value_and_grad = backend.value_and_grad(objective)

        def step(image, weights, filters, lr, loss_scale):
            _, chan, grad = value_and_grad(image, weights, filters, loss_scale)
            norm = ops.sqrt(ops.sum(grad * grad, axis=(1, 2, 3), keepdims=True))
            ok = ops.logical_and(ops.all(ops.isfinite(grad)), ops.all(ops.isfinite(chan)))
            update = ops.where(ok, grad / (norm + 1e-12), ops.zeros_like(grad))
            return image + lr * update, -chan, ok

        return backend.compile_fn(step)

    def _evaluate_fn(self, images, weights):
        from keras import ops

        maps = network.pre_relu(images, weights, self.layer, "float32")
        return (
            ops.mean(ops.relu(maps), axis=(1, 2)),
            ops.max(maps, axis=(1, 2)),
            ops.mean(maps, axis=(1, 2)),
        )

    def _step_for(self, precision: str):
        if precision not in self._steps:
            dtype = COMPUTE_DTYPE[precision]
            make = self._lucid_step if self.config.method == "lucid" else self._naive_step
            self._steps[precision] = make(dtype)
        return self._steps[precision]

    # --- running a batch --------------------------------------------------------------------------

    def render_batch(self, filters: list[int], batch: int | None = None) -> list[RenderedFilter]:
        """Render ``filters`` (at most ``batch`` of them) as one batch of ``batch`` rows.

        Short batches are padded by repeating the last filter, so every batch of a layer has the
        same shape and reuses one compiled program.
        """
        batch = batch or len(filters)
        rows = list(filters) + [filters[-1]] * (batch - len(filters))
        precision, retried = self.config.precision, False
        images, losses, ok = self._run(rows, precision)
        if not ok and precision != "float32":
            precision, retried = "float32", True
            images, losses, ok = self._run(rows, precision)
        return self._judge(rows[: len(filters)], images, losses, precision, retried)

    def _run(self, rows: list[int], precision: str) -> tuple[np.ndarray, np.ndarray, bool]:
        if self.config.method == "lucid":
            return self._run_lucid(rows, precision)
        return self._run_naive(rows, precision)

    def _run_lucid(self, rows, precision):
        from keras import ops

        cfg = self.config
        inits, draws = [], []
        for f in rows:
            rng = filter_rng(cfg.seed, self.layer, f)
            inits.append(initial_spectrum(rng, cfg.size, cfg.init_std))
            draws.append(self.robustness.draws(rng, cfg.steps))
        spectrum = ops.convert_to_tensor(np.stack(inits))
        m = ops.zeros_like(spectrum)
        v = ops.zeros_like(spectrum)
        draws_dev = ops.convert_to_tensor(np.stack(draws, axis=1))  # (steps, B, 6)
        steps_t = ops.convert_to_tensor(np.arange(1, cfg.steps + 1, dtype=np.float32))
        filters = ops.convert_to_tensor(np.asarray(rows, np.int32))
        lr = ops.convert_to_tensor(np.float32(cfg.lr))
        scale = ops.convert_to_tensor(np.float32(cfg.loss_scale if precision == "mixed_float16" else 1.0))
        step = self._step_for(precision)
        wake_level = ops.zeros((len(rows),), "float32")
        losses, oks = [], []
        for t in range(cfg.steps):
            spectrum, m, v, wake_level, loss, ok = step(
                spectrum, m, v, steps_t[t], self.weights, filters, draws_dev[t], wake_level, lr, scale,
                self.constants,
            )
            losses.append(loss)
            oks.append(ok)
        images = rgb_to_uint8(backend.to_numpy(fourier_to_rgb(spectrum, self.constants)))
        return (images, *_fetch(losses, oks))

    def _run_naive(self, rows, precision):
        from keras import ops

        cfg = self.config
        inits = [
            filter_rng(cfg.seed, self.layer, f)
            .uniform(-0.5, 0.5, size=(cfg.size, cfg.size, 3))
            .astype(np.float32)
            for f in rows
        ]
        image = ops.convert_to_tensor(np.stack(inits))
        filters = ops.convert_to_tensor(np.asarray(rows, np.int32))
        lr = ops.convert_to_tensor(np.float32(cfg.lr))
        scale = ops.convert_to_tensor(np.float32(cfg.loss_scale if precision == "mixed_float16" else 1.0))
        step = self._step_for(precision)
        losses, oks = [], []
        for _ in range(cfg.steps):
            image, loss, ok = step(image, self.weights, filters, lr, scale)
            losses.append(loss)
            oks.append(ok)
        images = np.stack([caffe_to_uint8(x) for x in backend.to_numpy(image)])
        return (images, *_fetch(losses, oks))

    def activations(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For 8-bit RGB images (N, H, W, 3): per image and filter of the layer, the mean post-ReLU
        activation, the pre-ReLU maximum and the pre-ReLU mean, each (N, filters)."""
        from keras import ops

        caffe = ops.convert_to_tensor(uint8_to_caffe(images))
        return tuple(backend.to_numpy(x) for x in self._evaluate(caffe, self.weights))

    def _judge(self, rows, images, losses, precision, retried) -> list[RenderedFilter]:
        post, pmax, pmean = self.activations(images)  # padded rows too: one compiled shape per layer
        out = []
        for b, f in enumerate(rows):
            out.append(
                RenderedFilter(
                    filter=f,
                    image=images[b],
                    loss=losses[b].astype(np.float32),
                    activation=float(post[b, f]),
                    pre_relu_mean=float(pmean[b, f]),
                    pre_relu_max=float(pmax[b, f]),
                    dead=bool(pmax[b, f] <= 0.0),
                    precision=precision,
                    retried=retried,
                )
            )
        return out


def _fetch(losses: list, oks: list) -> tuple[np.ndarray, bool]:
    """The one host transfer of a batch's per-step device values: (B, steps) losses, all finite."""
    from keras import ops

    return backend.to_numpy(ops.stack(losses, axis=1)), bool(np.all(backend.to_numpy(ops.stack(oks))))


def auto_batch(layer: ConvLayer, size: int, requested: int) -> int:
    """Rows per batch: all requested filters of the layer up to what memory holds.

    On a GPU the free memory decides (about 16 bytes per activation value per row: forward maps in
    float32 or less, their gradients and the transform's intermediates); on a CPU a fixed 16, where
    larger batches stop paying off and memory stays small.
    """
    free = backend.free_memory_bytes()
    if free is None:
        return max(1, min(requested, 16))
    values = 0
    for conv in VGG16_LAYERS[: layer.index + 1]:
        values += conv.output_size(size) ** 2 * conv.filters
    per_row = max(1, values * 16 + size * size * 3 * 64)
    return max(1, min(requested, int(free * 0.5 // per_row), 1024))
