"""One step of gradient ascent on a batch of pictures: the objective, its gradient and the update.

The renderer (``generator.render.renderer``) plans batches, pads them, compiles a whole run of steps into one
loop (``backend.compile_loop``) and turns the result into pictures; what happens *inside* a step lives
here, one class per method, ``LucidStep`` and ``NaiveStep``:

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
        layer's channel pictures rendered first without the term (the reference). In every layer the
        channel objective also carries ``peak`` times the map's strongest unit before the ReLU: the map's
        mean alone is served by a soft, low-contrast texture that no unit drives to the filter's maximum
        (measured at 96 px, 64 steps: block1_conv1's pictures reached 0.39 of its closed-form maximum and
        0.45 of the strongest photo; with the term in block1 and block2 only, four of the six layers of
        block3 and block4 had 1 or 2 pictures of 6 under the strongest photo: BENCHMARKS.md, trust); in a
        tiling the strongest unit repeats with the tile, and elsewhere the floor still spreads the map, so
        the picture still fills the frame. In those first layers the spectrum is also flatter
        (``first_decay_power``) and the rate faster (``first_lr_factor``: ``RenderConfig.first_layer``),
        since their filters want sharp, saturated patterns that the 1/f spectrum damps.
        The accentuation view starts from the filter's strongest photograph and carries a penalty that
        holds an earlier layer near the photograph's (``generator.render.accentuation``): its net is cut
        at that layer too, and each step reads the photograph through the same transform beside the picture.
    naive: the original script, kept as the baseline: pixels fed straight in, post-ReLU channel mean,
        ``x += lr * g / ||g||``.

A step is a pure function ``step(carry, x, consts) -> (carry, loss)``: ``carry`` changes from step to
step, ``x`` is the step's slice of the per-step inputs (step number, transform draws), ``consts`` stay
fixed for the run (the network's variables are among them, so a jitted run takes them as arguments
instead of folding them into constants).
"""

from __future__ import annotations

from typing import NamedTuple

from generator.network import backend, inputs
from generator.network.layers import Layer
from generator.render import accentuation, objectives
from generator.render.config import RenderConfig
from generator.render.params import fourier_to_rgb
from generator.render.transforms import calm_draws, random_transform
from generator.render.views import CHANNEL, DIVERSITY, NEGATIVE, View

ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


class LucidCarry(NamedTuple):
    """What a lucid step hands to the next, per row (B rows)."""

    spectrum: object  # (B, 3, H, H//2+1, 2) the picture's Fourier parameters
    m: object  # Adam's first moment, like spectrum
    v: object  # Adam's second moment
    wake_level: object  # (B,) 1: woken (centre unit or floor, transforms off, faster rate); fades to 0
    bad: object  # (B,) bool: a non-finite gradient or loss happened
    lit: object  # (B,) bool: the row's map has had a positive unit at some step
    restart: object  # (B,) float: the step before the row's restart (0: never restarted)

    @classmethod
    def start(cls, spectrum) -> "LucidCarry":
        from keras import ops

        n = spectrum.shape[0]
        zeros = ops.zeros((n,), "float32")
        no = ops.zeros((n,), "bool")
        return cls(spectrum, ops.zeros_like(spectrum), ops.zeros_like(spectrum), zeros, no, no, zeros)


class LucidConsts(NamedTuple):
    """What stays fixed for a whole run."""

    variables: object  # the network's (trainable, non-trainable) variables
    constants: dict  # the Fourier bases, colour, periodic gain; ``reference`` where the contrast term is on
    filters: object  # (B,) int32 each row's filter
    lr: object  # float32 base learning rate
    loss_scale: object  # float32 (mixed_float16: the loss scale; else 1)
    start: object  # the first spectrum, which a restarted row goes back to


def picture(spectrum, constants, tiled: bool):
    """The RGB picture of a spectrum, tiled by the periodic gain where the view is tiled."""
    return fourier_to_rgb(spectrum * constants["gain"] if tiled else spectrum, constants)


