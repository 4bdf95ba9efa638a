"""Weights from every source, the pre-activation cut of each network, the ImageNet download."""

import json
import socket
import sys
import threading
import time

import h5py
import numpy as np
import pytest

from generator.errors import AtlasError
from generator.network.layers import model_layers
from generator.network.models import load_model
from generator.network.weights import (
    conv_shapes,
    hed_weights_path,
    read_conv_kernels,
    sha256_file,
)
from tests.conftest import ROOT, error_line, run_atlas


def test_hed_backbone_loads_trained_kernels(hed_model):
    assert hed_model.weights_sha256 == sha256_file(hed_weights_path())
    first = hed_model.layer_weights("block1_conv1")[0]
    assert np.abs(first).max() > 0.3  # trained filters have structure; glorot init stays below 0.3
    with h5py.File(hed_weights_path()) as f:
        np.testing.assert_array_equal(first, f["block1/layers/conv2d/vars/0"][()])


def test_random_weights_are_seeded_and_identity_batchnorm():
    a, b, c = (load_model("vgg16", "random", seed=s) for s in (1, 1, 2))
    assert a.weights_sha256 == b.weights_sha256 != c.weights_sha256
    resnet = load_model("resnet50", "random")
    gamma, beta, mean, variance = resnet.layer_weights("conv1_bn")
    assert (gamma == 1).all() and (variance == 1).all() and (beta == 0).all() and (mean == 0).all()


def _write_legacy_full_h5(path, loaded):
    """A legacy Keras full-VGG16 file: layer groups by name, plus dense layers (skipped)."""
    with h5py.File(path, "w") as f:
        for layer in loaded.layers:
            k, b = loaded.layer_weights(layer.name)
            g = f.create_group(f"{layer.name}/{layer.name}")
            g["kernel:0"] = k
            g["bias:0"] = b
        f["fc1/fc1/kernel:0"] = np.zeros((8, 4), np.float32)
        f["fc1/fc1/bias:0"] = np.zeros((4,), np.float32)


def test_weights_from_paths(tmp_path, hed_model):
    legacy = tmp_path / "vgg16_full.h5"
    _write_legacy_full_h5(legacy, hed_model)
    loaded = load_model("vgg16", str(legacy))
    assert loaded.weights_sha256 == sha256_file(legacy)
    np.testing.assert_array_equal(loaded.layer_weights("block5_conv3")[0], hed_model.layer_weights("block5_conv3")[0])
    keras3 = tmp_path / "notop.weights.h5"
    hed_model.model.save_weights(str(keras3))
    np.testing.assert_array_equal(load_model("vgg16", str(keras3)).layer_weights("block4_conv1")[0],
                                  hed_model.layer_weights("block4_conv1")[0])
    resnet = load_model("resnet50", "random", seed=3)
    saved = tmp_path / "resnet.weights.h5"
    resnet.model.save_weights(str(saved))
    again = load_model("resnet50", str(saved))
    np.testing.assert_array_equal(again.layer_weights("conv3_block2_2_conv")[0], resnet.layer_weights("conv3_block2_2_conv")[0])


def test_bad_weight_files(tmp_path, hed_model):
    shapes = conv_shapes(hed_model.model)
    with pytest.raises(AtlasError, match="no such weights file"):
        read_conv_kernels(tmp_path / "missing.h5", shapes)
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(AtlasError, match="not a readable HDF5"):
        read_conv_kernels(corrupt, shapes)
    wrong = tmp_path / "other.h5"
    with h5py.File(wrong, "w") as f:
        f["conv1/kernel:0"] = np.zeros((3, 3, 3, 32), np.float32)
        f["conv1/bias:0"] = np.zeros((32,), np.float32)
    with pytest.raises(AtlasError, match=r"expected the 13 VGG16 conv kernels.*found 1 \(3x32\)"):
        read_conv_kernels(wrong, shapes)
    with pytest.raises(AtlasError, match="not a ResNet50 weights file Keras can load"):
        load_model("resnet50", str(wrong))
    with pytest.raises(AtlasError, match="not a weight source"):
        load_model("vgg16", "imagenet21k")
    with pytest.raises(AtlasError, match="hed-bsds500 is a VGG16 backbone, not VGG19"):
        load_model("vgg19", "hed-bsds500")


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_pre_activation_cut_matches_keras_after_its_relu(name):
    loaded = load_model(name, "random", seed=1)
    layers = [model_layers(name)[i] for i in (0, 3, -1)]
    x = np.random.default_rng(0).normal(0, 40, (2, 64, 64, 3)).astype(np.float32)
    net = loaded.tap_net(layers)
    import keras

    reference = keras.Model(loaded.model.input, [loaded.model.get_layer(x.name).output for x in layers])(x)
    for ours, theirs in zip(net(x, net.variables), reference):
        np.testing.assert_allclose(np.maximum(np.asarray(ours), 0), np.asarray(theirs), rtol=1e-5, atol=1e-4)
        assert np.asarray(ours).min() < 0  # before the ReLU: negative values are there


