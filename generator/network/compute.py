"""How the cut network is computed on the device: choices that change its speed, never its values.

``NetOptions`` holds them, and ``LoadedModel.tap_net`` builds the network under them:

pool: ``reshape`` computes VGG's 2x2, stride-2 max-pools from ``reshape(N, H/2, 2, W/2, 2, C)``: the
    maximum of each window, and as gradient a mask that sends it to the window's first maximum in
    row-major order, where Keras' ``MaxPooling2D`` differentiates to select-and-scatter, which XLA's
    deterministic GPU mode expands into a sort or a sequential loop (jax-ml/jax#17844). The forward
    values are the very same, and so is the gradient on a CPU, ties included (tested): ties are
    common, since the transforms fill the picture's borders with flat grey, and a plain
    ``max((2, 4))``, whose gradient splits among tied units, changed the pictures. ``keras`` keeps the
    layer.
input_channels: the first convolution reads the image padded with zero channels (3 -> 4 or 8) and its
    kernel padded with zero rows: the same sums, a shape that GPU convolution kernels are made for
    (bf16 convolutions of 3 channels are not padded for cuDNN). 3 leaves it alone.

They are switches for the GPU check (``atlas bench gpu`` measures each on and off); the defaults are
what runs everywhere else: the reshape pool on a GPU under JAX with deterministic ops, Keras' pool
elsewhere (on a CPU the reshape pool is slower), the input as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generator.errors import AtlasError

POOLS = ("auto", "reshape", "keras")


@dataclass(frozen=True)
class NetOptions:
    pool: str = "auto"  # auto: reshape where select-and-scatter is known slow (JAX, GPU, deterministic ops)
    input_channels: int = 3

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise AtlasError(f"pool {self.pool!r}: choose {', '.join(POOLS)}")
        if self.input_channels < 3:
            raise AtlasError(f"input channels {self.input_channels}: give 3 or more")

    def resolved(self) -> "NetOptions":
        """``auto`` made concrete for this process's backend and device. On a CPU the reshape pool is
        slower (TensorFlow, 2 cores: block3_conv3 12.1 s against 8.4 s a batch, block5_conv3 31.9 against
        25.4), so it is taken only where Keras' pool meets XLA's deterministic GPU ops."""
        if self.pool != "auto":
            return self
        from generator.network import backend

        fast = backend.name() == "jax" and backend.device_facts().kind == "gpu" and backend.deterministic()
        return NetOptions("reshape" if fast else "keras", self.input_channels)

    def describe(self) -> str:
        return f"pool {self.pool}, input channels {self.input_channels}"


def is_plain_max_pool(config: dict, class_name: str) -> bool:
    """A 2x2 max-pool of stride 2 without padding (VGG's five), the one ``reshape`` replaces."""
    return (class_name == "MaxPooling2D" and tuple(config.get("pool_size", ())) == (2, 2)
            and tuple(config.get("strides") or config.get("pool_size", ())) == (2, 2)
            and config.get("padding") == "valid" and config.get("data_format", "channels_last") == "channels_last")


def block_max_pool(name: str, dtype):
    """A Keras layer: 2x2 max-pool of stride 2 (an odd last row or column dropped, as ``valid`` does)
    written as a reshape and a max."""
    import keras
    from keras import ops

    class BlockMaxPool2D(keras.layers.Layer):
        def call(self, x):
            shape = ops.shape(x)
            h, w, c = shape[1] // 2, shape[2] // 2, shape[3]
            blocks = ops.reshape(x[:, : 2 * h, : 2 * w, :], (-1, h, 2, w, 2, c))
            corners = [blocks[:, :, i, :, j, :] for i in (0, 1) for j in (0, 1)]  # the window, row-major
            top = ops.max(blocks, axis=(2, 4))
            # the gradient goes to the first maximum of the window in row-major order, as Keras' own
            # max-pool gradient sends it (select-and-scatter keeps the first of equal values): a mask
            # per corner, held fixed, times the corner; the sum is the maximum itself
            taken, out = None, None
            for corner in corners:
                hit = ops.equal(corner, top) if taken is None else ops.logical_and(ops.equal(corner, top), ops.logical_not(taken))
                taken = hit if taken is None else ops.logical_or(taken, hit)
                part = corner * ops.stop_gradient(ops.cast(hit, corner.dtype))
                out = part if out is None else out + part
            return out

        def compute_output_shape(self, input_shape):
            b, h, w, c = input_shape
            return (b, None if h is None else h // 2, None if w is None else w // 2, c)

    return BlockMaxPool2D(name=name, dtype=dtype)


def pad_input(x, channels: int):
    """(B, H, W, 3) -> (B, H, W, channels), the new channels zero."""
    from keras import ops

    extra = channels - x.shape[-1]
    return x if extra <= 0 else ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])


def pad_kernel(kernel: np.ndarray, channels: int) -> np.ndarray:
    """A first convolution's kernel (kh, kw, 3, filters) with zero rows for the padded input channels."""
    extra = channels - kernel.shape[2]
    return kernel if extra <= 0 else np.concatenate(
        [kernel, np.zeros(kernel.shape[:2] + (extra,) + kernel.shape[3:], kernel.dtype)], axis=2)