class LucidStep:
    """The lucid method's step for one layer, view and precision (see the module docstring).

    Args:
        net: the network cut at the layer's pre-activation map (``LoadedModel.tap_net``).
        layer: the target layer; its ``filters`` is the width of the map.
        config: the render settings (wake-up, floor, contrast, diversity weights, steps).
        view: what the rows optimize.
        tiled: whether the picture is held to a tiling (``LayerRenderer._tiled``).
        contrast: whether the channel objective carries the contrast term (``consts.constants`` then
            holds the ``reference`` and the term's ``contrast_weight``: 0 for the reference's own
            pictures, which so run the same compiled program as the atlas's).
        mode: the network's input preprocessing (``caffe``, ``tf``, ``torch``).
    """

    def __init__(self, net, layer: Layer, config: RenderConfig, view: View, tiled: bool, contrast: bool,
                 mode: str) -> None:
        self.net, self.layer, self.config, self.view = net, layer, config, view
        self.tiled, self.contrast, self.mode = tiled, contrast, mode
        self.wake = 1.0 if config.wake and view.name in ("channel", "diversity") else 0.0
        self.fade = float(0.5 ** (16.0 / config.steps))  # the wake level halves every 1/16 of the run
        self.patience = config.patience_steps() if self.wake else 0  # 0: never restart
        # the floor is for pictures that are not a tiling: a tiling already spreads the pattern, and
        # there the floor only pulls every unit of a near-linear early filter up at once (measured: it
        # lowers block1_conv1's specificity from 0.81 to 0.38)
        self.floor = 0.0 if tiled else config.floor
        # the peak term: the channel picture's strongest unit, which the whole-map mean alone leaves short
        # of the filter's maximum (see the module docstring)
        self.peak = config.peak if view is CHANNEL else 0.0
        self.value_and_grad = backend.value_and_grad(self.objective)

    def objective(self, spectrum, variables, constants, filters, draws, wake_level, restarted, loss_scale):
        """Minus the batch's summed objective (times the loss scale), with (report, wake level, on) per row:
        report is the view's objective as the loss curve shows it, on whether the map has a positive unit."""
        from keras import ops

        cfg, view = self.config, self.view
        if view.from_photo:
            return self._accentuation(spectrum, variables, constants, filters, draws, wake_level, loss_scale)
        rgb = picture(spectrum, constants, self.tiled)
        rgb = random_transform(rgb, calm_draws(draws, 1.0 - wake_level))
        maps = self.net(inputs.from_rgb(rgb, self.mode), variables)[0]
        target = objectives.select_filters(maps, filters, self.layer.filters)
        on = ops.max(target, axis=(1, 2)) > 0
        if view.at_centre:
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
            level = ops.stop_gradient(ops.maximum(wake_level, off * self.wake))
            channel = report + self.floor * objectives.floor(target) if self.floor else report
            if self.peak:
                channel = channel + self.peak * objectives.peak(target)
            if self.contrast:
                weight = constants["contrast_weight"]  # 0 for the reference's own pictures (same program)
                channel = channel - weight * objectives.contrast(maps, filters, constants["reference"], cfg.contrast_margin)
            # where the floor is on, it already pulls a map that is off everywhere up as a whole (its
            # cap is then 0): a woken row keeps it and only the restart turns to the centre unit,
            # which there draws one object at the centre that the rest of the run does not spread
            centre = ops.cast(restarted, "float32") if self.floor else level
            value = (1.0 - centre) * channel + centre * objectives.neuron(target)
            if view is DIVERSITY:
                scale = ops.stop_gradient(ops.abs(report) + 1e-3)
                value = value - cfg.diversity_weight * scale * objectives.diversity(maps, view.images)
        return -ops.sum(value) * loss_scale, (report, level, on)

    def _accentuation(self, spectrum, variables, constants, filters, draws, wake_level, loss_scale):
        """The accentuation view's objective: the channel objective minus the penalty that holds the
        earlier layer (the net's first output; the pixels where the net has one output) near the start
        photograph's (``constants["start_rgb"]``), both seen through the row's transform."""
        from keras import ops

        rgb = picture(spectrum, constants, False)
        n = rgb.shape[0]
        both = random_transform(ops.concatenate([rgb, constants["start_rgb"]], axis=0), ops.concatenate([draws, draws], axis=0))
        outputs = self.net(inputs.from_rgb(both, self.mode), variables)
        target = objectives.select_filters(outputs[-1][:n], filters, self.layer.filters)
        report = objectives.channel_mix(target, self.config.pre_share)
        on = ops.max(target, axis=(1, 2)) > 0
        # a map off everywhere (no photo turns some filters on) has no gradient after the ReLU: its
        # mean before it is raised instead, and sets the penalty's scale
        off = ops.stop_gradient(ops.cast(ops.logical_not(on), "float32"))
        raised = report + off * objectives.channel(target)
        start = objectives.select_filters(outputs[-1][n:], filters, self.layer.filters)
        start_value = objectives.channel_mix(start, self.config.pre_share) + off * objectives.channel(start)
        held = outputs[0] if len(outputs) > 1 else both
        distance = accentuation.penalty(held[:n], ops.stop_gradient(held[n:]))
        scale = ops.stop_gradient(ops.maximum(ops.abs(raised), ops.abs(start_value)) + 1e-3)
        value = raised - accentuation.WEIGHT * scale * distance
        return -ops.sum(value) * loss_scale, (report, ops.zeros_like(wake_level), on)

    def __call__(self, carry: LucidCarry, x, consts: LucidConsts):
        from keras import ops

        spectrum, m, v, wake_level, bad, lit, restart = carry
        t, draws = x
        if self.patience:
            # rows never on by now start again: first picture, fresh Adam moments, base learning rate
            again = ops.logical_and(ops.equal(t, float(self.patience + 1)), ops.logical_not(lit))
            where = again[:, None, None, None, None]
            spectrum = ops.where(where, consts.start, spectrum)
            m = ops.where(where, ops.zeros_like(m), m)
            v = ops.where(where, ops.zeros_like(v), v)
            restart = ops.where(again, t - 1.0, restart)
        restarted = restart > 0
        held = ops.where(restarted, ops.ones_like(wake_level), wake_level * self.fade)  # a restarted row stays woken
        _, (report, wake_level, on), grad = self.value_and_grad(
            spectrum, consts.variables, consts.constants, consts.filters, draws, held, restarted, consts.loss_scale
        )
        lit = ops.logical_or(lit, on)
        grad = grad / consts.loss_scale
        finite = ops.logical_and(ops.all(ops.isfinite(grad), axis=(1, 2, 3, 4)), ops.isfinite(report))
        grad = ops.where(finite[:, None, None, None, None], grad, ops.zeros_like(grad))
        m = ADAM_B1 * m + (1.0 - ADAM_B1) * grad
        v = ADAM_B2 * v + (1.0 - ADAM_B2) * grad * grad
        m_hat = m / _bias_correction(ADAM_B1, t, restart, restarted)
        v_hat = v / _bias_correction(ADAM_B2, t, restart, restarted)
        fast = ops.where(restarted, ops.zeros_like(wake_level), wake_level)  # a restarted row keeps the base rate
        boost = (1.0 + (self.config.wake_lr - 1.0) * fast)[:, None, None, None, None]  # woken rows move faster
        spectrum = spectrum - consts.lr * boost * m_hat / (ops.sqrt(v_hat) + ADAM_EPS)
        bad = ops.logical_or(bad, ops.logical_not(finite))
        loss = ops.where(finite, -report, ops.zeros_like(report))
        return LucidCarry(spectrum, m, v, wake_level, bad, lit, restart), loss


