"""Layer tables: what the Keras graphs say, shipped as JSON, and the geometry the renderer, the
examples pass and the site rely on."""

import pytest

from generator.errors import AtlasError
from generator.network.layers import discover, find_layer, model_layers
from generator.network.models import build_keras_model
from generator.network.zoo import MODELS, model_spec
from tests.conftest import error_line, run_atlas


@pytest.mark.parametrize("name", list(MODELS))
def test_shipped_table_is_what_the_keras_graph_says(name):
    spec = model_spec(name)
    model = build_keras_model(spec)
    assert discover(model, spec) == model_layers(name)
    import keras

    for layer in model_layers(name)[:: max(1, len(model_layers(name)) // 6)]:
        sub = keras.Model(model.input, model.get_layer(layer.tap).output)
        for size in (64, 97):
            assert sub.compute_output_spec(keras.KerasTensor((1, size, size, 3))).shape[1] == layer.output_size(size)


def test_vgg_tables():
    vgg16 = model_layers("vgg16")
    assert len(vgg16) == 13 and sum(x.filters for x in vgg16) == 4224
    b33 = find_layer("block3_conv3", "vgg16")
    assert (b33.group, b33.filters, b33.receptive_field, b33.output_size(224), b33.stride, b33.fused) == (
        "block3", 256, 40, 56, 4, True)
    assert find_layer("block5_conv3", "vgg16").receptive_field == 196
    assert b33.centre(0, 0) == (1.5, 1.5) and b33.centre(2, 3) == (9.5, 13.5)
    vgg19 = model_layers("vgg19")
    assert len(vgg19) == 16 and sum(x.filters for x in vgg19) == 5504
    assert abs(sum(x.forward_flop(224) for x in vgg16[-1:]) / 1e9 - 30.7) < 0.1  # VGG16's 15.5 GMAC


def test_resnet50_reads_before_each_activation():
    layers = {x.name: x for x in model_layers("resnet50")}
    assert layers["conv4_block3_out"].tap == "conv4_block3_add" and layers["conv4_block3_out"].filters == 1024
    assert layers["conv2_block1_1_relu"].tap == "conv2_block1_1_bn"
    assert layers["conv1_relu"].tap == "conv1_bn" and layers["conv1_relu"].group == "conv1"
    assert {x.group for x in layers.values()} == {"conv1", "conv2", "conv3", "conv4", "conv5"}
    assert model_spec("resnet50").group_label("conv4") == "Stage 4"
    assert model_spec("resnet50").short_name("conv4_block3_out", 17) == "ResNet50 conv4_block3_out:17"


def test_unknown_layer_names_the_choices():
    with pytest.raises(AtlasError, match="unknown layer 'block6_conv1' for vgg16: choose from block1_conv1"):
        find_layer("block6_conv1", "vgg16")
    with pytest.raises(AtlasError, match="unknown model 'alexnet'"):
        model_layers("alexnet")


def test_cli_layers_lists_every_model_without_library_noise():
    proc = run_atlas("layers", "--model", "vgg19", "--weights", "random", fresh=True)  # TensorFlow's import too
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "total: 16 layers, 5,504 filters"
    assert proc.stderr == "", proc.stderr  # no TensorFlow start-up notes
    proc = run_atlas("layers", "--model", "resnet50", "--size", "224")
    assert proc.returncode == 0 and "conv4_block3_out" in proc.stdout and proc.stderr == ""
    assert proc.stdout.splitlines()[-1] == "total: 49 layers, 22,720 filters"
    assert "block5_conv3  512      196 px" in run_atlas("layers").stdout


def test_cli_bad_model_is_one_line():
    assert "invalid choice: 'vgg11'" in error_line(run_atlas("layers", "--model", "vgg11"))
