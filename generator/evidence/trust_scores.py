"""The trust scores of one filter's picture, in numpy: how far to trust it, measured against the real
images that drive the filter.

A feature visualization can show one thing while the network's natural behaviour is another (Geirhos
et al., "Don't trust your eyes: on the (un)reliability of feature visualizations", ICML 2024), and how
much a picture helps predict which of two real images drives a unit more is an empirical question
(Zimmermann et al., "How well do feature visualizations support causal understanding of CNN
activations?", NeurIPS 2021). Four checks per filter, from its channel picture, its dataset examples
(``atlas examples``) and the network:

beyond nature: the picture's highest unit of the filter's map before the activation, over the best
    natural example's (the examples pass's top value: the same measure).
path similarity: at each layer up to the target, Spearman's rank correlation between the picture's
    activation vector and the mean of the top-k natural examples' (after Geirhos et al.), beside the
    same for a random natural image: is the picture processed along the path real images take?
two-image prediction: over the top-k and bottom-k examples, the share of (top, bottom) pairs whose top
    image is closer to the picture (cosine similarity at the layer just before the target), an
    automated version of Zimmermann et al.'s task; 0.5 is chance.
seed agreement: the mean pairwise cosine similarity of the four diversity pictures at the target
    layer, beside that of four other filters' channel pictures.
natural reference: path similarity and two-image prediction of the filter's strongest natural example
    held out and used as the "picture" (scored against the other top examples): what a real image
    that drives the filter achieves on the same checks, so a picture's scores can be read against what
    is achievable rather than against 1.
accentuation: where the filter has the accentuation view (which starts from that strongest example),
    the same two checks of the accentuation picture against the same other top examples, and its
    strongest unit over the strongest photo's: does the photo, accentuated, keep the natural path and
    raise the filter?
field view: where the filter has it (the early layers, at their own scale), its picture scored as the
    channel picture is, at its own strongest unit, against the examples at theirs: each compared over
    the target unit's receptive field, so against the examples' receptive-field crops.

Where no photo turns the filter on (the strongest photo's value is 0 or below), the picture's ratio
has no meaning; the record then says so (``no_photo_on``) and keeps both values.

The vectors these compare are read on the device by ``generator.evidence.trust_probe``; the pass that
stores the records is ``generator.passes.trust``. What a record was computed against (``against``)
is kept with it, so the site can tell current scores from stale ones (``current_against``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TRUST_VERSION = 3  # 3: the natural reference, and no_photo_on; 2: layers of fewer than MIN_RANKED filters left out of the path, seeds of one filter None
MIN_RANKED = 3  # a rank correlation of fewer values says nothing (of one: undefined)
SEED_PICTURES = 4  # the diversity view's pictures, and the other filters' channel pictures of its baseline


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given the mean of the ranks they span (as ``scipy.stats.rankdata``)."""
    a = np.asarray(values, np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    ordered = a[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]  # the start of each run of equal values
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    counts = np.diff(np.r_[starts, len(a)])
    out = np.empty(len(a), np.float64)
    out[order] = (starts + (counts + 1) / 2.0)[group]
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two vectors; 0 where either does not vary (it ranks nothing)."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    norm = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / norm) if norm > 0 else 0.0


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of the rows of ``a`` (N, D) with ``b`` (D,) or row by row with (N, D); 0 for a
    zero vector."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    dot = (a * b).sum(axis=-1)
    norm = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.where(norm > 0, dot / np.where(norm > 0, norm, 1.0), 0.0)


def pair_share(picture: np.ndarray, tops: np.ndarray, bottoms: np.ndarray) -> float | None:
    """The share of (top, bottom) pairs whose top image is closer to the picture (cosine similarity of
    their vectors), ties counting half; None without a pair."""
    if len(tops) == 0 or len(bottoms) == 0:
        return None
    up, down = cosine(tops, picture), cosine(bottoms, picture)
    wins = (up[:, None] > down[None, :]).sum() + 0.5 * (up[:, None] == down[None, :]).sum()
    return float(wins / (len(up) * len(down)))


def mean_pairwise_cosine(vectors: np.ndarray) -> float | None:
    """The mean cosine similarity over every pair of rows; None for fewer than two."""
    v = np.asarray(vectors, np.float64)
    if len(v) < 2:
        return None
    i, j = np.triu_indices(len(v), 1)
    return float(np.mean(cosine(v[i], v[j])))


# --- one filter's record -----------------------------------------------------------------------------------


@dataclass
class FilterEvidence:
    """Everything one filter's scores are computed from; vectors per layer up to the target."""

    picture: list[np.ndarray]  # per layer (C,): the channel picture at its strongest unit
    picture_value: float  # the filter's value there, before the activation
    picture_before: np.ndarray  # (D,): the picture at the layer before the target (the input, first layer)
    top_mean: list[np.ndarray] | None  # per layer (C,): the mean of the top natural examples at their units
    top_before: np.ndarray  # (n_top, D)
    bottom_before: np.ndarray  # (n_bottom, D)
    random: list[np.ndarray] | None  # per layer (C,): a random natural image at its strongest unit
    strongest_photo: float | None  # the examples pass's top value
    random_image: str | None = None
    diversity: np.ndarray | None = None  # (4, C): the diversity pictures, averaged over the target map
    others: np.ndarray | None = None  # (n, C): other filters' channel pictures, the same way
    other_filters: list[int] = field(default_factory=list)
    held: list[np.ndarray] | None = None  # per layer (C,): the strongest natural example, held out
    held_before: np.ndarray | None = None  # (D,): the same at the layer before the target
    rest_mean: list[np.ndarray] | None = None  # per layer (C,): the mean of the other top examples
    accent: list[np.ndarray] | None = None  # per layer (C,): the accentuation picture at its strongest unit
    accent_value: float | None = None  # the filter's value there
    accent_before: np.ndarray | None = None  # (D,): the same at the layer before the target
    accent_start: str | None = None  # the photograph it started from (a new start makes it stale)
    field: list[np.ndarray] | None = None  # per layer (C,): the field view's picture at its strongest unit
    field_value: float | None = None  # the filter's value there
    field_before: np.ndarray | None = None  # (D,): the same at the layer before the target


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


def filter_trust(e: FilterEvidence, layers: list[str], before: str, against: dict) -> dict:
    """The ``"trust"`` record of one filter (the module docstring says what each score is), with a
    ``summary`` of one number per score for the layer table."""
    ratio = e.picture_value / e.strongest_photo if e.strongest_photo is not None and e.strongest_photo > 0 else None
    no_photo_on = e.strongest_photo is not None and e.strongest_photo <= 0
    ranked = [i for i, m in enumerate(e.top_mean or []) if np.asarray(m).size >= MIN_RANKED]
    path = [spearman(e.picture[i], e.top_mean[i]) for i in ranked] or None
    path_random = [spearman(e.random[i], e.top_mean[i]) for i in ranked] if path and e.random else None
    two = pair_share(e.picture_before, e.top_before, e.bottom_before)
    natural = _natural_reference(e, ranked)
    accent = _accentuation(e, ranked)
    at_scale = _field_view(e, ranked)
    seed = None
    if e.diversity is not None:  # a layer of one filter: its pictures' vectors are numbers, alike by nature
        alike = np.asarray(e.diversity).shape[-1] >= 2
        seed = {"diversity": _round(mean_pairwise_cosine(e.diversity)) if alike else None,
                "random_filters": _round(mean_pairwise_cosine(e.others)) if alike and e.others is not None else None,
                "filters": list(e.other_filters)}
    return {
        "version": TRUST_VERSION,
        "against": against,
        "beyond_nature": {"ratio": _round(ratio), "picture": _round(e.picture_value, 6),
                          "strongest_photo": _round(e.strongest_photo, 6), "no_photo_on": no_photo_on},
        "path_similarity": {"layers": [layers[i] for i in ranked], "picture": [_round(v) for v in path] if path else None,
                            "random_image": [_round(v) for v in path_random] if path_random else None,
                            "random_image_file": e.random_image, "top": len(e.top_before)},
        "two_image": {"score": _round(two), "pairs": len(e.top_before) * len(e.bottom_before), "layer": before},
        "seed_agreement": seed,
        "natural_reference": natural,
        **({"accentuation": accent} if accent else {}),
        **({"field": at_scale} if at_scale else {}),
        "summary": {
            "beyond_nature": _round(ratio),
            "no_photo_on": no_photo_on,
            "picture_value": _round(e.picture_value, 6),
            "strongest_photo": _round(e.strongest_photo, 6),
            "natural_path": natural["path"] if natural else None,
            "natural_two_image": natural["two_image"] if natural else None,
            "path": _round(float(np.mean(path))) if path else None,
            "path_random": _round(float(np.mean(path_random))) if path_random else None,
            "two_image": _round(two),
            "seed": seed["diversity"] if seed else None,
            "seed_random": seed["random_filters"] if seed else None,
            **({f"accentuation_{k}": accent[k] for k in ("beyond_nature", "path", "two_image")} if accent else {}),
            **({f"field_{k}": at_scale[k] for k in ("beyond_nature", "path", "two_image")} if at_scale else {}),
        },
    }


def _natural_reference(e: FilterEvidence, ranked: list[int]) -> dict | None:
    """The scores of the strongest natural example held out as the "picture" (None without one, or
    without another top example to compare it with)."""
    if e.held is None or e.rest_mean is None or len(e.top_before) < 2:
        return None
    path = [spearman(e.held[i], e.rest_mean[i]) for i in ranked]
    two = pair_share(e.held_before, e.top_before[1:], e.bottom_before)
    return {"path": _round(float(np.mean(path))) if path else None, "two_image": _round(two),
            "of": "the strongest natural example, held out; scored against the other top examples"}


def _accentuation(e: FilterEvidence, ranked: list[int]) -> dict | None:
    """The accentuation picture's scores, as the natural reference's (against the top examples but the
    strongest, its start), and its strongest unit over the strongest photo's (None without the view)."""
    if e.accent is None or e.rest_mean is None or len(e.top_before) < 2:
        return None
    path = [spearman(e.accent[i], e.rest_mean[i]) for i in ranked]
    ratio = e.accent_value / e.strongest_photo if e.strongest_photo is not None and e.strongest_photo > 0 else None
    return {"beyond_nature": _round(ratio), "picture": _round(e.accent_value, 6), "start": e.accent_start,
            "path": _round(float(np.mean(path))) if path else None,
            "two_image": _round(pair_share(e.accent_before, e.top_before[1:], e.bottom_before)),
            "of": "the accentuation picture; scored against the top examples but its start, as the natural reference"}


def _field_view(e: FilterEvidence, ranked: list[int]) -> dict | None:
    """The field view's scores, as the channel picture's (against every top and bottom example, each at
    its unit: the receptive-field crops the examples pass cut), and its strongest unit over the strongest
    photo's (None without the view)."""
    if e.field is None:
        return None
    path = [spearman(e.field[i], e.top_mean[i]) for i in ranked]  # ranked is empty without top examples
    ratio = e.field_value / e.strongest_photo if e.strongest_photo is not None and e.strongest_photo > 0 else None
    return {"beyond_nature": _round(ratio), "picture": _round(e.field_value, 6),
            "path": _round(float(np.mean(path))) if path else None,
            "two_image": _round(pair_share(e.field_before, e.top_before, e.bottom_before)),
            "of": "the field view's picture at its strongest unit; scored as the channel picture"}


# --- what a record was computed against ------------------------------------------------------------------


def against(examples_sha256: str, size: int, top: int, weights_sha256: str) -> dict:
    """What a filter's scores were computed against: the examples' image set, size and k, the weights."""
    return {"examples": examples_sha256, "size": size, "top": top, "weights_sha256": weights_sha256}


def current_against(manifest: dict) -> dict | None:
    """What scores must have been computed against to belong to the atlas as its manifest stands (None
    without dataset examples): scores from an image set the examples were since replaced by are stale."""
    examples = manifest.get("examples") or {}
    images = examples.get("images") or {}
    if not images.get("list_sha256"):
        return None
    return against(images["list_sha256"], images.get("size"), examples.get("top"),
                   (manifest.get("weights") or {}).get("sha256"))


def is_current(record: dict, against: dict, has_diversity: bool, has_accentuation: bool = False,
               has_field: bool = False) -> bool:
    """Whether a filter's stored trust was computed against these examples and weights (and, once its
    diversity view exists, has its seed agreement; once its accentuation view exists, its scores, of
    that very picture; once its field view exists, that view's scores)."""
    trust = record.get("trust")
    if not isinstance(trust, dict) or trust.get("version") != TRUST_VERSION or trust.get("against") != against:
        return False
    if has_field and "field" not in trust:
        return False
    if has_accentuation:
        start = (((record.get("views") or {}).get("accentuation") or {}).get("start") or {}).get("image")
        if (trust.get("accentuation") or {}).get("start") != start:
            return False
    return trust.get("seed_agreement") is not None or not has_diversity
