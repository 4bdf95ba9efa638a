"""`atlas wiring`: rows recomputed from the kernels, the residual rule, the first layer's kernel."""

import json

import numpy as np
import pytest

from generator.models import load_model
from generator.wiring import TOP, wiring_tables
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


def test_resnet_wiring_across_the_residual_add():
    loaded = load_model("resnet50", "random", seed=2)
    tables = wiring_tables(loaded)
    out = tables["conv2_block2_out"]
    assert out["inputs"] == ["conv2_block1_out", "conv2_block2_2_relu"]
    # identity shortcut: filter f of the previous block output feeds filter f with weight 1
    entry = out["filters"]["7"]
    assert {"layer": "conv2_block1_out", "filter": 7, "weight": 1.0} in entry["excite"]
    # the branch: the 1x1 kernel times the BatchNorm scale (identity BatchNorms here: the kernel itself)
    k3 = loaded.layer_weights("conv2_block2_3_conv")[0][0, 0, :, 7]
    branch = [e for e in entry["excite"] if e["layer"] == "conv2_block2_2_relu"]
    assert branch[0]["filter"] == int(np.argmax(k3)) and branch[0]["weight"] == pytest.approx(float(k3.max()), rel=1e-4)
    assert "identity" in out["rule"]
    assert np.asarray(tables["conv1_relu"]["filters"]["0"]["kernel"]).shape == (7, 7, 3)
