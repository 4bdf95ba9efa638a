"""`atlas wiring`: rows recomputed from the kernels, the residual rule, the first layer's kernel."""

import json

import numpy as np
import pytest

from generator.network.models import load_model
from generator.passes.wiring import TOP, wiring_tables
from tests.conftest import run_atlas


@pytest.fixture(scope="module")
def vgg_wiring(tmp_path_factory):
    out = tmp_path_factory.mktemp("wiring") / "atlas"
    proc = run_atlas("wiring", "--weights", "hed-bsds500", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "wiring of 13 layers" in proc.stdout
    return out / "vgg16"


def test_rows_are_the_summed_kernels(vgg_wiring, hed_model):
    for layer, f in (("block2_conv2", 5), ("block4_conv1", 300), ("block5_conv3", 511)):
        table = json.loads((vgg_wiring / layer / "wiring.json").read_text())
        entry = table["filters"][str(f)]
        weights = hed_model.layer_weights(layer)[0][:, :, :, f].sum(axis=(0, 1))
        assert [e["filter"] for e in entry["excite"]] == list(np.argsort(-weights, kind="stable")[:TOP])
        assert [e["filter"] for e in entry["inhibit"]] == list(np.argsort(weights, kind="stable")[:TOP])
        assert entry["excite"][0]["weight"] == pytest.approx(float(weights.max()), rel=1e-5)
    # outputs: the next layer's filters that filter 5 of block2_conv2 feeds most
    entry = json.loads((vgg_wiring / "block2_conv2/wiring.json").read_text())["filters"]["5"]
    feeds = hed_model.layer_weights("block3_conv1")[0][:, :, 5, :].sum(axis=(0, 1))
    assert [e["filter"] for e in entry["excites"]] == list(np.argsort(-feeds, kind="stable")[:TOP])
    assert {e["layer"] for e in entry["excites"]} == {"block3_conv1"}
    assert json.loads((vgg_wiring / "block5_conv3/wiring.json").read_text())["filters"]["0"]["excites"] == []


def test_first_layer_shows_its_kernel_in_rgb(vgg_wiring, hed_model):
    entry = json.loads((vgg_wiring / "block1_conv1/wiring.json").read_text())["filters"]["9"]
    kernel = np.asarray(entry["kernel"])
    assert kernel.shape == (3, 3, 3) and entry["excite"] == []
    bgr = hed_model.layer_weights("block1_conv1")[0][:, :, :, 9]
    np.testing.assert_allclose(kernel, bgr[:, :, ::-1], atol=1e-5)


def _trained_batchnorms(loaded, seed: int = 3) -> dict[str, np.ndarray]:
    """Give every BatchNorm of a random ResNet the statistics of a trained one (random weights make them
    the identity, which no scaling bug would show); returns each one's scale gamma / sqrt(var + eps)."""
    rng = np.random.default_rng(seed)
    scales = {}
    for layer in loaded.model.layers:
        if type(layer).__name__ != "BatchNormalization":
            continue
        gamma, beta, mean, variance = layer.get_weights()
        gamma = rng.uniform(0.2, 3.0, gamma.shape).astype(np.float32) * rng.choice([-1, 1], gamma.shape)
        variance = rng.uniform(0.05, 4.0, variance.shape).astype(np.float32)
        layer.set_weights([gamma, rng.normal(size=beta.shape).astype(np.float32), mean, variance])
        scales[layer.name] = gamma / np.sqrt(variance + layer.epsilon)
    return scales


def _ranked_like(entry: dict, source: str, weights: np.ndarray) -> None:
    """``entry``'s strongest inputs from ``source`` are ``weights``' largest and most negative, with their values."""
    up = [e for e in entry["excite"] if e["layer"] == source]
    down = [e for e in entry["inhibit"] if e["layer"] == source]
    assert up or down
    if up:
        assert up[0]["filter"] == int(np.argmax(weights)) and up[0]["weight"] == pytest.approx(float(weights.max()), rel=1e-4)
    if down:
        assert down[0]["filter"] == int(np.argmin(weights)) and down[0]["weight"] == pytest.approx(float(weights.min()), rel=1e-4)


def test_resnet_wiring_across_the_residual_add():
    loaded = load_model("resnet50", "random", seed=2)
    scale = _trained_batchnorms(loaded)
    tables = wiring_tables(loaded)
    out = tables["conv2_block2_out"]
    assert out["inputs"] == ["conv2_block1_out", "conv2_block2_2_relu"]
    # identity shortcut: filter f of the previous block output feeds filter f with weight 1
    entry = out["filters"]["7"]
    assert {"layer": "conv2_block1_out", "filter": 7, "weight": 1.0} in entry["excite"]
    # the branch: the 1x1 kernel times the BatchNorm scale of its output channel
    k3 = loaded.layer_weights("conv2_block2_3_conv")[0][0, 0, :, 7] * scale["conv2_block2_3_bn"][7]
    _ranked_like(entry, "conv2_block2_2_relu", k3)
    # the outputs of a filter are ranked across the next layer's filters, each scaled by its own BatchNorm:
    # a per-channel scale reorders them (the identity would not)
    kernel = loaded.layer_weights("conv2_block2_2_conv")[0][:, :, 5, :].sum(axis=(0, 1))
    feeds = kernel * scale["conv2_block2_2_bn"]
    reader = tables["conv2_block2_1_relu"]["filters"]["5"]
    excites = [e["filter"] for e in reader["excites"] if e["layer"] == "conv2_block2_2_relu"]
    assert excites
    assert excites == [int(f) for f in np.argsort(-feeds, kind="stable") if feeds[f] > 0][: len(excites)]
    assert excites != [int(f) for f in np.argsort(-kernel, kind="stable")[: len(excites)]]
    # a projection shortcut: its 1x1 kernel times its own BatchNorm
    shortcut = loaded.layer_weights("conv2_block1_0_conv")[0][0, 0, :, 3] * scale["conv2_block1_0_bn"][3]
    _ranked_like(tables["conv2_block1_out"]["filters"]["3"], "conv1_relu", shortcut)
    assert "identity" in out["rule"]
    assert np.asarray(tables["conv1_relu"]["filters"]["0"]["kernel"]).shape == (7, 7, 3)


def test_wiring_through_a_concatenation_batchnorm_and_separable_conv(user_atlas, colour_files):
    """The user's network: conv2 reads the joined red_detector (channel 0) and conv1 (channels 1-7)
    through its BatchNorm; sep3 is a depthwise kernel then a 1x1 one."""
    model = colour_files["model"]
    kernel = model.get_layer("conv2").get_weights()[0].sum(axis=(0, 1))  # (8, 12)
    gamma, beta, mean, variance = model.get_layer("conv2_bn").get_weights()
    scale = gamma / np.sqrt(variance + model.get_layer("conv2_bn").epsilon)
    table = json.loads((user_atlas / "colours/conv2_relu/wiring.json").read_text())
    assert table["inputs"] == ["conv1", "red_detector"]
    for f in (0, 4, 11):
        entry = table["filters"][str(f)]
        for item in entry["excite"] + entry["inhibit"]:
            row = 0 if item["layer"] == "red_detector" else 1 + item["filter"]
            assert item["weight"] == pytest.approx(float(kernel[row, f] * scale[f]), rel=1e-4, abs=1e-6)
        assert len(entry["excite"]) + len(entry["inhibit"]) == 8
    depthwise, pointwise = model.get_layer("sep3").get_weights()[:2]
    matrix = depthwise.sum(axis=(0, 1))[:, 0][:, None] * pointwise[0, 0]  # (12, 12)
    entry = json.loads((user_atlas / "colours/sep3/wiring.json").read_text())["filters"]["3"]
    assert [e["filter"] for e in entry["excite"]] == [int(c) for c in np.argsort(-matrix[:, 3], kind="stable")[:TOP]
                                                       if matrix[c, 3] > 0]
    first = json.loads((user_atlas / "colours/red_detector/wiring.json").read_text())["filters"]["0"]
    np.testing.assert_allclose(np.asarray(first["kernel"]), model.get_layer("red_detector").get_weights()[0][:, :, :, 0],
                               atol=1e-5)  # RGB input (no caffe flip)


def test_a_layer_the_weights_cannot_pass_is_a_cut(tmp_path):
    import keras

    from generator.network.modelfile import read_model_file

    image = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="first")(image)
    x = keras.layers.ReLU(name="first_relu")(keras.layers.LayerNormalization(name="norm")(x))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="second")(x)
    keras.Model(image, x).save(tmp_path / "cut.keras")
    read_file = read_model_file(str(tmp_path / "cut.keras"), preprocess="none")
    notes: list[str] = []
    tables = wiring_tables(load_model(read_file, None), notes)
    assert tables["first_relu"]["inputs"] == [] and tables["first_relu"]["cut"] == ["norm"]
    assert tables["second"]["inputs"] == ["first_relu"]
    assert notes == ["wiring stops at layer 'norm' (LayerNormalization): the weights cannot be carried through it, so "
                     "no filter shows inputs from before it"]
