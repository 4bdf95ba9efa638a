"""VGG16 truncated at a target layer, as a pure function of its weights.

The renderer needs three things Keras's fused ``Conv2D(activation="relu")`` cannot give: the target
layer's **pre-ReLU** output, a ReLU whose gradient is redirected through switched-off units upstream
(so a filter whose helpers are all off on a grey start still gets a gradient), and the weights as explicit
arguments (so ``jax.jit`` does not fold them into constants). The kernels come from the Keras model.
"""

from __future__ import annotations

from generator.models import VGG16_BLOCKS, ConvLayer

POOL_AFTER = frozenset(sum(VGG16_BLOCKS[: b + 1]) - 1 for b in range(len(VGG16_BLOCKS)))


def _redirected_relu():
    """ReLU whose gradient, for a batch row where the true ReLU gradient is zero everywhere, passes
    through the units that are off wherever it would turn them on (Lucid's ``redirected_relu_grad``).

    Rows where any gradient gets through get the exact ReLU gradient, so this only changes dead rows.
    """
    from keras import ops

    @ops.custom_gradient
    def redirected_relu(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            off = x < 0
            relu_grad = ops.where(off, ops.zeros_like(upstream), upstream)
            # upstream is d(loss)/dy: > 0 at an off unit means "push it lower", which we drop.
            redirected = ops.where(ops.logical_and(off, upstream > 0), ops.zeros_like(upstream), upstream)
            alive = ops.max(ops.abs(relu_grad), axis=tuple(range(1, len(x.shape))), keepdims=True) > 0
            return ops.where(alive, relu_grad, redirected)

        return ops.relu(x), grad

    return redirected_relu


REDIRECTED_RELU = None


def relu(x, redirect: bool):
    global REDIRECTED_RELU
    if not redirect:
        from keras import ops

        return ops.relu(x)
    if REDIRECTED_RELU is None:
        REDIRECTED_RELU = _redirected_relu()
    return REDIRECTED_RELU(x)


def pre_relu(x, weights, layer: ConvLayer, redirect: bool = False, dtype: str = "float32"):
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
        h = relu(h, redirect)
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
