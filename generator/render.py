"""Batched gradient ascent: many filters of one layer at once, one compiled run per layer and view.

Row b of a batch renders one picture of filter ``filters[b]``; the model is truncated at the layer's
pre-activation output, so an early filter never pays for the deep layers. The whole run of steps is
one compiled loop (a ``lax.scan`` on JAX): the random transform parameters are uploaded once, and the
loss of every row at every step stays on the device until the batch ends. Each picture's randomness
comes from (seed, layer, filter, view) alone, so it is the same whichever batch it lands in.

Methods:
    lucid: Fourier-parameterized image, decorrelated colour, sigmoid, transformation robustness and Adam
        (Olah et al. 2017), on the filter's activation after its ReLU (plus ``pre_share`` of it before,
        0 by default). Where the picture is not periodic (a receptive field over half the image), plus
        ``floor`` times the map capped at a tenth of its peak, so units that are off or faint are pulled
        up too and the picture does not settle on one object at the centre (the loss curve stays minus
        the activation). For layers whose receptive field is at most half the image, the picture is
        *periodic*: its spectrum is held to the frequencies of a tile about one receptive field wide
        (and scaled so that this is Lucid's parameterization of the tile itself), so whatever pattern a
        unit finds is found by every unit of the map at once and the picture fills the frame. A row
        whose map has no positive unit on the current image is *woken*: its objective is the centre unit (a
        single unit has a clear direction to go where a map that is off everywhere has none), its transforms
        are off and its learning rate is ``wake_lr`` times the rest; once a unit is on, the wake level fades
        over 1/16 of the run back to the channel objective with full transforms. Where the floor is on, a
        woken row keeps the channel objective and the floor (with the transforms off and the faster rate):
        the floor already pulls a map that is off everywhere up as a whole (its cap is then 0, so it is the
        map's mean before the ReLU), where the centre unit draws one object at the centre that the rest of
        the run does not spread. A row still off after ``wake_patience`` of the run starts again from its
        first picture at the base learning rate and stays woken (centre unit, transforms off) to the end:
        for a filter that a strongly negative kernel keeps off, the faster wake-up saturates the sigmoid and
        stalls where the base rate turns it on, and the pattern it finds is too faint to survive the
        transforms (let go, it flickers on and off and can end off). In the first layers (receptive field
        at most ``contrast_field`` px), where a filter of a 3- or 5-pixel patch often has a look-alike or an
        opposite, the channel objective is lowered by ``contrast`` times how far the layer's other filters
        come within ``contrast_margin`` of the own filter, each relative to its mean response to the
        layer's channel pictures rendered first without the term (the reference).
    naive: the original script, kept as the baseline: pixels fed straight in, post-ReLU channel mean,
        ``x += lr * g / ||g||``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from generator import backend, inputs, objectives
from generator.config import RenderConfig, robustness_for
from generator.errors import AtlasError
from generator.layers import Layer
from generator.models import LoadedModel
from generator.params import (
    fourier_constants,
    fourier_to_rgb,
    initial_spectrum,
    periodic_gain,
)
from generator.selection import sample_filters
from generator.transforms import calm_draws, random_transform
from generator.views import CHANNEL, DIVERSITY, NEGATIVE, NEURON, View

ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8
COMPUTE_DTYPE = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
COVERAGE_GRID = 4
COVERAGE_LEVEL = 0.1
REFERENCE_FILTERS = 64  # the most channel pictures the contrast term's reference is taken over


@dataclass
class RenderedView:
    """One view of one filter: its pictures and what they do, judged on the saved 8-bit images."""

    filter: int
    view: View
    images: list[np.ndarray]  # view.images pictures, each (size, size, 3) uint8 RGB
    loss: np.ndarray  # (steps,) minus the view's objective at each step (diversity: mean of its pictures)
    measures: dict = field(default_factory=dict)  # numbers of the saved pictures, for the JSON
    dead: bool = False  # channel view: the post-ReLU map is all zero on the 8-bit image
    precision: str = "float32"  # what it was rendered in (float32 after a non-finite mixed-precision run)
    retried: bool = False
    failed: bool = False  # non-finite even in float32: nothing is written for it

    @property
    def image(self) -> np.ndarray:
        return self.images[0]


@dataclass
class Judgement:
    """Per picture (rows) and filter of the layer (columns), on 8-bit pictures."""

    post_mean: np.ndarray  # mean activation after the ReLU
    pre_max: np.ndarray
    pre_mean: np.ndarray
    centre: np.ndarray  # pre-activation of the centre unit
    coverage: np.ndarray  # share of the cells of a 4x4 grid with a unit at >= 10% of the map's maximum


def picture_rng(seed: int, layer: Layer, filter_index: int, view: View = CHANNEL, image: int = 0) -> np.random.Generator:
    if view.code == 0:
        return np.random.default_rng([seed, layer.index, filter_index])
    return np.random.default_rng([seed, layer.index, filter_index, view.code, image])


class LayerRenderer:
    """Renders batches of one layer's filters; compiles one run per view and precision."""

    def __init__(self, loaded: LoadedModel, layer: Layer, config: RenderConfig) -> None:
        from keras import ops

        config.check_layer(layer)
        self.loaded = loaded
        self.layer = layer
        self.config = config
        self.mode = loaded.spec.preprocessing
        self.robustness = robustness_for(layer)
        constants = fourier_constants(config.size, config.decay_power)
        # the spectrum's per-frequency gain that makes the picture a tiling (all ones for a layer not tiled)
        constants["gain"] = periodic_gain(config.size, config.tile_period(layer), config.decay_power)[None, None, :, :, None]
        self.constants = {k: ops.convert_to_tensor(v) for k, v in constants.items()}
        self._nets: dict[str, object] = {}
        self._runs: dict[tuple[str, str, bool], object] = {}
        self._evaluate = backend.compile_fn(self._evaluate_fn)
        self._reference: np.ndarray | None = None

    def net(self, precision: str):
        if precision not in self._nets:
            self._nets[precision] = self.loaded.tap_net([self.layer], precision)
        return self._nets[precision]

    # --- the compiled runs -------------------------------------------------------------------------

    def _lucid_run(self, view: View, precision: str, contrast: bool):
        from keras import ops

        layer, cfg, mode = self.layer, self.config, self.mode
        net = self.net(precision)
        wake = 1.0 if cfg.wake and view.name in ("channel", "diversity") else 0.0
        fade = float(0.5 ** (16.0 / cfg.steps))  # the wake level halves every 1/16 of the run
        patience = cfg.patience_steps() if wake else 0  # 0: never restart
        group = view.images
        tiled = self._tiled(view)
        # the floor is for pictures that are not a tiling: a tiling already spreads the pattern, and
        # there the floor only pulls every unit of a near-linear early filter up at once (measured: it
        # lowers block1_conv1's specificity from 0.81 to 0.38)
        floor = 0.0 if tiled else cfg.floor

        def objective(spectrum, variables, constants, filters, draws, wake_level, restarted, loss_scale):
            rgb = _picture(spectrum, constants, tiled)
            rgb = random_transform(rgb, calm_draws(draws, 1.0 - wake_level))
            maps = net(inputs.from_rgb(rgb, mode), variables)[0]
            target = objectives.select_filters(maps, filters, layer.filters)
            on = ops.max(target, axis=(1, 2)) > 0  # the row's map has a positive unit
            if view is NEURON:
                value = report = objectives.neuron(target)
                level = ops.zeros_like(wake_level)
            elif view is NEGATIVE:
                value = report = objectives.negative(target)
                level = ops.zeros_like(wake_level)
            else:
                report = objectives.channel_mix(target, cfg.pre_share)
                # a row whose map has no positive unit is woken (transforms off, faster rate); the wake
                # level then fades (and the transforms fade back in) so the pattern it found can spread
                off = ops.cast(ops.logical_not(on), "float32")
                level = ops.stop_gradient(ops.maximum(wake_level, off * wake))
                channel = report + floor * objectives.floor(target) if floor else report
                if contrast:
                    channel = channel - cfg.contrast * objectives.contrast(maps, filters, constants["reference"], cfg.contrast_margin)
                # where the floor is on, it already pulls a map that is off everywhere up as a whole (its
                # cap is then 0): a woken row keeps it and only the restart turns to the centre unit,
                # which there draws one object at the centre that the rest of the run does not spread
                centre = ops.cast(restarted, "float32") if floor else level
                value = (1.0 - centre) * channel + centre * objectives.neuron(target)
                if view is DIVERSITY:
                    scale = ops.stop_gradient(ops.abs(report) + 1e-3)
                    value = value - cfg.diversity_weight * scale * objectives.diversity(maps, group)
            return -ops.sum(value) * loss_scale, (report, level, on)

        value_and_grad = backend.value_and_grad(objective)

        def step(carry, x, consts):
            spectrum, m, v, wake_level, bad, lit, restart = carry
            t, draws = x
            variables, constants, filters, lr, loss_scale, start = consts
            if patience:
                # rows never on by now start again: first picture, fresh Adam moments, base learning rate
                again = ops.logical_and(ops.equal(t, float(patience + 1)), ops.logical_not(lit))
                where = again[:, None, None, None, None]
                spectrum = ops.where(where, start, spectrum)
                m = ops.where(where, ops.zeros_like(m), m)
                v = ops.where(where, ops.zeros_like(v), v)
                restart = ops.where(again, t - 1.0, restart)
            restarted = restart > 0
            held = ops.where(restarted, ops.ones_like(wake_level), wake_level * fade)  # a restarted row stays woken
            _, (report, wake_level, on), grad = value_and_grad(
                spectrum, variables, constants, filters, draws, held, restarted, loss_scale
            )
            lit = ops.logical_or(lit, on)
            grad = grad / loss_scale
            finite = ops.logical_and(ops.all(ops.isfinite(grad), axis=(1, 2, 3, 4)), ops.isfinite(report))
            grad = ops.where(finite[:, None, None, None, None], grad, ops.zeros_like(grad))
            m = ADAM_B1 * m + (1.0 - ADAM_B1) * grad
            v = ADAM_B2 * v + (1.0 - ADAM_B2) * grad * grad
            m_hat = m / _bias_correction(ADAM_B1, t, restart, restarted)
            v_hat = v / _bias_correction(ADAM_B2, t, restart, restarted)
            fast = ops.where(restarted, ops.zeros_like(wake_level), wake_level)  # a restarted row keeps the base rate
            boost = (1.0 + (cfg.wake_lr - 1.0) * fast)[:, None, None, None, None]  # woken rows move faster
            spectrum = spectrum - lr * boost * m_hat / (ops.sqrt(v_hat) + ADAM_EPS)
            bad = ops.logical_or(bad, ops.logical_not(finite))
            return (spectrum, m, v, wake_level, bad, lit, restart), ops.where(finite, -report, ops.zeros_like(report))

        return backend.compile_loop(step)

    def _naive_run(self, precision: str):
        from keras import ops

        layer = self.layer
        net = self.net(precision)

        def objective(image, variables, filters, loss_scale):
            maps = net(image, variables)[0]
            chan = objectives.post_relu_channel(objectives.select_filters(maps, filters, layer.filters))
            return ops.sum(chan) * loss_scale, chan

        value_and_grad = backend.value_and_grad(objective)

        def step(carry, x, consts):
            image, bad = carry
            variables, filters, lr, loss_scale = consts
            _, chan, grad = value_and_grad(image, variables, filters, loss_scale)
            norm = ops.sqrt(ops.sum(grad * grad, axis=(1, 2, 3), keepdims=True))
            finite = ops.logical_and(ops.all(ops.isfinite(grad), axis=(1, 2, 3)), ops.isfinite(chan))
            update = ops.where(finite[:, None, None, None], grad / (norm + 1e-12), ops.zeros_like(grad))
            bad = ops.logical_or(bad, ops.logical_not(finite))
            return (image + lr * update, bad), ops.where(finite, -chan, ops.zeros_like(chan))

        return backend.compile_loop(step)

    def _tiled(self, view: View) -> bool:
        """Whether the view's picture is a tiling: not for a layer whose tile is the whole image, and not
        for the neuron view, which wants one position, not a texture."""
        cfg = self.config
        return cfg.periodic and view is not NEURON and cfg.tile_period(self.layer) < cfg.size

    def _contrasted(self, view: View) -> bool:
        """Whether the view's objective has the contrast term: the channel and diversity views of a layer
        whose receptive field is at most ``contrast_field`` pixels (near-linear filters of a small patch,
        many with a look-alike; deeper layers' pictures are specific without it)."""
        cfg = self.config
        return cfg.contrast > 0 and view in (CHANNEL, DIVERSITY) and self.layer.receptive_field <= cfg.contrast_field

    def _run_for(self, view: View, precision: str, contrast: bool):
        key = (view.name, precision, contrast)
        if key not in self._runs:
            self._runs[key] = self._lucid_run(view, precision, contrast) if self.config.method == "lucid" else self._naive_run(precision)
        return self._runs[key]

    def reference(self, batch: int) -> np.ndarray:
        """(C,) how strongly each filter of the layer responds, on average, to the layer's channel
        pictures rendered without the contrast term (up to ``REFERENCE_FILTERS`` of them, spread
        evenly): the scale in which the contrast term compares a picture's filters, as the specificity
        judge does. Computed once per renderer, in float32 whatever the atlas's precision (a few
        early-layer pictures; no row to redo); each picture depends on (seed, layer, filter) alone."""
        if self._reference is None:
            filters = sample_filters(self.layer, REFERENCE_FILTERS)
            images = []
            for start in range(0, len(filters), batch):
                chunk = filters[start:start + batch]
                rows = [(f, 0) for f in chunk + [chunk[-1]] * (batch - len(chunk))]  # padded like every batch
                pictures, _, bad = self._run_lucid(rows, CHANNEL, "float32", None)
                images += [p for p, b in zip(pictures[: len(chunk)], bad[: len(chunk)]) if not b]
            if not images:
                raise AtlasError(f"{self.layer.name}: every reference picture went non-finite in float32; check --weights")
            mean = self.judge(np.stack(images)).post_mean.mean(axis=0).astype(np.float64)
            # a filter that no picture turns on would make every picture infinitely specific to it
            self._reference = np.maximum(mean, 1e-3 * max(float(np.median(mean)), 1e-6)).astype(np.float32)
        return self._reference

    # --- running a batch ---------------------------------------------------------------------------

    def render_batch(self, filters: list[int], batch: int | None = None, view: View = CHANNEL) -> list[RenderedView]:
        """Render ``view`` of ``filters`` (at most ``batch`` of them) as one batch of ``batch`` filters.

        Short batches are padded by repeating the last filter, so every batch of a layer and view has
        the same shape and reuses one compiled program. Rows that go non-finite in mixed precision are
        rendered again in float32 (only their filters); a filter that is non-finite in float32 too is
        returned with ``failed`` set and no pictures.
        """
        if self.config.method == "naive" and view is not CHANNEL:
            raise AtlasError(f"--views {view.name}: the naive method renders the channel view only")
        batch = batch or len(filters)
        precision = self.config.precision
        results = self._render(filters, batch, view, precision)
        redo = [r.filter for r in results if r.failed]
        if redo and precision != "float32":
            again = {r.filter: r for r in self._render(redo, batch, view, "float32")}
            for r in again.values():
                r.retried = True
            results = [again.get(r.filter, r) for r in results]
        return results

    def _render(self, filters: list[int], batch: int, view: View, precision: str) -> list[RenderedView]:
        padded = list(filters) + [filters[-1]] * (batch - len(filters))
        rows = [(f, i) for f in padded for i in range(view.images)]
        if self.config.method == "lucid":
            reference = self.reference(batch) if self._contrasted(view) else None
            images, losses, bad = self._run_lucid(rows, view, precision, reference)
        else:
            images, losses, bad = self._run_naive(rows, precision)
        judged = self.judge(images)
        out = []
        for b, f in enumerate(filters):
            span = slice(b * view.images, (b + 1) * view.images)
            out.append(self._result(f, view, images[span], losses[span], bool(bad[span].any()), judged, span, precision))
        return out

    def _run_lucid(self, rows, view: View, precision: str, reference: np.ndarray | None):
        from keras import ops

        cfg = self.config
        inits, draws = [], []
        for f, i in rows:
            rng = picture_rng(cfg.seed, self.layer, f, view, i)
            inits.append(initial_spectrum(rng, cfg.size, cfg.init_std))
            draws.append(self.robustness.draws(rng, cfg.steps))
        spectrum = ops.convert_to_tensor(np.stack(inits))
        xs = (
            ops.convert_to_tensor(np.arange(1, cfg.steps + 1, dtype=np.float32)),
            ops.convert_to_tensor(np.stack(draws, axis=1)),  # (steps, rows, 6)
        )
        n = len(rows)
        carry = (spectrum, ops.zeros_like(spectrum), ops.zeros_like(spectrum), ops.zeros((n,), "float32"),
                 ops.zeros((n,), "bool"), ops.zeros((n,), "bool"), ops.zeros((n,), "float32"))
        scale = cfg.loss_scale if precision == "mixed_float16" else 1.0
        constants = self.constants if reference is None else dict(self.constants, reference=ops.convert_to_tensor(reference))
        consts = (self.net(precision).variables, constants, ops.convert_to_tensor(np.asarray([f for f, _ in rows], np.int32)),
                  ops.convert_to_tensor(np.float32(cfg.lr)), ops.convert_to_tensor(np.float32(scale)), spectrum)
        run = self._run_for(view, precision, reference is not None)
        (spectrum, _, _, _, bad, _, _), losses = run(carry, xs, consts)
        rgb = _picture(spectrum, self.constants, self._tiled(view))
        images = inputs.as_seen(inputs.rgb_to_uint8(backend.to_numpy(rgb)), self.mode)  # gray for a grayscale network
        return images, backend.to_numpy(losses).T, backend.to_numpy(bad)

    def _run_naive(self, rows, precision: str):
        from keras import ops

        cfg = self.config
        span = inputs.input_range(self.mode) / 255.0  # the original's noise: uniform +-0.5 in caffe units
        channels = inputs.resolve(self.mode).channels
        inits = [picture_rng(cfg.seed, self.layer, f).uniform(-0.5, 0.5, size=(cfg.size, cfg.size, channels)) * span
                 for f, _ in rows]
        image = ops.convert_to_tensor(np.stack(inits).astype(np.float32))
        scale = cfg.loss_scale if precision == "mixed_float16" else 1.0
        consts = (self.net(precision).variables, ops.convert_to_tensor(np.asarray([f for f, _ in rows], np.int32)),
                  ops.convert_to_tensor(np.float32(cfg.lr * span)), ops.convert_to_tensor(np.float32(scale)))
        xs = ops.zeros((cfg.steps,), "float32")
        (image, bad), losses = self._run_for(CHANNEL, precision, False)((image, ops.zeros((len(rows),), "bool")), xs, consts)
        images = np.stack([inputs.normalized_uint8(x, self.mode) for x in backend.to_numpy(image)])
        return images, backend.to_numpy(losses).T, backend.to_numpy(bad)

    # --- judging the saved pictures -------------------------------------------------------------------

    def _evaluate_fn(self, images, variables):
        from keras import ops

        maps = self.net("float32")(images, variables)[0]
        h, w = maps.shape[1], maps.shape[2]
        post = ops.relu(maps)
        peak = ops.max(post, axis=(1, 2))
        cells = []
        grid_h, grid_w = min(COVERAGE_GRID, h), min(COVERAGE_GRID, w)
        for i in range(grid_h):
            for j in range(grid_w):
                cell = post[:, i * h // grid_h:(i + 1) * h // grid_h, j * w // grid_w:(j + 1) * w // grid_w, :]
                cells.append(ops.max(cell, axis=(1, 2)))
        lit = ops.cast(ops.stack(cells, axis=0) >= COVERAGE_LEVEL * peak[None], "float32") * ops.cast(peak > 0, "float32")[None]
        return (
            ops.mean(post, axis=(1, 2)),
            ops.max(maps, axis=(1, 2)),
            ops.mean(maps, axis=(1, 2)),
            maps[:, h // 2, w // 2, :],
            ops.mean(lit, axis=0),
        )

    def judge(self, images: np.ndarray) -> Judgement:
        """How the layer's every filter responds to 8-bit RGB pictures (N, H, W, 3)."""
        from keras import ops

        x = ops.convert_to_tensor(inputs.from_uint8(images, self.mode))
        values = self._evaluate(x, self.net("float32").variables)
        return Judgement(*(backend.to_numpy(v) for v in values))

    def _result(self, f, view, images, losses, bad, judged: Judgement, span: slice, precision) -> RenderedView:
        if bad:
            return RenderedView(f, view, [], np.zeros(losses.shape[1], np.float32), failed=True, precision=precision)
        rows = range(span.start, span.stop)
        pick = lambda table: [float(table[r, f]) for r in rows]  # noqa: E731
        measures = {
            "activation": pick(judged.post_mean),
            "pre_relu_mean": pick(judged.pre_mean),
            "pre_relu_max": pick(judged.pre_max),
            "centre": pick(judged.centre),
            "coverage": pick(judged.coverage),
        }
        if view.images == 1:
            measures = {k: v[0] for k, v in measures.items()}
        dead = bool(np.all(judged.pre_max[span.start:span.stop, f] <= 0.0)) if view in (CHANNEL, DIVERSITY) else False
        return RenderedView(f, view, list(images), losses.mean(axis=0).astype(np.float32), measures, dead, precision)


def _bias_correction(beta: float, t, restart, restarted):
    """Adam's ``1 - beta ** step`` per row (B, 1, 1, 1, 1), the step counted from the row's restart
    (``restart``: the step before it, for the ``restarted`` rows).

    A row never restarted gets the very number of the run-wide step (a scalar power, not a per-row
    one), so its picture is the same bit for bit as in a run without restarts."""
    from keras import ops

    once = 1.0 - ops.power(beta, t)
    again = 1.0 - ops.power(beta, t - restart)
    return ops.where(restarted, again, once)[:, None, None, None, None]


def _picture(spectrum, constants, tiled: bool):
    """The RGB picture of a spectrum, tiled by the periodic gain where the view is tiled."""
    return fourier_to_rgb(spectrum * constants["gain"] if tiled else spectrum, constants)


def auto_batch(layer: Layer, layers: tuple[Layer, ...], size: int, requested: int, facts: backend.DeviceFacts,
               pictures: int = 1) -> int:
    """Filters per batch: all requested filters of the layer, up to what memory holds.

    On a GPU the free memory decides (about 16 bytes per activation value of every layer up to the
    target, per picture: maps in float32 or less, their gradients and the transform's intermediates;
    three times that where BatchNorm and activation are layers of their own); on a CPU a fixed 16
    pictures, where larger batches stop paying off and memory stays small.
    """
    if facts.kind != "gpu":
        return max(1, min(requested, 16 // pictures or 1))
    if facts.free_bytes is None:
        return max(1, min(requested, 64 // pictures or 1))  # unknown (a MIG slice): modest, halved on OOM
    values = sum(conv.output_size(size) ** 2 * conv.filters * (1 if conv.fused else 3)
                 for conv in layers[: layer.index + 1])
    per_picture = max(1, values * 16 + size * size * 3 * 64)
    return max(1, min(requested, int(facts.free_bytes * 0.5 // (per_picture * pictures)), 1024))
