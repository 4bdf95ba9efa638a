"""What a filter's picture maximizes, one target filter per batch row.

All objectives read the target layer's **pre-activation** map (B, h, w) of the row's own filter:

``channel_mix``: the mean over the map after the ReLU (what users see the filter do), plus a small
share of the mean before it (so a map that is off everywhere still has a gradient). ``neuron``: the
pre-activation at the centre of the map; it also wakes filters the channel objective cannot, because a
single unit has a clear direction to go where the mean of a map that is off everywhere has none.
``floor``: the mean of the map with every unit capped at a tenth of the map's peak: added to the
channel objective, it pulls up the units that are off or faint (their ReLU gives them no gradient),
so a layer whose receptive field spans the image paints the filter's pattern wherever a unit looks,
not one object at the centre over a field that turns the rest of the map off.
``contrast``: a hinge on the layer's other filters that respond to the picture, relative to their
usual response, within a margin of the own filter: subtracted from the channel objective in the
earliest layers, where near-linear filters of a 3- or 5-pixel patch often have a look-alike (kernel
cosine 0.9 or more) or an opposite, and the picture that drives one drives the other as hard.
``negative``: minus the pre-activation mean (the image that turns the filter off hardest).
``diversity``: Lucid's penalty on pictures of one filter that look alike to the layer: the mean cosine
similarity of their Gram matrices (Olah et al., *Feature Visualization*, Distill 2017).
``post_relu_channel`` is the original script's objective.
"""

from __future__ import annotations

FLOOR_LEVEL = 0.1  # the coverage judge's level: a unit at a tenth of the peak counts as lit


def select_filters(maps, filters, channels: int):
    """(B, h, w, C) maps and (B,) filter indices -> (B, h, w): row b's own filter."""
    from keras import ops

    return ops.einsum("bhwc,bc->bhw", maps, ops.one_hot(filters, channels, dtype=maps.dtype))


def channel(target):
    """(B, h, w) -> (B,) spatial mean."""
    from keras import ops

    return ops.mean(target, axis=(1, 2))


def channel_mix(target, pre_share):
    """(B, h, w) -> (B,): ``(1 - pre_share)`` x post-ReLU mean + ``pre_share`` x pre-ReLU mean."""
    from keras import ops

    return (1.0 - pre_share) * ops.mean(ops.relu(target), axis=(1, 2)) + pre_share * channel(target)


def floor(target, level: float = FLOOR_LEVEL):
    """(B, h, w) -> (B,) mean of the map with each unit capped at ``level`` x the map's peak (held fixed)."""
    from keras import ops

    cap = ops.stop_gradient(level * ops.max(ops.relu(target), axis=(1, 2), keepdims=True))
    return ops.mean(ops.minimum(target, cap), axis=(1, 2))


def contrast(maps, filters, reference, margin: float):
    """(B, h, w, C) maps -> (B,) how far the layer's other filters come within ``margin`` of the row's own
    filter, each filter's response (post-ReLU mean) taken relative to ``reference`` (C,), its mean
    response to the layer's pictures; summed over the filters, in the own filter's units. It is 0 while
    the picture drives its own filter clearly more than any other, relative to how each responds to
    pictures at all (the specificity judge's measure). In a layer of 64 filters some other filter comes
    that close at some step on every picture (measured: every sampled picture of block1 changes)."""
    from keras import ops

    hot = ops.one_hot(filters, maps.shape[-1], dtype="float32")
    relative = ops.cast(ops.mean(ops.relu(maps), axis=(1, 2)), "float32") / reference[None, :]
    own = ops.sum(relative * hot, axis=1, keepdims=True)
    excess = ops.relu(relative - (1.0 - margin) * own) * (1.0 - hot)
    return ops.sum(excess, axis=1) * ops.sum(reference[None, :] * hot, axis=1)


def peak(target):
    """(B, h, w) -> (B,) the map's strongest unit before the ReLU (what "excites it most" is measured by)."""
    from keras import ops

    return ops.max(target, axis=(1, 2))


def neuron(target):
    """(B, h, w) -> (B,) the centre unit."""
    h, w = target.shape[1], target.shape[2]
    return target[:, h // 2, w // 2]


def negative(target):
    """(B, h, w) -> (B,) minus the pre-activation mean: maximizing it turns the filter off."""
    return -channel(target)


def post_relu_channel(target):
    """(B, h, w) -> (B,) spatial mean after the ReLU (the original script)."""
    from keras import ops

    return ops.mean(ops.relu(target), axis=(1, 2))


def diversity(maps, group: int):
    """(B, h, w, C) maps, rows in groups of ``group`` pictures of one filter -> (B,) each row's summed
    cosine similarity to the other pictures of its group, compared as Gram matrices of the layer's
    activations (channel co-occurrence, where the pattern sits does not matter).

    ``<G_a, G_b>`` with ``G = F^T F`` (F: positions x channels) equals ``||F_a F_b^T||^2``, so the
    smaller of the (C x C) and (hw x hw) products is formed.
    """
    from keras import ops

    b, h, w, c = maps.shape
    feats = ops.reshape(ops.relu(maps), (b // group, group, h * w, c))
    if h * w < c:
        cross = ops.einsum("gipc,gjqc->gijpq", feats, feats)  # F_i F_j^T
        inner = ops.sum(cross * cross, axis=(3, 4))  # (g, i, j): <G_i, G_j>
    else:
        grams = ops.einsum("gipc,gipd->gicd", feats, feats)
        inner = ops.einsum("gicd,gjcd->gij", grams, grams)
    norms = ops.sqrt(ops.maximum(ops.diagonal(inner, axis1=1, axis2=2), 1e-20))
    cosine = inner / (norms[:, :, None] * norms[:, None, :])
    off = 1.0 - ops.eye(group, dtype=cosine.dtype)
    return ops.reshape(ops.sum(cosine * off, axis=2), (b,))
