"""The map between a picture (RGB in [0, 1], or 8-bit) and what a network reads.

Each ``keras.applications`` model expects its own preprocessing (``preprocess_input``): ``caffe`` (VGG,
ResNet: BGR, 0..255 minus the ImageNet mean), ``tf`` (RGB scaled to [-1, 1]) or ``torch`` (RGB in
[0, 1], standardized by the ImageNet mean and deviation). A user's own network may read raw pixel
values, ``none`` (0..255, what ``keras.utils.image_dataset_from_directory`` yields, for a model that
scales its input with its own ``Rescaling``/``Normalization`` layer), or ``scale=A,offset=B`` (pixel
value 0..255 times A plus B, as a ``Rescaling`` layer would do). A grayscale network reads one
channel: the pictures' luma (ITU-R 601, the weights Pillow's ``convert("L")`` uses).

A mode is a name (``"caffe"``) or a ``Preprocessing``; these functions are written with ``keras.ops``
where they run inside a compiled step, and numpy where they judge saved files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from generator.errors import AtlasError

CAFFE_MEAN_BGR = np.asarray([103.939, 116.779, 123.68], np.float32)
TORCH_MEAN = np.asarray([0.485, 0.456, 0.406], np.float32)
TORCH_STD = np.asarray([0.229, 0.224, 0.225], np.float32)
LUMA = (0.299, 0.587, 0.114)
MODES = ("caffe", "tf", "torch", "none")
GRAY_MODES = ("tf", "none", "scale")  # caffe and torch are per-colour: they have no meaning for one channel
_SCALE = re.compile(r"^scale=([^,]+),offset=([^,]+)$")


@dataclass(frozen=True)
class Preprocessing:
    """How a picture becomes the network's input: a mode, its scale and offset (``scale`` mode:
    input = pixel value 0..255 x scale + offset), and the channels the network reads (3 or 1)."""

    mode: str
    scale: float = 1.0
    offset: float = 0.0
    channels: int = 3

    @property
    def key(self) -> str:
        """The canonical text: ``caffe``, ``scale=0.00392157,offset=0``, ``none,gray`` ..."""
        text = f"scale={self.scale:.8g},offset={self.offset:.8g}" if self.mode == "scale" else self.mode
        return text + (",gray" if self.channels == 1 else "")


def parse_preprocessing(text: str, channels: int = 3) -> Preprocessing:
    """``--preprocess caffe|tf|torch|none|scale=A,offset=B`` for a network of ``channels``; one line
    otherwise."""
    text = text.strip()
    match = _SCALE.match(text.replace(" ", ""))
    if match:
        try:
            scale, offset = float(match.group(1)), float(match.group(2))
        except ValueError:
            scale = offset = float("nan")
        if not (np.isfinite(scale) and np.isfinite(offset) and scale != 0):
            raise AtlasError(f"--preprocess {text!r}: scale and offset must be finite numbers, scale not 0 "
                             "(e.g. scale=0.00392157,offset=0 for pixel values / 255)")
        preprocessing = Preprocessing("scale", scale, offset, channels)
    elif text in MODES:
        preprocessing = Preprocessing(text, channels=channels)
    else:
        raise AtlasError(f"--preprocess {text!r}: give caffe, tf, torch, none (pixel values 0..255) or "
                         "scale=A,offset=B (pixel value 0..255 times A plus B)")
    if channels == 1 and preprocessing.mode not in GRAY_MODES:
        raise AtlasError(f"--preprocess {text}: this network reads one (grayscale) channel, and {text} is defined "
                         "per colour; use none, tf or scale=A,offset=B")
    return preprocessing


def resolve(mode: str | Preprocessing) -> Preprocessing:
    if isinstance(mode, Preprocessing):
        return mode
    if mode not in MODES:
        raise AtlasError(f"preprocessing {mode!r}: the atlas knows {', '.join(MODES)} and scale=A,offset=B")
    return Preprocessing(mode)


def _luma(rgb):
    return rgb[..., 0:1] * LUMA[0] + rgb[..., 1:2] * LUMA[1] + rgb[..., 2:3] * LUMA[2]


def from_rgb(rgb, mode: str | Preprocessing):
    """[0, 1] RGB (…, 3) -> the network's input (…, channels), on the device or in numpy alike."""
    p = resolve(mode)
    if p.channels == 1:
        rgb = _luma(rgb)
    if p.mode == "caffe":
        return rgb[..., ::-1] * 255.0 - CAFFE_MEAN_BGR
    if p.mode == "tf":
        return rgb * 2.0 - 1.0
    if p.mode == "torch":
        return (rgb - TORCH_MEAN) / TORCH_STD
    if p.mode == "none":
        return rgb * 255.0
    return rgb * (255.0 * p.scale) + p.offset


def to_rgb(x, mode: str | Preprocessing) -> np.ndarray:
    """The network's input -> [0, 1]-scaled RGB (not clipped), numpy; one channel becomes gray."""
    p = resolve(mode)
    x = np.asarray(x, np.float64)
    if p.mode == "caffe":
        rgb = (x + CAFFE_MEAN_BGR)[..., ::-1] / 255.0
    elif p.mode == "tf":
        rgb = (x + 1.0) / 2.0
    elif p.mode == "torch":
        rgb = x * TORCH_STD + TORCH_MEAN
    elif p.mode == "none":
        rgb = x / 255.0
    else:
        rgb = (x - p.offset) / (255.0 * p.scale)
    return np.repeat(rgb, 3, axis=-1) if p.channels == 1 else rgb


def from_uint8(image: np.ndarray, mode: str | Preprocessing) -> np.ndarray:
    """8-bit RGB images as the network sees them (for judging saved PNGs and real photographs)."""
    return np.asarray(from_rgb(np.asarray(image, np.float32) / 255.0, mode), np.float32)


def as_seen(image: np.ndarray, mode: str | Preprocessing) -> np.ndarray:
    """8-bit RGB pictures as the network sees their colours: gray (its luma) for a one-channel network,
    unchanged otherwise. A grayscale network's pictures are stored gray, not in colours it cannot see."""
    if resolve(mode).channels != 1:
        return image
    gray = np.clip(np.round(_luma(np.asarray(image, np.float64))), 0, 255).astype(np.uint8)
    return np.repeat(gray, 3, axis=-1)


def input_range(mode: str | Preprocessing) -> float:
    """The span of one colour channel in input units: the scale of a 'small' starting noise."""
    p = resolve(mode)
    spans = {"caffe": 255.0, "tf": 2.0, "torch": 1.0 / float(TORCH_STD.mean()), "none": 255.0}
    return spans.get(p.mode, 255.0 * abs(p.scale))


def rgb_to_uint8(rgb: np.ndarray) -> np.ndarray:
    """[0, 1] float RGB -> 8-bit RGB, the image users get."""
    return np.clip(np.round(np.asarray(rgb) * 255.0), 0, 255).astype(np.uint8)


def normalized_uint8(x: np.ndarray, mode: str | Preprocessing) -> np.ndarray:
    """A free image in input space (the original method's) -> 8-bit RGB for display, as the original
    script's ``deprocess_image`` did: centre, standard deviation 0.15, plus 0.5, clip (channels put in
    RGB order, one channel shown gray, nothing else undone)."""
    p = resolve(mode)
    image = np.asarray(x, np.float64)
    if p.mode == "caffe":
        image = image[..., ::-1]
    if p.channels == 1:
        image = np.repeat(image, 3, axis=-1)
    image = image - image.mean()
    image = image / (image.std() + 1e-5) * 0.15 + 0.5
    return rgb_to_uint8(np.clip(image, 0.0, 1.0))
