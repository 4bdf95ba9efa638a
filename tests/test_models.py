import socket
import threading
import time

import h5py
import numpy as np
import pytest

from generator.errors import AtlasError
from generator.models import (
    VGG16_CONV_SHAPES,
    VGG16_LAYERS,
    find_layer,
    hed_weights_path,
    load_model,
    read_vgg16_kernels,
    sha256_file,
)
from tests.conftest import error_line, run_atlas


def test_layer_table_matches_vgg16():
    assert len(VGG16_LAYERS) == 13
    assert sum(layer.filters for layer in VGG16_LAYERS) == 4224
    b33 = find_layer("block3_conv3")
    assert (b33.block, b33.filters, b33.receptive_field, b33.output_size(224)) == (3, 256, 40, 56)
    assert find_layer("block5_conv3").receptive_field == 196


def test_hed_backbone_loads_trained_kernels(hed_model):
    assert hed_model.weights_sha256 == sha256_file(hed_weights_path())
    kernels = hed_model.kernels()
    assert [k.shape[2:] for k, _ in kernels] == list(VGG16_CONV_SHAPES)
    # Trained filters are far from Keras's glorot init: first-layer kernels have structure.
    assert np.abs(kernels[0][0]).max() > 0.3
    first = hed_model.model.get_layer("block1_conv1").get_weights()[0]
    with h5py.File(hed_weights_path()) as f:
        np.testing.assert_array_equal(first, f["block1/layers/conv2d/vars/0"][()])


def test_random_weights_are_seeded():
    a, b, c = load_model(weights="random", seed=1), load_model(weights="random", seed=1), load_model(weights="random", seed=2)
    assert a.weights_sha256 == b.weights_sha256 != c.weights_sha256


def _write_legacy_full_h5(path, kernels):
    """A legacy Keras full-VGG16 file: layer groups by name, plus dense layers (skipped)."""
    with h5py.File(path, "w") as f:
        for layer, (k, b) in zip(VGG16_LAYERS, kernels):
            g = f.create_group(f"{layer.name}/{layer.name}")
            g["kernel:0"] = k
            g["bias:0"] = b
        f["fc1/fc1/kernel:0"] = np.zeros((8, 4), np.float32)
        f["fc1/fc1/bias:0"] = np.zeros((4,), np.float32)


def test_weights_from_paths(tmp_path, hed_model):
    kernels = hed_model.kernels()
    legacy = tmp_path / "vgg16_full.h5"
    _write_legacy_full_h5(legacy, kernels)
    loaded = load_model(weights=str(legacy))
    assert loaded.weights_sha256 == sha256_file(legacy)
    np.testing.assert_array_equal(loaded.kernels()[12][0], kernels[12][0])
    keras3 = tmp_path / "notop.weights.h5"
    hed_model.model.save_weights(str(keras3))
    np.testing.assert_array_equal(load_model(weights=str(keras3)).kernels()[7][0], kernels[7][0])


def test_bad_weight_files(tmp_path):
    with pytest.raises(AtlasError, match="no such weights file"):
        read_vgg16_kernels(tmp_path / "missing.h5")
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(AtlasError, match="not a readable HDF5"):
        read_vgg16_kernels(corrupt)
    wrong = tmp_path / "resnet.h5"
    with h5py.File(wrong, "w") as f:
        f["conv1/kernel:0"] = np.zeros((3, 3, 3, 32), np.float32)
        f["conv1/bias:0"] = np.zeros((32,), np.float32)
    with pytest.raises(AtlasError, match=r"expected the 13 VGG16 conv kernels.*found 1 \(3x32\)"):
        read_vgg16_kernels(wrong)
    with pytest.raises(AtlasError, match="not a weight source"):
        load_model(weights="imagenet21k")
    with pytest.raises(AtlasError, match="unknown model 'resnet50'"):
        load_model("resnet50", "random")


def test_cli_layers_offline_backbone():
    proc = run_atlas("layers", "--weights", "hed-bsds500", "--size", "224")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert sum(1 for line in lines if "_conv" in line) == 13
    assert "block5_conv3  512      196 px" in proc.stdout
    assert lines[-1] == "total: 13 layers, 4,224 filters"


def test_cli_bad_model_and_weights_are_one_line(tmp_path):
    line = error_line(run_atlas("layers", "--model", "vgg19"))
    assert "unknown model 'vgg19'" in line
    line = error_line(run_atlas("layers", "--weights", str(tmp_path / "nope.weights.h5")))
    assert "nope.weights.h5: no such weights file" in line


class _SilentServer:
    """Accepts connections on 127.0.0.1 and never answers: a download that would hang forever."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/vgg16.h5"

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
            env={"ATLAS_IMAGENET_URL": url, "ATLAS_DOWNLOAD_TIMEOUT": "3", "KERAS_HOME": str(tmp_path)},
            timeout=120,
        )
        elapsed = time.monotonic() - start
    line = error_line(proc)
    assert "could not download the VGG16 ImageNet weights (timed out)" in line
    assert "--weights hed-bsds500" in line and "--weights PATH" in line
    assert elapsed < 60  # bounded: a hang would run into the subprocess timeout instead


def test_imagenet_refused_connection(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    proc = run_atlas(
        "layers", "--weights", "imagenet",
        env={"ATLAS_IMAGENET_URL": f"http://127.0.0.1:{port}/x.h5", "KERAS_HOME": str(tmp_path)},
        timeout=120,
    )
    assert "could not download the VGG16 ImageNet weights" in error_line(proc)
