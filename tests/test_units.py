"""Small pure pieces: Fourier parameterization, the periodic phase, inputs, transforms, selection,
config hash, plots, quality."""

import math

import numpy as np
import pytest

from generator.errors import AtlasError
from generator.network import inputs
from generator.network.layers import find_layer
from generator.network.selection import parse_filters, parse_layers
from generator.render.config import RenderConfig
from generator.render.params import (
    fourier_constants,
    fourier_to_rgb,
    irfft2_bases,
    periodic_gain,
    spectrum_shape,
)
from generator.render.quality import specificity
from generator.render.transforms import Robustness, calm_draws, random_transform
from generator.render.views import parse_views
from generator.site import plots


@pytest.mark.parametrize("size", [8, 9, 32])
def test_irfft2_bases_match_numpy(size):
    rng = np.random.default_rng(0)
    spectrum = rng.standard_normal((size, size // 2 + 1)) + 1j * rng.standard_normal((size, size // 2 + 1))
    b = irfft2_bases(size)
    mine = (b["ch"] @ spectrum.real - b["sh"] @ spectrum.imag) @ b["cw"] - (
        b["sh"] @ spectrum.real + b["ch"] @ spectrum.imag) @ b["sw"]
    np.testing.assert_allclose(mine, np.fft.irfft2(spectrum, s=(size, size)), atol=1e-5)


def test_fourier_image_is_valid_rgb_and_inputs():
    spec = np.random.default_rng(1).standard_normal((2, 3, 16, 9, 2)).astype(np.float32)
    rgb = np.asarray(fourier_to_rgb(spec, fourier_constants(16)))
    assert rgb.shape == (2, 16, 16, 3) and rgb.min() > 0 and rgb.max() < 1
    red = np.asarray([[[[1.0, 0.0, 0.0]]]], np.float32)
    np.testing.assert_allclose(inputs.from_rgb(red, "caffe")[0, 0, 0], [-103.939, -116.779, 255 - 123.68], atol=1e-3)
    np.testing.assert_allclose(inputs.from_rgb(red, "tf")[0, 0, 0], [1, -1, -1])
    for mode in inputs.MODES:
        np.testing.assert_allclose(inputs.to_rgb(inputs.from_rgb(red, mode), mode), red, atol=1e-6)
    with pytest.raises(AtlasError, match="preprocessing 'bgr'"):
        inputs.from_rgb(red, "bgr")


def test_periodic_gain_tiles_the_picture_and_matches_a_small_lucid_image():
    size, period = 32, 8
    gain = periodic_gain(size, period)
    spec = np.random.default_rng(0).standard_normal((1, *spectrum_shape(size))).astype(np.float32)
    image = np.asarray(fourier_to_rgb(spec * gain[None, None, :, :, None], fourier_constants(size)))[0]
    np.testing.assert_allclose(image[:8], image[8:16], atol=1e-6)
    np.testing.assert_allclose(image[:, :8], image[:, 24:32], atol=1e-6)
    # the same parameters on the 8 px tile's own 1/f spectrum give the tile itself
    small = np.zeros((1, *spectrum_shape(period)), np.float32)
    rows = [k * 4 for k in range(period)]  # tile frequency k is image frequency 4k
    small[0] = spec[0][:, rows][:, :, [k * 4 for k in range(period // 2 + 1)]]  # the same parameter values
    tile = np.asarray(fourier_to_rgb(small, fourier_constants(period)))[0]
    np.testing.assert_allclose(image[:8, :8], tile, atol=1e-4)


def test_tile_period_by_receptive_field():
    period = lambda name, size=128: RenderConfig(size=size).tile_period(find_layer(name, "vgg16"))  # noqa: E731
    assert period("block1_conv1") == 16  # 3 px field: a smaller tile would only hold gratings
    assert period("block2_conv2") == 16 and period("block3_conv1") == 32
    assert period("block3_conv3") == 32  # capped: the tile repeats at least 4 times across the image
    assert period("block4_conv2") == 128 and period("block5_conv3") == 128  # fields over half the image: not tiled
    assert period("block3_conv1", 64) == 16 and period("block3_conv3", 64) == 64


def test_transforms_identity_at_zero_strength_and_move_otherwise():
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(1, 16, 16, 3)).astype(np.float32)
    draws = Robustness().draws(np.random.default_rng(1), 1)
    still = calm_draws(draws, np.zeros(1, np.float32))
    np.testing.assert_allclose(np.asarray(random_transform(image, still)), image, atol=1e-5)
    moved = np.asarray(random_transform(image, Robustness().draws(np.random.default_rng(1), 1)))
    assert np.abs(moved - image).mean() > 0.05


def test_selection_parsing():
    layer = find_layer("block1_conv1", "vgg16")
    assert parse_filters("0-3,7,2", layer) == [0, 1, 2, 3, 7]
    assert len(parse_filters("all", layer)) == 64
    with pytest.raises(AtlasError, match="has filters 0-63; 64 is out of range"):
        parse_filters("64", layer)
    with pytest.raises(AtlasError, match="use all, a range"):
        parse_filters("a-b", layer)
    assert [x.name for x in parse_layers("block5_conv1,block1_conv2", "vgg16")] == ["block1_conv2", "block5_conv1"]
    with pytest.raises(AtlasError, match="unknown layer 'block6_conv1'"):
        parse_layers("block6_conv1", "vgg16")
    with pytest.raises(AtlasError, match="only lowercase"):
        parse_layers("../block1_conv1", "vgg16")
    assert [v.name for v in parse_views("diversity,channel")] == ["channel", "diversity"]
    assert [v.name for v in parse_views("all")] == ["channel", "neuron", "negative", "diversity", "field", "accentuation"]


def test_the_field_view_applies_exactly_where_the_receptive_field_is_under_a_quarter_of_the_image():
    from generator.network.layers import model_layers
    from generator.render.views import FIELD, VIEWS, views_of

    vgg16 = model_layers("vgg16")
    early = [(layer.name, FIELD.canvas(layer, 128)) for layer in vgg16 if FIELD.canvas(layer, 128)]
    assert early == [("block1_conv1", 12), ("block1_conv2", 20), ("block2_conv1", 40), ("block2_conv2", 56),
                     ("block3_conv1", 96)]
    for layer in vgg16 + model_layers("resnet50"):
        for size in (32, 64, 96, 128, 224):
            side = FIELD.canvas(layer, size)
            assert (side is not None) == (layer.receptive_field < size / 4), (layer.name, size)
            if side is not None:  # four fields, whole map pixels, a map the renderer accepts, no larger than the image
                assert side >= min(4 * layer.receptive_field, size) and side <= size, (layer.name, size, side)
                assert side % layer.stride == 0 or side == size, (layer.name, size, side)
                assert layer.output_size(side) >= 2, (layer.name, size, side)
    block1, block5 = find_layer("block1_conv1", "vgg16"), find_layer("block5_conv3", "vgg16")
    assert FIELD.canvas(block1, 128, fixed=224) is None  # a network that reads one input side only
    assert views_of(list(VIEWS.values()), block5, 128) == [view for view in VIEWS.values() if view is not FIELD]
    assert views_of(list(VIEWS.values()), block1, 128) == list(VIEWS.values())
    assert all(view.canvas(block5, 128) == 128 for view in list(VIEWS.values())[:4])


def test_config_hash_covers_pictures_only():
    base = RenderConfig(weights="hed-bsds500", weights_sha256="ab")
    assert base.hash == RenderConfig(weights="/elsewhere/same.h5", weights_sha256="ab").hash
    assert base.hash != RenderConfig(weights="hed-bsds500", weights_sha256="ab", seed=1).hash
    assert base.hash != RenderConfig(weights="hed-bsds500", weights_sha256="cd").hash
    assert base.hash != RenderConfig(weights="hed-bsds500", weights_sha256="ab", floor=0.0).hash
    for bad, match in [(dict(steps=0), "--steps"), (dict(lr=float("nan")), "--lr"), (dict(lr=-1.0), "--lr"),
                       (dict(size=8), "--size"), (dict(method="magic"), "--method"), (dict(seed=-1), "--seed")]:
        with pytest.raises(AtlasError, match=match):
            RenderConfig(**bad)
    with pytest.raises(AtlasError, match="too small for block5_conv3"):
        RenderConfig(size=16).check_layer(find_layer("block5_conv3", "vgg16"))


def test_plot_geometry():
    assert plots.nice_ticks(0, 64) == [0, 20, 40, 60, 80]
    line = plots.line_plot([3.0, 1.0, -2.0])
    xs = [float(p.split(",")[0]) for p in line.points.split()]
    assert xs == sorted(xs) and line.zero_y is not None
    assert all(line.frame.x0 <= x <= line.frame.x1 for x in xs)
    hist = plots.histogram([1.0, 1.1, 5.0], bins=4)
    assert sum(b.count for b in hist.bars) == 3 and all(math.isfinite(b.height) for b in hist.bars)
    dist = plots.distribution([-10.0, 0.0, 10.0, 100.0], [1, 5, 2], [(500.0, "picture")])
    assert sum(b.count for b in dist.bars) == 8 and dist.marks[0].x > max(b.x for b in dist.bars)
    assert {t.label for t in dist.x_ticks} >= {"0", "10", "100"}
    kernel = plots.kernel_image([[[1.0, 0.0, -1.0]]])
    assert kernel.squares == [(0, 0, "#ff8000")]


def test_plots_thin_long_curves_and_stay_one_html_block():
    values = [float(np.sin(i / 3.0)) for i in range(256)]
    values[100] = 50.0  # a spike survives the thinning
    line = plots.line_plot(values)
    ys = [float(p.split(",")[1]) for p in line.points.split()]
    band = sorted(ys)[1:]  # the sine's points: all near the bottom of the plot, the spike far above them
    assert len(ys) <= plots.MAX_POINTS and min(ys) < min(band) - 50
    from generator.site.templates import environment as _environment

    env = _environment()
    for name, plot in [("_loss_plot.svg.j2", line), ("_loss_plot.svg.j2", plots.histogram([1.0, 2.0])),
                       ("_dist_plot.svg.j2", plots.distribution([0.0, 1.0, 10.0], [2, 3], [(5.0, "p")]))]:
        svg = env.get_template(name).render(plot=plot, title="t", x_label="x", y_label="y")
        assert "\n\n" not in svg.strip(), name  # a blank line ends Markdown's raw HTML block mid-SVG


def test_specificity():
    assert specificity(np.eye(4) + 0.1) == 1.0
    assert specificity(np.ones((4, 4))) == 0.25  # ties: argmax picks the first column
    one_image_wins_all = np.full((3, 3), 0.1)
    one_image_wins_all[0] = 5.0
    assert specificity(one_image_wins_all) == pytest.approx(1 / 3)


def test_floor_pulls_up_the_units_under_a_tenth_of_the_peak_only():
    from keras import ops

    from generator.network import backend
    from generator.render import objectives

    target = np.array([[[10.0, 0.5], [-3.0, 2.0]]], np.float32)  # peak 10: the cap is 1
    value, _, grad = backend.value_and_grad(lambda t: (ops.sum(objectives.floor(t)), ()))(ops.convert_to_tensor(target))
    assert float(value) == pytest.approx((1.0 + 0.5 - 3.0 + 1.0) / 4)
    # the off unit and the faint one get a gradient (the ReLU gives them none); the peak does not move the cap
    np.testing.assert_allclose(backend.to_numpy(grad), [[[0.0, 0.25], [0.25, 0.0]]])


def test_contrast_is_zero_unless_another_filter_comes_within_the_margin():
    from keras import ops

    from generator.render import objectives

    reference = ops.convert_to_tensor(np.array([1.0, 4.0, 2.0], np.float32))
    # one position: post-ReLU means per channel; relative = [2, 1, 0.5] and [2, 3.5, 1.9] for filter 0
    maps = ops.convert_to_tensor(np.array([[[[2.0, 4.0, 1.0]]], [[[2.0, 14.0, 3.8]]]], np.float32))
    value = ops.convert_to_numpy(objectives.contrast(maps, ops.convert_to_tensor(np.array([0, 0], np.int32)), reference, 0.25))
    assert value[0] == 0.0  # the own filter's 2 is clearly above 1 and 0.5
    # filter 1 beats it (3.5 > 1.5 by 2.0) and filter 2 comes within the margin (1.9 > 1.5 by 0.4); own scale 1
    assert value[1] == pytest.approx(2.0 + 0.4)
