"""A user's own network from its Keras file: the layer table from its graph (branches, concatenations,
depthwise and separable convolutions, what cannot be followed), input, preprocessing, head, name, and
every refusal as one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from generator.cli.main import main
from generator.errors import AtlasError
from generator.network.layers import discover, model_layers
from generator.network.modelfile import model_name, model_title, read_model_file, slug
from generator.network.zoo import model_spec
from tests.conftest import error_line, run_atlas


def one_line(capsys, *argv: str) -> str:
    """Run the command in this process (the backend is already up); its one error line."""
    code = main(list(argv))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and "Traceback" not in err, err
    errors = [line for line in lines if " error: " in line]
    assert len(errors) == 1 and lines[-1] == errors[0] and len(lines) <= 2, err  # after the device line, if any
    return errors[0]


def test_atlas_layers_lists_a_users_model(colour_files):
    proc = run_atlas("layers", "--model", str(colour_files["keras"]))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("colours: colours.keras (sha256 ") and "input 32x32 RGB" in lines[0]
    assert "preprocessing none (the model's own Rescaling layer), a classifier of 3 classes" in lines[0]
    table = {line.split()[1]: line.split() for line in lines[2:-1]}
    assert list(table) == ["red_detector", "conv1", "conv2_relu", "sep3"]
    assert table["red_detector"][:3] == ["stage1", "red_detector", "1"] and table["conv1"][2] == "7"
    assert table["conv2_relu"][:3] == ["stage2", "conv2_relu", "12"] and table["conv2_relu"][-1] == "conv2_bn"
    assert table["sep3"][3:5] == ["12", "px"]  # 3 + 2 x 2 (pool) + 2 x 2 (conv2) ... : 3, 4, 8, 12
    assert lines[-1] == "total: 4 layers, 32 filters"
    assert proc.stderr == ""


def test_geometry_and_heads_of_the_table(colour_files):
    read_file = read_model_file(str(colour_files["h5"]), name="colours_h5")
    spec, layers, notes = read_file.spec, read_file.layers, list(read_file.notes)
    assert notes == [] and spec.input_size == 32 and spec.channels == 3
    assert spec.head == {"layer": "classes", "unfuse": True, "activation": "softmax", "classes": 3, "binary": False}
    assert [x.name for x in layers] == ["red_detector", "conv1", "conv2_relu", "sep3"]
    joined = {x.name: x for x in layers}
    # the concatenation of 1 + 7 channels feeds conv2: in_channels 8; the separable conv reads 12
    assert joined["conv2_relu"].in_channels == 8 and joined["sep3"].in_channels == 12
    assert [x.output_size(32) for x in layers] == [32, 32, 16, 16]
    assert model_layers(spec) == layers and spec.source["file"] == "colours.h5"  # the spec carries its table


def _sequential_and_nested():
    import keras

    seq = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(4, 3, name="c1"),
                            keras.layers.ReLU(name="r1"), keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw"),
                            keras.layers.Activation("relu", name="Dw_Act"), keras.layers.GlobalAveragePooling2D(),
                            keras.layers.Dense(1, activation="sigmoid", name="out")], name="seq")
    inner = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="inner_conv")],
                             name="backbone")
    image = keras.Input((16, 16, 3))
    x = inner(image)
    gate = keras.layers.GlobalAveragePooling2D()(x)
    gate = keras.layers.Reshape((1, 1, 4))(keras.layers.Dense(4, activation="sigmoid", name="se")(gate))
    gated = keras.layers.Multiply(name="se_multiply")([x, gate])
    y = keras.layers.Conv2D(4, 3, padding="same", name="after_gate")(gated)
    z = keras.layers.Conv2D(5, 1, name="linear_1x1")(x)
    w = keras.layers.Conv2D(3, 1, name="after_upsample")(keras.layers.UpSampling2D(name="upsample")(x))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Concatenate()([keras.layers.ReLU(name="gated_relu")(y), z]))
    out = keras.layers.Dense(2, name="logits")(keras.layers.Concatenate()([pooled, keras.layers.GlobalAveragePooling2D()(w)]))
    return seq, keras.Model(image, out, name="nested")


def test_sequential_nested_depthwise_linear_and_unfollowed(tmp_path):
    seq, nested = _sequential_and_nested()
    seq.save(tmp_path / "seq.keras")
    nested.save(tmp_path / "nested.keras")
    read_file = read_model_file(str(tmp_path / "seq.keras"), preprocess="scale=0.00392157,offset=0")
    spec, layers, notes = read_file.spec, read_file.layers, list(read_file.notes)
    assert [(x.name, x.keras, x.tap, x.filters) for x in layers] == [("r1", "r1", "c1", 4), ("dw_act", "Dw_Act", "dw", 8)]
    assert spec.channels == 1 and spec.input_size is None and spec.preprocessing.key == "scale=0.00392157,offset=0,gray"
    assert spec.head["binary"] and spec.head["classes"] == 2 and spec.head["activation"] == "sigmoid"
    read_file = read_model_file(str(tmp_path / "nested.keras"), preprocess="tf")
    spec, layers, notes = read_file.spec, read_file.layers, list(read_file.notes)
    names = {x.name: x for x in layers}
    # the nested backbone is flattened; a 1x1 conv with no activation after it is shown at its output; a map
    # times a squeeze-and-excitation gate keeps its geometry
    assert set(names) == {"inner_conv", "linear_1x1", "gated_relu"} and names["linear_1x1"].activation == "linear"
    assert names["gated_relu"].tap == "after_gate" and names["gated_relu"].receptive_field == 5
    assert notes == ["layer 'upsample' (UpSampling2D): the layer table cannot follow it; the layers after it are not "
                     "shown"]
    assert spec.head == {"layer": "logits", "unfuse": False, "activation": "linear", "classes": 2, "binary": False}


def test_zoo_tables_are_unchanged_by_the_general_rules():
    """The rules for users' networks (linear convs, merges, notes) leave the shipped tables as they are."""
    from generator.network.models import build_keras_model

    notes: list[str] = []
    spec = model_spec("resnet50")
    assert discover(build_keras_model(spec), spec, notes) == model_layers("resnet50") and notes == []