JAX_CHECK = """
import json, sys, numpy as np
from generator.network import backend
backend.select("jax")
import keras
from generator.network.layers import model_layers
from generator.network.models import load_model
out = {}
for name in ("vgg16", "resnet50"):
    loaded = load_model(name, "random", seed=1)
    layers = [model_layers(name)[i] for i in (0, 3, -1)]
    x = np.random.default_rng(0).normal(0, 40, (2, 64, 64, 3)).astype(np.float32)
    net = loaded.tap_net(layers)
    ref = keras.Model(loaded.model.input, [loaded.model.get_layer(l.name).output for l in layers])(x)
    out[name] = [float(np.abs(np.maximum(np.asarray(a), 0) - np.asarray(b)).max() / (np.abs(np.asarray(b)).max() + 1e-6))
                 for a, b in zip(net(x, net.variables), ref)]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_pre_activation_cut_matches_keras_on_jax():
    import subprocess

    proc = subprocess.run([sys.executable, "-c", JAX_CHECK], capture_output=True, text=True, cwd=ROOT,
                          env={**__import__("os").environ, "KERAS_BACKEND": "jax"}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(e < 1e-5 for values in errors.values() for e in values), errors


def test_mixed_precision_cut_is_close_to_float32():
    loaded = load_model("vgg16", "random", seed=1)
    layer = model_layers("vgg16")[5]
    x = np.random.default_rng(0).normal(0, 40, (1, 32, 32, 3)).astype(np.float32)
    exact = np.asarray(loaded.tap_net([layer])(x, loaded.tap_net([layer]).variables)[0])
    net = loaded.tap_net([layer], "mixed_bfloat16")
    rough = np.asarray(net(x, net.variables)[0])
    assert rough.dtype == np.float32
    assert np.abs(rough - exact).max() < 0.05 * np.abs(exact).max()


class _SilentServer:
    """Accepts connections on 127.0.0.1 and never answers: a download that would hang forever."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/weights"

    def _accept(self):
        try:
            while True:
                self.conns.append(self.sock.accept()[0])
        except OSError:
            pass

    def __exit__(self, *exc):
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_imagenet_download_failure_is_bounded_and_one_line(tmp_path):
    with _SilentServer() as url:
        start = time.monotonic()
        proc = run_atlas(
            "layers", "--weights", "imagenet",
            env={"ATLAS_IMAGENET_MIRROR": url, "ATLAS_DOWNLOAD_TIMEOUT": "3", "KERAS_HOME": str(tmp_path)},
            timeout=120,
        )
        elapsed = time.monotonic() - start
    line = error_line(proc)
    assert "could not download the VGG16 ImageNet weights (timed out)" in line
    assert "--weights hed-bsds500" in line and "--weights PATH" in line
    assert elapsed < 60  # bounded: a hang would run into the subprocess timeout instead


@pytest.mark.parametrize("model, title", [("vgg16", "VGG16"), ("vgg19", "VGG19"), ("resnet50", "ResNet50")])
def test_imagenet_refused_connection_for_each_model(tmp_path, model, title):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    proc = run_atlas("layers", "--model", model, "--weights", "imagenet",
                     env={"ATLAS_IMAGENET_MIRROR": f"http://127.0.0.1:{port}/", "KERAS_HOME": str(tmp_path)},
                     timeout=120)
    line = error_line(proc)
    assert f"could not download the {title} ImageNet weights" in line and "--weights PATH" in line
