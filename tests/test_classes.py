"""Classes and accuracy from the examples pass, on a network trained here: accuracy equal to Keras's own,
a filter made to fire for one class lists it first, votes equal to what the network computes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from generator.evidence.classes import binomial_tail
from generator.evidence.imagesets import list_images, load_image
from generator.network import inputs
from tests.usermodels import CLASSES


def _keras_predictions(colour_files, size: int = 32) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The held-out images as the pass reads them, through Keras's own predict; and their classes."""
    images = list_images(colour_files["images"])
    batch = np.stack([load_image(images.path(i), size) for i in range(len(images.files))])
    x = inputs.from_uint8(batch, inputs.Preprocessing("none"))  # the model scales its own pixels
    truth = np.asarray([CLASSES.index(f.split("/")[0]) for f in images.files])
    return colour_files["model"].predict(x, verbose=0), truth, list(images.files)


def test_accuracy_equals_keras_own(user_atlas, colour_files):
    record = json.loads((user_atlas / "colours/accuracy.json").read_text())
    probabilities, truth, files = _keras_predictions(colour_files)
    assert record["classes"] == list(CLASSES) and record["images"] == len(files) == 24
    rows = record["predictions"]["rows"]
    assert [r[0] for r in rows] == list(range(len(files))) and [r[1] for r in rows] == truth.tolist()
    keras_top = np.argsort(-probabilities, axis=1, kind="stable")
    assert [r[2][0] for r in rows] == probabilities.argmax(axis=1).tolist()  # each image's top-1
    assert [sorted(r[2]) for r in rows] == [sorted(t[:3]) for t in keras_top.tolist()]
    top1 = float((probabilities.argmax(axis=1) == truth).mean())
    assert record["top1"] == pytest.approx(top1, abs=1e-6)
    import keras

    model = colour_files["model"]
    model.compile(loss="sparse_categorical_crossentropy", metrics=[keras.metrics.SparseCategoricalAccuracy()])
    x = inputs.from_uint8(np.stack([load_image(colour_files["images"] / f, 32) for f in files]), "none")
    _, evaluated = model.evaluate(x, truth, verbose=0)
    assert record["top1"] == pytest.approx(evaluated, abs=1e-6)
    assert record["top_k"] == 3 and record["top5"] == 1.0
    for c, name in enumerate(CLASSES):
        mine = truth == c
        assert record["per_class"][name]["images"] == int(mine.sum())
        assert record["per_class"][name]["top1"] == pytest.approx((probabilities[mine].argmax(1) == c).mean(), abs=1e-4)


def test_a_filter_made_to_fire_for_red_lists_red_first(user_atlas):
    record = json.loads((user_atlas / "colours/red_detector/0000.examples.json").read_text())
    classes = record["classes"]
    assert classes["top"][0]["class"] == "red" and classes["top"][0]["count"] == classes["labelled"] == 6
    assert classes["top"][0]["base"] == pytest.approx(1 / 3, abs=1e-3) and classes["top"][0]["lift"] == 3.0
    assert classes["top"][0]["p"] == pytest.approx((1 / 3) ** 6, rel=1e-2)
    assert classes["votes"][0]["class"] == "red" and classes["votes"][0]["value"] > 0
    assert all(e["label"] == "red" for e in record["top"])
    assert all(e["label"] in CLASSES for e in record["bottom"])
    manifest = json.loads((user_atlas / "colours/manifest.json").read_text())
    assert manifest["labels"]["classes"] == 3 and manifest["labels"]["source"] == "folders"


def test_votes_of_the_last_layer_are_the_classifier_weights(user_atlas, colour_files):
    """sep3 feeds global average pooling and the dense layer: the class logit's gradient with respect
    to a channel's spatial mean is exactly that channel's weight for the class, on every image."""
    weights = colour_files["model"].get_layer("classes").get_weights()[0]  # (12 channels, 3 classes)
    for f in (0, 5, 11):
        record = json.loads((user_atlas / f"colours/sep3/{f:04d}.examples.json").read_text())["classes"]
        votes = {v["class"]: v["value"] for v in record["votes"]}
        assert set(votes) == set(CLASSES)
        for c, name in enumerate(CLASSES):
            assert votes[name] == pytest.approx(float(weights[f, c]), rel=1e-3, abs=1e-5)
        assert [v["class"] for v in record["votes"]] == [CLASSES[c] for c in np.argsort(-weights[f], kind="stable")]


