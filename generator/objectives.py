"""What a filter's picture maximizes, one target filter per batch row.

``channel_mix``: the mean over the map of the filter's activation after its ReLU (what users see the
filter do), plus a small share of the mean before it (so a map that is off everywhere still has a
gradient). ``neuron``: the pre-ReLU activation at the centre of the map; it wakes filters the channel
objectives cannot, because a single unit has a clear direction to go where the mean of a map that is
off everywhere (or, early on, of a near-linear map: the average colour) has none. The renderer picks
per row and per step. ``post_relu_channel`` is the original script's objective.
"""

from __future__ import annotations


def select_filters(maps, filters, channels: int):
    """(B, h, w, C) maps and (B,) filter indices -> (B, h, w): row b's own filter."""
    from keras import ops

    return ops.einsum("bhwc,bc->bhw", maps, ops.one_hot(filters, channels, dtype=maps.dtype))


def channel(target):
    """(B, h, w) -> (B,) spatial mean."""
    from keras import ops

    return ops.mean(target, axis=(1, 2))


def channel_mix(target, pre_share):
    """(B, h, w) -> (B,): ``(1 - pre_share)`` x post-ReLU mean + ``pre_share`` x pre-ReLU mean.

    The post-ReLU part is what a user sees the filter do (and what "dead" and specificity judge); the
    small pre-ReLU part keeps a gradient when every unit of the map is off.
    """
    from keras import ops

    return (1.0 - pre_share) * ops.mean(ops.relu(target), axis=(1, 2)) + pre_share * channel(target)


def neuron(target):
    """(B, h, w) -> (B,) the centre unit."""
    h, w = target.shape[1], target.shape[2]
    return target[:, h // 2, w // 2]


def post_relu_channel(target):
    """(B, h, w) -> (B,) spatial mean after the ReLU (the original script)."""
    from keras import ops

    return ops.mean(ops.relu(target), axis=(1, 2))
