"""VGG16 truncated at a target layer, as a pure function of its weights.

The renderer needs two things Keras's fused ``Conv2D(activation="relu")`` cannot give: the target
layer's **pre-ReLU** output (a filter that is off everywhere still has a gradient), and the weights as
explicit arguments (so ``jax.jit`` does not fold them into constants). The kernels come from the Keras
model. (A redirected ReLU gradient upstream, as in Lucid, was measured here and changed nothing on the
dead-prone layers while doubling the step time; the wake-up phase in ``render`` is what works.)
"""

from __future__ import annotations

from generator.models import VGG16_BLOCKS, ConvLayer

POOL_AFTER = frozenset(sum(VGG16_BLOCKS[: b + 1]) - 1 for b in range(len(VGG16_BLOCKS)))


def pre_relu(x, weights, layer: ConvLayer, dtype: str = "float32"):
    """Pre-ReLU output of ``layer`` for caffe-space input ``x`` (B, H, W, 3), as float32.

    ``weights`` is the list of (kernel, bias) of the conv layers up to and including ``layer``.
    ``dtype`` is the compute dtype of the convolutions (float32, float16 or bfloat16).
    """
    from keras import ops

    h = ops.cast(x, dtype)
    for index in range(layer.index + 1):
        kernel, bias = weights[index]
        h = ops.conv(h, ops.cast(kernel, dtype), strides=1, padding="same") + ops.cast(bias, dtype)
        if index == layer.index:
            break
        h = ops.relu(h)
        if index in POOL_AFTER:
            h = ops.max_pool(h, pool_size=2, strides=2, padding="valid")
    return ops.cast(h, "float32")


def conv_flops(layer: ConvLayer, size: int) -> float:
    """Multiply-adds x 2 of one forward pass of the model truncated at ``layer``, one image."""
    from generator.models import VGG16_LAYERS

    total = 0.0
    for conv in VGG16_LAYERS[: layer.index + 1]:
        side = conv.output_size(size)
        total += 2.0 * side * side * 9 * conv.in_channels * conv.filters
    return total
