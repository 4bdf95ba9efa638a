"""The networks people train, saved as files: keras.applications architectures (random weights, each
with the preprocessing Keras documents for it, or its own), Keras's transfer-learning pattern with
``preprocess_input`` inside the model, and the zoo networks' own ImageNet classifiers."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from generator.cli.main import main
from tests.conftest import run_atlas

# constructor: (--preprocess, or None where the model scales its own input; input side; keyword arguments).
# The smallest variants at the smallest side whose last map is 2 px or more; Keras 3 ships no RegNet.
APPLICATIONS = {
    "MobileNetV2": ("tf", 64, {"alpha": 0.35}),
    "MobileNetV3Small": (None, 64, {}),
    "EfficientNetB0": (None, 64, {}),
    "EfficientNetV2B0": (None, 64, {}),
    "DenseNet121": ("torch", 64, {}),
    "InceptionV3": ("tf", 107, {}),
    "InceptionResNetV2": ("tf", 107, {}),
    "Xception": ("tf", 71, {}),
    "NASNetMobile": ("tf", 64, {}),
    "ConvNeXtTiny": (None, 64, {}),
    "ResNet50V2": ("tf", 64, {}),
}


def _command(capsys, *argv: str) -> str:
    """Run a command in this process; it must succeed without a traceback. Its stdout."""
    code = main(list(argv))
    out = capsys.readouterr()
    assert code == 0 and "Traceback" not in out.err, out.err
    return out.out


# Nine run in every suite (half a minute to a minute each on a 2-core CPU); the two largest graphs, NASNet
# and InceptionResNet, where ATLAS_ALL_APPLICATIONS=1 is set, and say so when skipped.
LARGEST = ("NASNetMobile", "InceptionResNetV2")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(APPLICATIONS))
def test_a_keras_application_saved_as_a_file_is_listed_rendered_and_examined(name, tmp_path, capsys):
    import os

    import keras

    if name in LARGEST and os.environ.get("ATLAS_ALL_APPLICATIONS") != "1":
        pytest.skip(f"{name}: the largest graph, a minute or more on a 2-core CPU; ATLAS_ALL_APPLICATIONS=1 runs it")

    from tests.usermodels import draw_images

    preprocess, side, kwargs = APPLICATIONS[name]
    path = tmp_path / f"{name.lower()}.keras"
    keras.utils.set_random_seed(0)
    getattr(keras.applications, name)(weights=None, input_shape=(side, side, 3), classes=3, **kwargs).save(path)
    given = ["--model", str(path)] + (["--preprocess", preprocess] if preprocess else [])
    # what the user reads: the model's line, a row per layer (group, layer, filters, field, map, ...), the total
    head, _, *rows, total = _command(capsys, "layers", *given).splitlines()
    table = [row.split() for row in rows]
    first, last = table[0][1], table[-1][1]
    assert total.startswith(f"total: {len(table)} layers") and len(table) >= 10, total
    maps = [cell for cell in table[-1] if re.fullmatch(r"\d+x\d+", cell)]
    assert int(maps[0].split("x")[0]) >= 2 and "a classifier of 3 classes" in head, (head, table[-1])
    if preprocess is None:  # Rescaling / Normalization inside the model: it reads raw pixels
        assert "preprocessing none (the model's own " in head, head
    out = tmp_path / "atlas"
    images = draw_images(tmp_path / "images", per_class=2)
    layers = f"{first},{last}"
    _command(capsys, "generate", *given, "--layers", layers, "--filters", "0", "--steps", "2", "--views", "channel",
             "--out", str(out))
    _command(capsys, "examples", *given, "--layers", layers, "--images", str(images), "--out", str(out))
    model = head.split(":")[0]
    for layer in (first, last):
        assert (out / model / layer / "0000.png").is_file()
        top = json.loads((out / model / layer / "0000.examples.json").read_text())["top"]
        assert len(top) >= 1 and all(np.isfinite(entry["value"]) for entry in top)


def _transfer_model(side: int):
    """Keras's transfer-learning guide, small: augmentation, preprocess_input, the base model, a head."""
    import keras

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(input_shape=(side, side, 3), include_top=False, weights=None, alpha=0.35)
    base.trainable = False
    inputs = keras.Input((side, side, 3))
    x = keras.layers.RandomFlip("horizontal")(inputs)
    x = keras.applications.mobilenet_v2.preprocess_input(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.slow
def test_the_transfer_learning_pattern_end_to_end(tmp_path):
    """inputs -> preprocess_input -> base model -> head: its ops are read as its preprocessing, its
    conv layers render and get examples with labels, and its accuracy is Keras's evaluate."""
    import keras

    from tests.usermodels import SIDE, draw_images

    train, held_out = draw_images(tmp_path / "train", per_class=8), draw_images(tmp_path / "images", per_class=4, seed=1)
    model = _transfer_model(SIDE)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    data = keras.utils.image_dataset_from_directory(train, image_size=(SIDE, SIDE), batch_size=8, seed=0)
    model.fit(data, epochs=3, verbose=0)
    model.save(tmp_path / "pets.keras")
    evaluation = keras.utils.image_dataset_from_directory(held_out, image_size=(SIDE, SIDE), shuffle=False, batch_size=4)
    expected = model.evaluate(evaluation, return_dict=True, verbose=0)["accuracy"]

    out, path = tmp_path / "atlas", str(tmp_path / "pets.keras")
    listing = run_atlas("layers", "--model", path)
    assert listing.returncode == 0, listing.stderr
    assert "preprocessing none (the model's own preprocessing at its input (true_divide, subtract))" in listing.stdout
    proc = run_atlas("generate", "--model", path, "--layers", "conv1_relu", "--filters", "0-1", "--steps", "3",
                     "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    proc = run_atlas("examples", "--model", path, "--layers", "conv1_relu,out_relu", "--images", str(held_out),
                     "--labels", "folders", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    accuracy = json.loads((out / "pets/accuracy.json").read_text())
    assert accuracy["images"] == 12 and accuracy["classes"] == ["blue", "green", "red"]
    assert accuracy["top1"] == pytest.approx(expected, abs=1e-6)
    examples = json.loads((out / "pets/conv1_relu/0001.examples.json").read_text())
    assert examples["top"][0]["label"] in ("blue", "green", "red") and examples["classes"]["votes"]
    assert (out / "pets/conv1_relu/0001.png").is_file()


def _write_full_top_weights(path, constructor: str) -> None:
    """A full-top weights file of the right shapes, in the legacy HDF5 layout of Keras's own file."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(1)
    model = getattr(keras.applications, constructor)(include_top=True, weights=None)
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)


@pytest.mark.slow
def test_a_zoo_network_with_labels_gets_its_classifier(tmp_path):
    """ResNet50 with --labels and a full-top weights file (written here, offline): accuracy.json with
    Keras's published reference beside it, and votes; its predictions are the whole model's."""
    import keras
    from PIL import Image

    from generator.evidence.imagesets import decode_image
    from generator.network import inputs

    weights = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    _write_full_top_weights(weights, "ResNet50")
    rng = np.random.default_rng(0)
    folders = ("n01440764", "n01443537")
    for synset in folders:
        (tmp_path / "val" / synset).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "val" / synset / f"{i}.png")
    out = tmp_path / "atlas"
    proc = run_atlas("examples", "--model", "resnet50", "--weights", str(weights), "--images", str(tmp_path / "val"),
                     "--labels", "folders", "--layers", "conv1_relu", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    accuracy = json.loads((out / "resnet50/accuracy.json").read_text())
    assert accuracy["images"] == 4 and len(accuracy["classes"]) == 1000
    assert accuracy["reference"]["top1"] == pytest.approx(0.749) and accuracy["reference"]["top5"] == pytest.approx(0.921)
    whole = keras.applications.ResNet50(include_top=True, weights=None)
    whole.load_weights(str(weights))
    files = sorted(p.relative_to(tmp_path / "val").as_posix() for p in (tmp_path / "val").rglob("*.png"))
    batch = np.stack([decode_image(tmp_path / "val" / f, 224) for f in files])
    top5 = np.argsort(-whole.predict(inputs.from_uint8(batch, "caffe"), verbose=0), axis=1)[:, :5]
    assert [row[2] for row in accuracy["predictions"]["rows"]] == top5.tolist()
    examples = json.loads((out / "resnet50/conv1_relu/0000.examples.json").read_text())
    assert {v["class"] for v in examples["classes"]["votes"]} == set(folders)
    # the same file's filters for the pictures (its backbone read from the whole network), then the page
    proc = run_atlas("generate", "--model", "resnet50", "--weights", str(weights), "--layers", "conv1_relu",
                     "--filters", "0", "--steps", "2", "--size", "32", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    proc = run_atlas("site", "--data", str(out), "--out", str(tmp_path / "site_src"))
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "site_src/resnet50/index.md").read_text()
    assert f"**top-1 accuracy {100 * accuracy['top1']:.1f}%**" in page
    assert "Keras publishes top-1 74.9%, top-5 92.1% for its ImageNet weights" in page
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert "The classifier's weights: resnet50&#95;weights" in page and f"(sha256 `{sha[:16]}`)" in page


def test_the_zoo_classifiers_files_and_when_they_are_used(tmp_path, monkeypatch, capsys):
    """Keras's full-top files, named and mirrored like the no-top ones; a zoo network takes its classifier
    for ImageNet's classes only, and says in a note why it leaves it out."""
    import argparse

    from generator.cli.prepare import Network, labelled
    from generator.evidence.imagesets import ImageSet
    from generator.network.weights import imagenet_url
    from generator.network.zoo import MODELS

    resnet = MODELS["resnet50"]
    assert imagenet_url(resnet, top=True) == ("https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
                                              "resnet50_weights_tf_dim_ordering_tf_kernels.h5")
    monkeypatch.setenv("ATLAS_IMAGENET_MIRROR", "https://mirror.example/keras/")
    assert imagenet_url(MODELS["vgg19"], top=True) == "https://mirror.example/keras/vgg19_weights_tf_dim_ordering_tf_kernels.h5"
    assert [MODELS[m].reference for m in ("vgg16", "vgg19", "resnet50")] == [(71.3, 90.1), (71.3, 90.0), (74.9, 92.1)]
    whole = resnet.classifier
    assert whole.input_size == 224 and whole.head["classes"] == 1000 and whole.head["layer"] == "predictions"

    files = ["n01440764/a.png", "n01443537/b.png"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    images = ImageSet(tmp_path, tuple(files))

    def args(**given):
        return argparse.Namespace(**{"labels": "folders", "classes": None, "size": None, **given})

    labels, network = labelled(args(), Network(MODELS["vgg16"], "imagenet"), images)
    assert network.spec.head and len(labels.classes) == 1000 and labels.index == (0, 1)
    labels, network = labelled(args(), Network(MODELS["vgg16"], "hed-bsds500"), images)
    assert network.spec.head is None and labels.classes == ("n01440764", "n01443537")
    assert "VGG16's classifier is left out: --weights hed-bsds500 holds no classifier" in capsys.readouterr().err
    labels, network = labelled(args(size=128), Network(MODELS["vgg16"], "random"), images)
    assert network.spec.head is None and "reads 224 px images, not --size 128" in capsys.readouterr().err
    (tmp_path / "cats").mkdir()
    labels, network = labelled(args(), Network(MODELS["resnet50"], "imagenet"), images)
    assert network.spec.head is None and "the labels are not ImageNet's classes" in capsys.readouterr().err