class NaiveStep:
    """The original script's step: the post-ReLU channel mean of a plain image, ``x += lr * g / ||g||``.

    ``carry`` is (image, bad); ``consts`` is (variables, filters, lr, loss_scale)."""

    def __init__(self, net, layer: Layer) -> None:
        self.net, self.layer = net, layer
        self.value_and_grad = backend.value_and_grad(self.objective)

    def objective(self, image, variables, filters, loss_scale):
        from keras import ops

        maps = self.net(image, variables)[0]
        chan = objectives.post_relu_channel(objectives.select_filters(maps, filters, self.layer.filters))
        return ops.sum(chan) * loss_scale, chan

    def __call__(self, carry, x, consts):
        from keras import ops

        image, bad = carry
        variables, filters, lr, loss_scale = consts
        _, chan, grad = self.value_and_grad(image, variables, filters, loss_scale)
        norm = ops.sqrt(ops.sum(grad * grad, axis=(1, 2, 3), keepdims=True))
        finite = ops.logical_and(ops.all(ops.isfinite(grad), axis=(1, 2, 3)), ops.isfinite(chan))
        update = ops.where(finite[:, None, None, None], grad / (norm + 1e-12), ops.zeros_like(grad))
        bad = ops.logical_or(bad, ops.logical_not(finite))
        return (image + lr * update, bad), ops.where(finite, -chan, ops.zeros_like(chan))


def _bias_correction(beta: float, t, restart, restarted):
    """Adam's ``1 - beta ** step`` per row (B, 1, 1, 1, 1), the step counted from the row's restart
    (``restart``: the step before it, for the ``restarted`` rows).

    A row never restarted gets the very number of the run-wide step (a scalar power, not a per-row
    one), so its picture is the same bit for bit as in a run without restarts."""
    from keras import ops

    once = 1.0 - ops.power(beta, t)
    again = 1.0 - ops.power(beta, t - restart)
    return ops.where(restarted, again, once)[:, None, None, None, None]
