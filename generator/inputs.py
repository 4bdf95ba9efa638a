"""The map between a picture (RGB in [0, 1], or 8-bit) and what a network reads.

Each ``keras.applications`` model expects its own preprocessing (``preprocess_input``): ``caffe`` (VGG,
ResNet: BGR, 0..255 minus the ImageNet mean), ``tf`` (RGB scaled to [-1, 1]) or ``torch`` (RGB in
[0, 1], standardized by the ImageNet mean and deviation). These functions are written with
``keras.ops`` where they run inside a compiled step, and numpy where they judge saved files.
"""

from __future__ import annotations

import numpy as np

from generator.errors import AtlasError

CAFFE_MEAN_BGR = np.asarray([103.939, 116.779, 123.68], np.float32)
TORCH_MEAN = np.asarray([0.485, 0.456, 0.406], np.float32)
TORCH_STD = np.asarray([0.229, 0.224, 0.225], np.float32)
MODES = ("caffe", "tf", "torch")


def _check(mode: str) -> None:
    if mode not in MODES:
        raise AtlasError(f"preprocessing {mode!r}: the atlas knows {', '.join(MODES)}")


def from_rgb(rgb, mode: str):
    """[0, 1] RGB (…, 3) -> the network's input, on the device or in numpy alike."""
    _check(mode)
    if mode == "caffe":
        return rgb[..., ::-1] * 255.0 - CAFFE_MEAN_BGR
    if mode == "tf":
        return rgb * 2.0 - 1.0
    return (rgb - TORCH_MEAN) / TORCH_STD


def to_rgb(x, mode: str) -> np.ndarray:
    """The network's input -> [0, 1]-scaled RGB (not clipped), numpy."""
    _check(mode)
    x = np.asarray(x, np.float64)
    if mode == "caffe":
        return (x + CAFFE_MEAN_BGR)[..., ::-1] / 255.0
    if mode == "tf":
        return (x + 1.0) / 2.0
    return x * TORCH_STD + TORCH_MEAN


def from_uint8(image: np.ndarray, mode: str) -> np.ndarray:
    """8-bit RGB images as the network sees them (for judging saved PNGs and real photographs)."""
    return np.asarray(from_rgb(np.asarray(image, np.float32) / 255.0, mode), np.float32)


def input_range(mode: str) -> float:
    """The span of one colour channel in input units: the scale of a 'small' starting noise."""
    _check(mode)
    return {"caffe": 255.0, "tf": 2.0, "torch": 1.0 / float(TORCH_STD.mean())}[mode]


def rgb_to_uint8(rgb: np.ndarray) -> np.ndarray:
    """[0, 1] float RGB -> 8-bit RGB, the image users get."""
    return np.clip(np.round(np.asarray(rgb) * 255.0), 0, 255).astype(np.uint8)


def normalized_uint8(x: np.ndarray, mode: str) -> np.ndarray:
    """A free image in input space (the original method's) -> 8-bit RGB for display, as the original
    script's ``deprocess_image`` did: centre, standard deviation 0.15, plus 0.5, clip (channels put in
    RGB order, nothing else undone)."""
    _check(mode)
    image = np.asarray(x, np.float64)
    if mode == "caffe":
        image = image[..., ::-1]
    image = image - image.mean()
    image = image / (image.std() + 1e-5) * 0.15 + 0.5
    return rgb_to_uint8(np.clip(image, 0.0, 1.0))
