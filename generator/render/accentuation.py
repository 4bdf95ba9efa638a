"""Feature accentuation (Hamblin, Fel, Serre and Konkle, 2024): a filter's strongest photograph with
the filter raised, held near the photograph by an earlier layer.

The picture starts as the photograph itself: its Fourier parameters are the exact inverse of Lucid's
parameterization (``image_spectrum``), so step 0 is the photo and every step after moves it in the
same spectrum, under the same transforms, as the other views. The objective is the channel view's
(the map's mean after its ReLU) minus a penalty: the squared distance of an earlier layer's
activations from the photograph's, relative to the photograph's own (both read through the same
random transform, so the jitter costs nothing), scaled by the filter's response. The earlier layer is
the latest whose receptive field is at most half the target's (VGG16: about a block earlier,
block3_conv3 at block2_conv2); where none is, the pixels themselves. So the picture can only change
what the photo already is by as much as the earlier layer tolerates: it stays a photo, accentuated,
and reaches the filter by the path real images take.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generator.network.layers import Layer
from generator.render.params import COLOR_DECORRELATION, FOURIER_MAGIC, frequency_scale

WEIGHT = 1.0  # the penalty's weight, in units of the filter's response per unit of relative distance
FIELD_SHARE = 2  # the earlier layer: receptive field at most 1/FIELD_SHARE of the target's
EDGE = 0.4 / 255.0  # pixel values are kept this far inside (0, 1), where the sigmoid's inverse is finite (and 8 bits round back)


@dataclass(frozen=True)
class Start:
    """A filter's start picture: its strongest dataset example at the atlas's size."""

    image: str  # the file, relative to the image set's folder (as the examples name it)
    value: float  # its strongest unit before the ReLU, as the examples pass measured it
    pixels: np.ndarray  # (size, size, 3) uint8 RGB


def earlier_layer(layer: Layer, layers: tuple[Layer, ...]) -> Layer | None:
    """The layer the penalty holds near the photograph: the latest before ``layer`` whose receptive
    field is at most ``1/FIELD_SHARE`` of its own; None: the pixels (the first layers)."""
    found = [x for x in layers if x.index < layer.index and x.receptive_field * FIELD_SHARE <= layer.receptive_field]
    return found[-1] if found else None


def start_rgb(pixels: np.ndarray) -> np.ndarray:
    """8-bit RGB -> the [0, 1] float picture the start spectrum represents (kept off 0 and 1)."""
    return np.clip(np.asarray(pixels, np.float32) / 255.0, EDGE, 1.0 - EDGE)


def image_spectrum(pixels: np.ndarray, decay_power: float = 1.0) -> np.ndarray:
    """(H, H, 3) uint8 RGB -> the Fourier parameters (3, H, H//2+1, 2) whose picture
    (``params.fourier_to_rgb``) is that image: the sigmoid, colour decorrelation, 1/f scaling and FFT
    undone in turn."""
    size = pixels.shape[0]
    rgb = start_rgb(pixels).astype(np.float64)
    logits = np.log(rgb) - np.log1p(-rgb)
    decorrelated = logits @ np.linalg.inv(COLOR_DECORRELATION.astype(np.float64)) * FOURIER_MAGIC
    spectrum = np.fft.rfft2(np.moveaxis(decorrelated, -1, 0), axes=(1, 2)) / frequency_scale(size, decay_power)
    return np.stack([spectrum.real, spectrum.imag], axis=-1).astype(np.float32)


def penalty(acts, start):
    """(B, ...) activations and the start picture's -> (B,) squared distance relative to the start's
    own squared size."""
    from keras import ops

    axes = tuple(range(1, len(acts.shape)))
    return ops.mean(ops.square(acts - start), axis=axes) / (ops.mean(ops.square(start), axis=axes) + 1e-6)
