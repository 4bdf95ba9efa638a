"""Batched gradient ascent: many filters of one layer at once, one compiled run per layer and view.

Row b of a batch renders one picture of filter ``filters[b]``; the model is truncated at the layer's
pre-activation output, so an early filter never pays for the deep layers. The whole run of steps is
one compiled loop (a ``lax.scan`` on JAX): the random transform parameters are uploaded once, and the
loss of every row at every step stays on the device until the batch ends. Each picture's randomness
comes from (seed, layer, filter, view) alone, so it is the same whichever batch it lands in.

What happens inside a step (the objectives, the wake-up, the restart, the floor, the contrast term,
Adam) is ``generator.render.step``; the renderer plans the batches, pads them, compiles one run per layer,
view and precision, redoes non-finite rows in float32 and judges the saved 8-bit pictures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from generator.errors import AtlasError
from generator.network import backend, inputs
from generator.network.layers import Layer
from generator.network.models import LoadedModel
from generator.network.selection import sample_filters
from generator.render import accentuation
from generator.render.accentuation import Start, earlier_layer, image_spectrum
from generator.render.config import RenderConfig, robustness_for
from generator.render.params import fourier_constants, initial_spectrum, periodic_gain
from generator.render.step import LucidCarry, LucidConsts, LucidStep, NaiveStep, picture
from generator.render.views import CHANNEL, DIVERSITY, View

COMPUTE_DTYPE = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
COVERAGE_GRID = 4
COVERAGE_LEVEL = 0.1
REFERENCE_FILTERS = 64  # the most channel pictures the contrast term's reference is taken over


@dataclass
class RenderedView:
    """One view of one filter: its pictures and what they do, judged on the saved 8-bit images."""

    filter: int
    view: View
    images: list[np.ndarray]  # view.images pictures, each (side, side, 3) uint8 RGB (side: the view's canvas)
    loss: np.ndarray  # (steps,) minus the view's objective at each step (diversity: mean of its pictures)
    measures: dict = field(default_factory=dict)  # numbers of the saved pictures, for the JSON
    dead: bool = False  # channel view: the post-ReLU map is all zero on the 8-bit image
    precision: str = "float32"  # what it was rendered in (float32 after a non-finite mixed-precision run)
    retried: bool = False
    failed: bool = False  # non-finite even in float32: nothing is written for it
    about: dict = field(default_factory=dict)  # what else the view's JSON entry says (accentuation: its start)

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

    def __init__(self, loaded: LoadedModel, layer: Layer, config: RenderConfig,
                 device: backend.Device | None = None) -> None:
        config.check_layer(layer)
        self.device = device  # where its runs compute (None: the backend's default device)
        self.loaded = loaded
        self.layer = layer
        self.config = config
        self.mode = loaded.spec.preprocessing
        self.robustness = robustness_for(layer)
        self.fixed = loaded.spec.input_size  # a network that reads one input side only has no field view
        self._constants: dict[int, dict] = {}
        self.constants = self.constants_for(config.size)
        self._nets: dict[str, object] = {}
        self._variables: dict[str, object] = {}
        self._runs: dict[tuple[str, str, bool], object] = {}
        self._evaluate: dict[int, object] = {}  # per picture side: TensorFlow would relax a second side to None
        self._reference: np.ndarray | None = None
        self.earlier = earlier_layer(layer, loaded.layers)  # the accentuation view's held layer (None: pixels)
        self._starts: dict[int, Start] = {}

    def constants_for(self, side: int) -> dict:
        """The Fourier bases, colour and periodic gain of a ``side`` px picture, on this renderer's device
        (the atlas's size, and the field view's canvas)."""
        from keras import ops

        if side not in self._constants:
            cfg = self.config
            decay = cfg.decay_for(self.layer)
            constants = fourier_constants(side, decay)
            # the spectrum's per-frequency gain that makes the picture a tiling (all ones for a layer not
            # tiled; a canvas other than the image is never tiled)
            period = cfg.tile_period(self.layer) if side == cfg.size else side
            constants["gain"] = periodic_gain(side, period, decay)[None, None, :, :, None]
            self._constants[side] = backend.place({k: ops.convert_to_tensor(v) for k, v in constants.items()}, self.device)
        return self._constants[side]

    def canvas(self, view: View) -> int:
        """Side of ``view``'s pictures of this layer; refuses a view that does not apply to it."""
        side = view.canvas(self.layer, self.config.size, self.fixed)
        if side is None:
            raise AtlasError(f"{self.layer.name}: the {view.name} view does not apply (receptive field "
                             f"{self.layer.receptive_field} px at --size {self.config.size})")
        return side

    def net(self, precision: str, view: View = CHANNEL):
        """The network cut at the layer (the accentuation view's: at its earlier layer too)."""
        key = self._net_key(precision, view)
        if key not in self._nets:
            taps = [self.earlier, self.layer] if key.endswith("+held") else [self.layer]
            self._nets[key] = self.loaded.tap_net(taps, precision)
        return self._nets[key]

    def variables(self, precision: str, view: View = CHANNEL):
        """The cut network's variables on this renderer's device (copied there once)."""
        key = self._net_key(precision, view)
        if key not in self._variables:
            self._variables[key] = backend.place(self.net(precision, view).variables, self.device)
        return self._variables[key]

    def _net_key(self, precision: str, view: View) -> str:
        return f"{precision}+held" if view.from_photo and self.earlier is not None else precision

    def give_starts(self, starts: dict[int, Start]) -> None:
        """The accentuation view's start photographs, per filter (``render_batch`` refuses a filter without)."""
        self._starts.update(starts)

    # --- the compiled runs -------------------------------------------------------------------------

    def _tiled(self, view: View) -> bool:
        """Whether the view's picture is a tiling: not for a layer whose tile is the whole image, and not
        for the neuron and field views, which want one position, not a texture."""
        cfg = self.config
        return cfg.periodic and not (view.at_centre or view.from_photo) and cfg.tile_period(self.layer) < cfg.size

    def _contrasted(self, view: View) -> bool:
        """Whether the view's objective has the contrast term: the channel and diversity views of a layer
        whose receptive field is at most ``contrast_field`` pixels (near-linear filters of a small patch,
        many with a look-alike; deeper layers' pictures are specific without it)."""
        cfg = self.config
        return cfg.contrast > 0 and view in (CHANNEL, DIVERSITY) and cfg.first_layer(self.layer)

    def _run_for(self, view: View, precision: str, contrast: bool):
        """The compiled run of steps for a view and precision (one per key, reused by every batch)."""
        key = (view.name, precision, contrast)
        if key not in self._runs:
            net = self.net(precision, view)
            if self.config.method == "lucid":
                step = LucidStep(net, self.layer, self.config, view, self._tiled(view), contrast, self.mode)
            else:
                step = NaiveStep(net, self.layer)
            self._runs[key] = backend.compile_loop(step.__call__)
        return self._runs[key]

    def needs_reference(self, view: View) -> bool:
        """Whether rendering ``view`` needs the contrast term's reference first."""
        return self.config.method == "lucid" and self._contrasted(view)

    def share_reference(self, reference: np.ndarray) -> None:
        """Take the reference another device's renderer of this layer computed: the same numbers, made once."""
        self._reference = reference

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
        lacking = [f for f in filters if view.from_photo and f not in self._starts]
        if lacking:
            raise AtlasError(f"{self.layer.name}: no start photograph for filter {lacking[0]} of the accentuation view; "
                             "run `atlas examples` first")
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
        if view.from_photo:
            self._about_starts(out)
        return out

    def _about_starts(self, results: list[RenderedView]) -> None:
        """The accentuation view's JSON entry: its start photograph, how the filter responds to it at the
        atlas's size (judged like the picture), the layer held near it and the penalty's weight."""
        if not results:
            return
        judged = self.judge(np.stack([self._starts[r.filter].pixels for r in results]))
        for row, r in enumerate(results):
            start = self._starts[r.filter]
            r.about = {"start": {"image": start.image, "value": float(f"{start.value:.5g}"),
                                 "activation": float(f"{judged.post_mean[row, r.filter]:.5g}"),
                                 "pre_relu_max": float(f"{judged.pre_max[row, r.filter]:.5g}")},
                       "held_layer": self.earlier.name if self.earlier is not None else "input",
                       "weight": accentuation.WEIGHT}

    def _run_lucid(self, rows, view: View, precision: str, reference: np.ndarray | None):
        run, (carry, xs, consts) = self._lucid_run(rows, view, precision, reference)
        with backend.on(self.device):
            carry, losses = run(carry, xs, consts)
            rgb = picture(carry.spectrum, self.constants_for(self.canvas(view)), self._tiled(view))
        images = inputs.as_seen(inputs.rgb_to_uint8(backend.to_numpy(rgb)), self.mode)  # gray for a grayscale network
        return images, backend.to_numpy(losses).T, backend.to_numpy(carry.bad)

    def _lucid_run(self, rows, view: View, precision: str, reference: np.ndarray | None):
        """The compiled run for ``rows`` (filter, picture) and its arguments, on this renderer's device."""
        from keras import ops

        cfg = self.config
        side = self.canvas(view)
        inits, draws = [], []
        for f, i in rows:
            rng = picture_rng(cfg.seed, self.layer, f, view, i)
            if view.from_photo:  # the picture starts as the photograph itself
                inits.append(image_spectrum(self._starts[f].pixels, cfg.decay_for(self.layer)))
            else:
                inits.append(initial_spectrum(rng, side, cfg.init_std))
            draws.append(self.robustness.draws(rng, cfg.steps))
        spectrum = ops.convert_to_tensor(np.stack(inits))
        xs = (
            ops.convert_to_tensor(np.arange(1, cfg.steps + 1, dtype=np.float32)),
            ops.convert_to_tensor(np.stack(draws, axis=1)),  # (steps, rows, 6)
        )
        scale = cfg.loss_scale if precision == "mixed_float16" else 1.0
        constants = self.constants_for(side)
        contrasted = self._contrasted(view)
        if contrasted:  # the reference's own pictures (no reference yet) run the same program, the term at 0
            weight = cfg.contrast if reference is not None else 0.0
            reference = reference if reference is not None else np.ones(self.layer.filters, np.float32)
            constants = dict(constants, reference=ops.convert_to_tensor(reference),
                             contrast_weight=ops.convert_to_tensor(np.float32(weight)))
        if view.from_photo:
            photos = np.stack([accentuation.start_rgb(self._starts[f].pixels) for f, _ in rows])
            constants = dict(constants, start_rgb=ops.convert_to_tensor(photos))
        consts = LucidConsts(self.variables(precision, view), constants,
                             ops.convert_to_tensor(np.asarray([f for f, _ in rows], np.int32)),
                             ops.convert_to_tensor(np.float32(cfg.lr_for(self.layer))), ops.convert_to_tensor(np.float32(scale)), spectrum)
        run = self._run_for(view, precision, contrasted)
        return run, backend.place((LucidCarry.start(spectrum), xs, consts), self.device)

    def compiled_run(self, filters: list[int], batch: int, view: View = CHANNEL):
        """The bare compiled run of a batch and its arguments, without judging or saving: what the GPU
        check times step by step (``run(*args)``; the same program ``render_batch`` runs)."""
        padded = list(filters) + [filters[-1]] * (batch - len(filters))
        rows = [(f, i) for f in padded for i in range(view.images)]
        reference = self.reference(batch) if self.needs_reference(view) else None
        return self._lucid_run(rows, view, self.config.precision, reference)

    def _run_naive(self, rows, precision: str):
        from keras import ops

        cfg = self.config
        span = inputs.input_range(self.mode) / 255.0  # the original's noise: uniform +-0.5 in caffe units
        channels = inputs.resolve(self.mode).channels
        inits = [picture_rng(cfg.seed, self.layer, f).uniform(-0.5, 0.5, size=(cfg.size, cfg.size, channels)) * span
                 for f, _ in rows]
        image = ops.convert_to_tensor(np.stack(inits).astype(np.float32))
        scale = cfg.loss_scale if precision == "mixed_float16" else 1.0
        consts = (self.variables(precision), ops.convert_to_tensor(np.asarray([f for f, _ in rows], np.int32)),
                  ops.convert_to_tensor(np.float32(cfg.lr * span)), ops.convert_to_tensor(np.float32(scale)))
        xs = ops.zeros((cfg.steps,), "float32")
        carry, xs, consts = backend.place(((image, ops.zeros((len(rows),), "bool")), xs, consts), self.device)
        with backend.on(self.device):
            (image, bad), losses = self._run_for(CHANNEL, precision, False)(carry, xs, consts)
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

        side = images.shape[1]
        if side not in self._evaluate:
            self._evaluate[side] = backend.compile_fn(self._evaluate_fn)
        x = backend.place(ops.convert_to_tensor(inputs.from_uint8(images, self.mode)), self.device)
        with backend.on(self.device):
            values = self._evaluate[side](x, self.variables("float32"))
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
