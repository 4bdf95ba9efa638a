"""How good a set of pictures is, judged on the saved 8-bit images as users get them.

dead: the filter's post-ReLU map is all zero on its own picture (nothing was found that turns it on).
specificity: the share of pictures whose own filter responds most, relative to how strongly each
filter responds on average over the pictures (a[i, j] / mean_i a[i, j], a = mean post-ReLU activation of
filter j on picture i): a picture that excites every filter alike, or whose filter prefers another
filter's picture, does not count.
coverage: the share of the cells of a 4x4 grid over the filter's map that hold a unit at 10% or more of
the map's maximum; a picture with coverage 0.25 or less is a *blob*: a small pattern on a flat field,
which shows what one position wants rather than what the channel responds to across an image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOB_COVERAGE = 0.25


@dataclass(frozen=True)
class Quality:
    filters: int
    dead: int
    specificity: float
    coverage: float  # median
    blobs: int


def specificity(responses: np.ndarray) -> float:
    """``responses[i, j]``: mean post-ReLU activation of filter j on filter i's picture."""
    a = np.asarray(responses, np.float64)
    relative = a / (a.mean(axis=0, keepdims=True) + 1e-12)
    return float(np.mean(np.argmax(relative, axis=1) == np.arange(len(a))))


def judge(renderer, images: np.ndarray, filters: list[int]) -> Quality:
    """Quality of ``images[i]`` as the picture of ``filters[i]`` of the renderer's layer."""
    judged = renderer.judge(images)
    own = np.asarray(filters)
    rows = np.arange(len(own))
    coverage = judged.coverage[rows, own]
    return Quality(
        filters=len(own),
        dead=int(np.sum(judged.pre_max[rows, own] <= 0.0)),
        specificity=specificity(judged.post_mean[:, own]),
        coverage=float(np.median(coverage)),
        blobs=int(np.sum(coverage <= BLOB_COVERAGE)),
    )
