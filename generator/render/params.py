"""The image parameterization: what the optimizer changes.

Lucid's Fourier parameterization (Olah et al., "Feature Visualization", Distill 2017): the image is the
inverse real FFT of a spectrum scaled by 1/f, so every Adam step moves all frequencies alike instead of
favouring the high ones (which is where the noise of pixel-space ascent comes from); colours live in a
decorrelated basis and a sigmoid keeps every pixel in [0, 1].

The inverse FFT is written as two small matrix products (exactly ``np.fft.irfft2``): portable across
Keras backends, differentiable, and plain matmuls on a GPU.
"""

from __future__ import annotations

import numpy as np

# ImageNet colour correlation, square root of its SVD (Lucid's ``color_correlation_svd_sqrt``).
COLOR_CORRELATION_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32
)
COLOR_DECORRELATION = (
    COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))
).T.astype(np.float32)
FOURIER_MAGIC = 4.0  # Lucid's divisor that brings the spectrum's image to a sigmoid-friendly range


def spectrum_shape(size: int) -> tuple[int, int, int, int]:
    """Shape of one image's Fourier parameters: (channels, rows, half-width frequencies, re/im)."""
    return (3, size, size // 2 + 1, 2)


def frequency_scale(size: int, decay_power: float = 1.0) -> np.ndarray:
    """Lucid's 1/f spectrum scaling, (rows, half-width) float32."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[: size // 2 + 1]
    if size % 2 == 0:
        fx = np.abs(fx)
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(freqs, 1.0 / size) ** decay_power
    return (scale * size).astype(np.float32)


def irfft2_bases(size: int) -> dict[str, np.ndarray]:
    """Cosine/sine matrices such that ``irfft2(X) = (Ch Xr - Sh Xi) Cw - (Sh Xr + Ch Xi) Sw``."""
    n = np.arange(size)
    rows = np.outer(n, n) * (2 * np.pi / size)
    half = size // 2 + 1
    cols = np.outer(np.arange(half), n) * (2 * np.pi / size)
    weight = np.full(half, 2.0)
    weight[0] = 1.0
    if size % 2 == 0:
        weight[-1] = 1.0
    weight = weight[:, None] / size
    return {
        "ch": (np.cos(rows) / size).astype(np.float32),
        "sh": (np.sin(rows) / size).astype(np.float32),
        "cw": (np.cos(cols) * weight).astype(np.float32),
        "sw": (np.sin(cols) * weight).astype(np.float32),
    }


def fourier_constants(size: int, decay_power: float = 1.0) -> dict[str, np.ndarray]:
    """Everything ``fourier_to_rgb`` needs besides the parameters, computed once per image size."""
    constants = irfft2_bases(size)
    constants["scale"] = frequency_scale(size, decay_power)
    constants["color"] = COLOR_DECORRELATION
    return constants


def fourier_to_rgb(spectrum, constants):
    """(B, 3, H, H//2+1, 2) Fourier parameters -> (B, H, W, 3) RGB image in [0, 1]."""
    from keras import ops

    real = spectrum[..., 0] * constants["scale"]
    imag = spectrum[..., 1] * constants["scale"]
    rows_real = ops.einsum("mk,bckl->bcml", constants["ch"], real) - ops.einsum(
        "mk,bckl->bcml", constants["sh"], imag
    )
    rows_imag = ops.einsum("mk,bckl->bcml", constants["sh"], real) + ops.einsum(
        "mk,bckl->bcml", constants["ch"], imag
    )
    image = ops.einsum("bcml,ln->bmnc", rows_real, constants["cw"]) - ops.einsum(
        "bcml,ln->bmnc", rows_imag, constants["sw"]
    )
    image = ops.matmul(image / FOURIER_MAGIC, constants["color"])
    return ops.sigmoid(image)


def initial_spectrum(rng: np.random.Generator, size: int, std: float) -> np.ndarray:
    """Random Fourier parameters for one image; ``std`` sets the starting contrast."""
    return (rng.standard_normal(spectrum_shape(size)) * std).astype(np.float32)


def periodic_gain(size: int, period: int, decay_power: float = 1.0) -> np.ndarray:
    """(rows, half-width) per-frequency gain that turns the spectrum into a tiling of one small
    pattern, repeated ``m = size // period`` times across the image.

    Only the frequencies that are multiples of ``m`` survive (the rest get 0), so the picture repeats
    every ``size / m`` pixels; the Fourier image is periodic on the ``size`` torus, so the tiling is
    seamless. The survivors are scaled by ``m`` (``m ** (1 - decay_power)`` at the mean colour), which
    makes optimizing them the same as optimizing Lucid's 1/f image of the tile alone and tiling it:
    without the gain the tile's frequencies, all high for a small tile, would move ``m`` times slower
    and the pattern stay faint.
    """
    repeats = max(1, size // max(1, period))
    rows = (np.round(np.fft.fftfreq(size, 1.0 / size)).astype(int) % repeats == 0)[:, None]
    cols = (np.arange(size // 2 + 1) % repeats == 0)[None, :]
    gain = (rows & cols).astype(np.float32) * repeats
    gain[0, 0] = repeats ** (1.0 - decay_power)
    return gain