def test_names():
    assert slug("My CNN v2 (best)") == "my_cnn_v2_best"
    assert model_name("runs/My CNN.keras", None) == "my_cnn"
    for path, name, message in (("vgg16.keras", None, "the atlas's own VGG16; give --name my_vgg16"),
                                ("x.keras", "method", "the site uses for its own pages"),
                                ("x.keras", "My-Net", "lowercase letters, digits and _ only")):
        with pytest.raises(AtlasError, match=message):
            model_name(path, name)
    # a file's stem is shown as the network's title only when Markdown, YAML and HTML read it as text
    assert model_title("My CNN v2.1", "my_cnn_v2_1") == "My CNN v2.1"
    for stem in ("[x](javascript:alert(1))", "a: b", "# x", "<b>x</b>", "x*y*", "caf\xe9", " lead", "x" * 65):
        assert model_title(stem, "safe") == "safe", stem


def _plain_models(tmp_path):
    import keras

    image = keras.Input((8, 8, 3))
    keras.Model(image, keras.layers.Dense(2)(keras.layers.Flatten()(image))).save(tmp_path / "dense.keras")
    x = keras.layers.Conv2D(2, 3, activation="relu", name="c")(image)
    keras.Model(image, x).save(tmp_path / "raw.keras")
    keras.Model(image, x).save_weights(tmp_path / "raw.weights.h5")

    @keras.saving.register_keras_serializable(package="atlas_test")
    class Doubling(keras.layers.Layer):
        def call(self, x):
            return x * 2

    y = Doubling(name="double")(keras.layers.Conv2D(2, 3, activation="relu", name="c2")(keras.layers.Rescaling(1 / 255)(image)))
    keras.Model(image, y).save(tmp_path / "custom.keras")
    keras.saving.get_custom_objects().pop("atlas_test>Doubling")  # as in a new process: Keras does not know it
    (tmp_path / "custom_layers.py").write_text(
        "import keras\n\n\n@keras.saving.register_keras_serializable(package='atlas_test')\n"
        "class Doubling(keras.layers.Layer):\n    def call(self, x):\n        return x * 2\n")
    (tmp_path / "junk.keras").write_bytes(b"not a model")
    wide = keras.Input((8, 12, 3))
    keras.Model(wide, keras.layers.Conv2D(2, 3, activation="relu")(wide)).save(tmp_path / "wide.keras")


