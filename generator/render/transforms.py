"""Transformation robustness: every step sees the image randomly shifted, scaled and rotated.

Lucid's pad -> jitter -> scale -> rotate -> jitter chain, composed into one affine map per batch row
and applied with a single bilinear resample on the device (pixels outside the image read as grey 0.5,
Lucid's constant padding). The random draws are made on the host from each filter's own seed, so a
filter's picture does not depend on which batch it was rendered in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DRAWS = 6  # per step: shift1 x, shift1 y, scale, angle, shift2 x, shift2 y


@dataclass(frozen=True)
class Robustness:
    """Strength of the random transforms (Lucid: jitter 8, scale 0.9-1.1, rotate +-10 deg, jitter 4)."""

    jitter: float = 8.0
    scale: float = 0.1
    rotate: float = 10.0
    jitter2: float = 4.0

    def draws(self, rng: np.random.Generator, steps: int) -> np.ndarray:
        """(steps, 6) float32 random parameters for one filter's whole run."""
        u = rng.uniform(-1.0, 1.0, size=(steps, DRAWS))
        out = np.empty_like(u)
        out[:, 0:2] = u[:, 0:2] * self.jitter / 2
        out[:, 2] = 1.0 + u[:, 2] * self.scale
        out[:, 3] = np.deg2rad(u[:, 3] * self.rotate)
        out[:, 4:6] = u[:, 4:6] * self.jitter2 / 2
        return out.astype(np.float32)


def calm_draws(draws, strength):
    """Scale each row's (B, 6) draws by ``strength`` (B,) in [0, 1]: 0 is the identity transform."""
    from keras import ops

    k = strength[:, None]
    identity = ops.convert_to_tensor(np.asarray([0, 0, 1, 0, 0, 0], np.float32))
    return identity + (draws - identity) * k


def affine_matrices(draws, size: int):
    """(B, 6) draws -> (B, 8) projective transforms mapping output pixels to input pixels."""
    from keras import ops

    centre = (size - 1) / 2.0
    t1x, t1y, scale, angle, t2x, t2y = (draws[:, i] for i in range(DRAWS))
    cos = ops.cos(angle) / scale
    sin = ops.sin(angle) / scale
    # p_in = A (p_out - c - t2) + c - t1, with A = R(-angle) / scale
    ox = centre + t2x
    oy = centre + t2y
    a0, a1 = cos, sin
    b0, b1 = -sin, cos
    a2 = centre - t1x - (a0 * ox + a1 * oy)
    b2 = centre - t1y - (b0 * ox + b1 * oy)
    zeros = ops.zeros_like(a0)
    return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def invert(matrices):
    """(B, 8) affine transforms (output -> input pixels) -> their inverses (input -> output)."""
    from keras import ops

    a0, a1, a2, b0, b1, b2 = (matrices[:, i] for i in range(6))
    det = a0 * b1 - a1 * b0
    i0, i1, j0, j1 = b1 / det, -a1 / det, -b0 / det, a0 / det
    zeros = ops.zeros_like(a0)
    return ops.stack([i0, i1, -(i0 * a2 + i1 * b2), j0, j1, -(j0 * a2 + j1 * b2), zeros, zeros], axis=1)


def _warp(images, matrices, fill: float):
    from keras import ops

    return ops.image.affine_transform(images, matrices, interpolation="bilinear", fill_mode="constant",
                                      fill_value=fill)


def _jax_warp():
    """The warp with TensorFlow's gradient (the output gradient warped back by the inverse transform):
    the same on both backends, and a gather instead of the scatter-add that JAX's own gradient of a
    gather is, which on a CPU took 7x the forward pass and on a GPU needs atomics or a sort."""
    import jax

    @jax.custom_vjp
    def warp(images, matrices):
        return _warp(images, matrices, 0.5)

    def forward(images, matrices):
        return warp(images, matrices), matrices

    def backward(matrices, grad):
        return _warp(grad, invert(matrices), 0.0), jax.numpy.zeros_like(matrices)

    warp.defvjp(forward, backward)
    return warp


def random_transform(images, draws):
    """Apply each row's affine map to (B, H, W, 3) images in [0, 1]; outside the image reads grey."""
    from generator.network import backend

    matrices = affine_matrices(draws, images.shape[1])
    if backend.name() == "jax":
        return _jax_warp()(images, matrices)
    return _warp(images, matrices, 0.5)  # TensorFlow registers the same gradient for its op