def test_votes_match_the_gradient_image_by_image(colour_files):
    """One backward pass for the batch gives each image's own gradient: checked against a finite
    difference of the network's logit in the offset of one image's channel."""
    from keras import ops

    from generator.evidence.classes import ClassNet
    from generator.network import backend
    from generator.network.modelfile import read_model_file
    from generator.network.models import load_model

    loaded = load_model(read_model_file(str(colour_files["keras"]), name="colours_fd"), None)
    layer = next(x for x in loaded.layers if x.name == "conv2_relu")
    net = ClassNet(loaded, [layer], "float32", 4)
    images = list_images(colour_files["images"])
    x = ops.convert_to_tensor(inputs.from_uint8(np.stack([load_image(images.path(i), 32) for i in (0, 9, 17, 20)]), "none"))
    labels = np.asarray([0, 1, 2, 2])

    def loss(offsets, x, variables):
        _, logits = net(x, offsets, variables)
        return ops.sum(ops.take_along_axis(logits, ops.convert_to_tensor(labels[:, None]), axis=1)), logits

    _, _, grads = backend.value_and_grad(loss)(net.zero_offsets(), x, net.variables)
    grads = backend.to_numpy(grads[0])
    eps = 1e-2
    for image, channel in ((0, 3), (2, 7), (3, 11)):
        bumped = np.zeros((4, layer.filters), np.float32)
        bumped[image, channel] = eps
        up = backend.to_numpy(net(x, [ops.convert_to_tensor(bumped)], net.variables)[1])
        down = backend.to_numpy(net(x, [ops.convert_to_tensor(-bumped)], net.variables)[1])
        numeric = (up[image, labels[image]] - down[image, labels[image]]) / (2 * eps)
        assert grads[image, channel] == pytest.approx(numeric, rel=2e-2, abs=1e-3)
        others = [i for i in range(4) if i != image]
        assert np.allclose(up[others], down[others])  # an image's offset moves its own logits only


def test_binomial_tail():
    assert binomial_tail(0, 16, 0.1) == 1.0
    assert binomial_tail(16, 16, 0.5) == pytest.approx(0.5 ** 16)
    assert binomial_tail(2, 3, 0.5) == pytest.approx(0.5)
    assert binomial_tail(1, 10, 0.2) == pytest.approx(1 - 0.8 ** 10)
    assert math.isclose(binomial_tail(3, 3, 1.0), 1.0)


@pytest.mark.slow
def test_two_devices_give_the_classes_and_accuracy_of_one(colour_files, tmp_path):
    """A labelled pass over two devices: each device's votes, class counts and predictions merged at
    every checkpoint give one device's accuracy and classes (votes to float rounding)."""
    from tests.conftest import run_atlas

    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    args = ["examples", "--backend", "jax", "--model", str(colour_files["keras"]), "--images",
            str(colour_files["images"]), "--labels", "folders", "--top", "4", "--batch", "4", "--checkpoint", "8"]
    one = run_atlas(*args, "--devices", "1", "--out", str(tmp_path / "one"), env=env)
    two = run_atlas(*args, "--out", str(tmp_path / "two"), env=env)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert two.stderr.startswith("jax on 2 devices: 2 × CPU (")
    read = lambda run, name: json.loads((tmp_path / run / "colours" / name).read_text())  # noqa: E731
    assert read("one", "accuracy.json") == read("two", "accuracy.json")
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.examples.json"))
    assert len(files) > 20
    for path in files:
        a, b = read("one", path.relative_to("colours")), read("two", path.relative_to("colours"))
        va, vb = a["classes"].pop("votes"), b["classes"].pop("votes")
        assert a == b, path
        assert len(va) == len(vb), path
        assert all(v["value"] == pytest.approx(w["value"], rel=1e-4, abs=1e-6) for v, w in zip(va, vb)), path
