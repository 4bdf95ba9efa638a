"""How good a set of pictures is, judged on the saved 8-bit images as users get them.

dead: the filter's post-ReLU map is all zero on its own picture (nothing was found that turns it on).
specificity: the share of pictures whose own filter responds most, relative to how strongly each
filter responds on average over the pictures (a[i, j] / mean_i a[i, j], a = mean post-ReLU activation of
filter j on picture i): a picture that excites every filter alike, or whose filter prefers another
filter's picture, does not count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Quality:
    filters: int
    dead: int
    specificity: float


def specificity(responses: np.ndarray) -> float:
    """``responses[i, j]``: mean post-ReLU activation of filter j on filter i's picture."""
    a = np.asarray(responses, np.float64)
    relative = a / (a.mean(axis=0, keepdims=True) + 1e-12)
    return float(np.mean(np.argmax(relative, axis=1) == np.arange(len(a))))


def judge(renderer, images: np.ndarray, filters: list[int]) -> Quality:
    """Quality of ``images[i]`` as the picture of ``filters[i]`` of the renderer's layer."""
    post, pre_max, _ = renderer.activations(images)
    own = np.asarray(filters)
    dead = int(np.sum(pre_max[np.arange(len(own)), own] <= 0.0))
    return Quality(len(own), dead, specificity(post[:, own]))