def test_every_refusal_is_one_line(tmp_path, capsys, colour_files):
    _plain_models(tmp_path)
    t = str(tmp_path)
    cases = [
        (("layers", "--model", f"{t}/junk.keras"), "junk.keras: not a Keras model file"),
        (("layers", "--model", f"{t}/raw.weights.h5"), "holds weights only, not a model"),
        (("layers", "--model", f"{t}/dense.keras", "--preprocess", "none"), "dense.keras: no convolution the atlas can show"),
        (("layers", "--model", f"{t}/custom.keras"),
         "layer 'double' (Doubling) is a custom class Keras cannot load without custom_objects={'Doubling': <its class>}"),
        (("layers", "--model", f"{t}/raw.keras"), "add --preprocess none (0..255), scale=0.00392157,offset=0"),
        (("layers", "--model", str(colour_files["keras"]), "--preprocess", "tf"),
         "scales its own input (its Rescaling layer 'rescale')"),
        (("layers", "--model", f"{t}/wide.keras", "--preprocess", "none"), "its input is 8x12; the atlas renders square"),
        (("layers", "--model", f"{t}/missing.keras"), "--model " + f"{t}/missing.keras: no such file"),
        (("layers", "--model", "vgg16", "--name", "x"), "--name is for a model file"),
        (("layers", "--model", f"{t}/raw.keras", "--preprocess", "bgr"), "--preprocess 'bgr': give caffe, tf, torch"),
        (("examples", "--model", str(colour_files["keras"]), "--images", str(colour_files["images"]), "--size", "64",
          "--out", f"{t}/a"),
         "--size 64: colours reads 32x32 images only (its input is fixed); leave --size out"),
        (("layers", "--model", "vgg16", "--weights", str(colour_files["keras"])),
         "a saved model of another network ('colours', 3 Conv2D layers"),
        (("generate", "--model", str(colour_files["keras"]), "--weights", "imagenet", "--out", f"{t}/b"),
         "--weights imagenet is for the atlas's own networks"),
    ]
    for argv, expected in cases:
        line = one_line(capsys, *argv)
        assert expected in line, (argv, line)
    # the custom layer loads once its file is given
    assert main(["layers", "--model", f"{t}/custom.keras", "--custom-objects", f"{t}/custom_layers.py"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].split()[1] == "c2" and out[-1] == "total: 1 layers, 2 filters"
    assert out[-2] == "not shown: layer 'double' (Doubling): the layer table cannot follow it; the layers after it are not shown"


def test_bad_model_argument_is_refused_before_any_library():
    assert "invalid choice: 'alexnet' (choose from vgg16, vgg19, resnet50, or give the path" in error_line(
        run_atlas("layers", "--model", "alexnet"))


@pytest.mark.slow
def test_grayscale_pictures_are_gray_and_get_their_trust(tmp_path):
    from tests.usermodels import colour_network, draw_images, train

    folder = draw_images(tmp_path / "images", per_class=4, seed=3)
    model = train(colour_network(grayscale=True, rescaling=False), folder, epochs=1)
    model.save(tmp_path / "gray.keras")
    out = tmp_path / "atlas"
    line = error_line(run_atlas("generate", "--model", str(tmp_path / "gray.keras"), "--out", str(out)))
    assert "add --preprocess" in line
    line = error_line(run_atlas("generate", "--model", str(tmp_path / "gray.keras"), "--preprocess", "caffe",
                                "--out", str(out)))
    assert "reads one (grayscale) channel" in line
    proc = run_atlas("generate", "--model", str(tmp_path / "gray.keras"), "--preprocess", "scale=0.00392157,offset=0",
                     "--layers", "conv1", "--filters", "0-1", "--steps", "3", "--method", "naive", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    from PIL import Image

    picture = np.asarray(Image.open(out / "gray/conv1/0001.png"))
    assert picture.shape == (32, 32, 3) and (picture[..., 0] == picture[..., 1]).all() and (picture[..., 1] == picture[..., 2]).all()
    manifest = json.loads((out / "gray/manifest.json").read_text())
    assert manifest["config"]["preprocessing"] == "scale=0.00392157,offset=0,gray"
    assert manifest["user_model"]["preprocessing"]["channels"] == 1 and "/" not in manifest["user_model"]["file"]
    given = ("--model", str(tmp_path / "gray.keras"), "--preprocess", "scale=0.00392157,offset=0", "--images",
             str(folder), "--layers", "conv1", "--out", str(out))
    proc = run_atlas("examples", *given, "--labels", "folders")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "gray/accuracy.json").read_text())["images"] == 12
    proc = run_atlas("trust", *given)  # the first layer's input patch has one channel, not three
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    trust = json.loads((out / "gray/conv1/0001.json").read_text())["trust"]
    assert trust["two_image"]["pairs"] > 0 and trust["path_similarity"]["layers"] == ["conv1"]


def _with_preprocess_input(module: str, channels_flip: bool = False):
    """inputs -> keras.applications.<module>.preprocess_input -> a small convnet (ops saved in the graph)."""
    import keras

    keras.utils.set_random_seed(0)
    image = keras.Input((16, 16, 3), name="image")
    x = keras.layers.RandomFlip("horizontal", name="flip")(image)
    x = getattr(keras.applications, module).preprocess_input(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(x)
    x = x * 0.5  # an elementwise op inside the network keeps the map's geometry
    x = keras.layers.Conv2D(6, 3, strides=2, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(image, keras.layers.Dense(2, activation="softmax", name="out")(x))


@pytest.mark.parametrize("module, ops", [("mobilenet_v2", "true_divide, subtract"), ("resnet50", "add"),
                                         ("densenet", "true_divide, add, true_divide")])
def test_preprocess_input_inside_the_model_is_its_preprocessing(tmp_path, module, ops):
    """tf, caffe (a channel flip and an offset) and torch saved as ops: read as the model's own
    preprocessing (it reads raw pixels), passed through by the layer table, and computed by the cut
    network exactly as Keras computes the model."""
    from generator.network.models import load_model

    path = tmp_path / f"with_{module}.keras"
    _with_preprocess_input(module).save(path)
    read = read_model_file(str(path))
    assert read.spec.preprocessing.key == "none"
    origin = read.spec.source["preprocessing_from"]
    assert origin.startswith("the model's own preprocessing at its input (") and \
        [op.rstrip("_0123456789") for op in origin[origin.index("(") + 1:-1].split(", ")] == ops.split(", ")
    assert [(x.name, x.receptive_field, x.stride, x.filters) for x in read.layers] == [("conv1", 3, 1, 4),
                                                                                        ("conv2", 5, 2, 6)]
    with pytest.raises(AtlasError, match="scales its own input \\(its preprocessing ops .*leave --preprocess out"):
        read_model_file(str(path), preprocess="tf")
    loaded = load_model(read, None)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    net = loaded.tap_net(list(read.layers))
    maps = [np.asarray(m) for m in net(pixels, net.variables)]
    import keras

    direct = keras.Model(read.model.input, [read.model.get_layer("conv1").output, read.model.get_layer("conv2").output])
    relu, conv2 = (np.asarray(m) for m in direct(pixels, training=False))
    assert np.allclose(np.maximum(maps[0], 0), relu, atol=1e-4) and np.allclose(maps[1], conv2, atol=1e-4)


def test_channels_first_is_refused_in_one_line(tmp_path):
    import keras

    image = keras.Input((3, 16, 16))
    x = keras.layers.Conv2D(4, 3, data_format="channels_first", activation="relu", name="conv_cf")(image)
    keras.Model(image, x).save(tmp_path / "first.keras")
    with pytest.raises(AtlasError, match="its layer 'conv_cf' \\(Conv2D\\) reads channels first .* rebuild it with "
                                         "data_format='channels_last'"):
        read_model_file(str(tmp_path / "first.keras"), preprocess="tf")
    image = keras.Input((3, 16, 16))
    keras.Model(image, keras.layers.Conv2D(4, 3, activation="relu")(image)).save(tmp_path / "shaped.keras")
    with pytest.raises(AtlasError, match="its input is shaped \\(3, 16, 16\\): channels first"):
        read_model_file(str(tmp_path / "shaped.keras"), preprocess="tf")
