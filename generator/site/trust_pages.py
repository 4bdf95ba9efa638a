"""The trust scores (``atlas trust``) as the pages show them: the filter page's row, the layer's table,
the Method page's layer means. Formatting only, from the stored records: the scores themselves are
computed in ``generator.evidence.trust_scores``; scores computed against examples since replaced are not
shown."""

from __future__ import annotations

from generator.evidence.trust_scores import SEED_PICTURES, current_against
from generator.site import plots

WEAK_TWO_IMAGE = 0.6  # below: the picture barely tells top photos from bottom ones (chance is 0.5)
CLEAR_TWO_IMAGE = 0.75
PATH_MARGIN = 0.05  # path similarity within this of the random photo's: no closer to the top photos
FAR_BEYOND = 10.0  # the picture drives the filter this many times the strongest photo, or more


def current_trust(record: dict, manifest: dict) -> dict | None:
    """The record's trust if it was computed against the atlas's present examples and weights."""
    trust = record.get("trust")
    expected = current_against(manifest)
    if not isinstance(trust, dict) or expected is None or trust.get("against") != expected:
        return None
    return trust


def times(ratio: float | None) -> str:
    """``×14``, ``×1.3``, ``×0.52``; a dash where no photo turns the filter on."""
    if ratio is None:
        return "–"
    if ratio <= 0:
        return "×0"
    return f"×{ratio:.0f}" if ratio >= 10 else f"×{ratio:.2g}"


def no_photo_on(summary: dict) -> str | None:
    """Where no photo turns the filter on (the strongest is at or below 0, so a ratio means nothing):
    both values, the picture's and the strongest photo's; None where a photo does."""
    picture, photo = summary.get("picture_value"), summary.get("strongest_photo")
    if summary.get("beyond_nature") is not None or picture is None or photo is None:
        return None
    return f"{picture:.4g} where no photo turns it on (the strongest photo: {photo:.4g})"


def number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def reading(summary: dict, layers: int) -> str:
    """One sentence on what the numbers say about this picture."""
    parts = []
    two = summary.get("two_image")
    if two is not None:
        if two >= CLEAR_TWO_IMAGE:
            parts.append(f"it tells the filter's top photos from its bottom ones in {two:.0%} of pairs (chance: 50%)")
        elif two >= WEAK_TWO_IMAGE:
            parts.append(f"it tells the filter's top photos from its bottom ones in only {two:.0%} of pairs, a little "
                         "better than chance (50%)")
        else:
            parts.append(f"it tells the filter's top photos from its bottom ones in {two:.0%} of pairs, no better than "
                         "chance (50%): it does not show what drives the filter in real images")
    path, base = summary.get("path"), summary.get("path_random")
    if path is not None and base is not None:
        if path - base > PATH_MARGIN:
            parts.append(f"the network processes it more like those top photos than a random photo ({path:.2f} "
                         f"against {base:.2f}, mean over {layers} layers)")
        elif path - base >= -PATH_MARGIN:
            parts.append(f"the network processes it no more like those top photos than a random photo ({path:.2f} "
                         f"against {base:.2f})")
        else:
            parts.append(f"the network processes it less like those top photos than a random photo ({path:.2f} "
                         f"against {base:.2f}): the warning sign Geirhos et al. describe")
    ratio, picture = summary.get("beyond_nature"), summary.get("picture_value")
    if no_photo_on(summary) is not None and picture > 0:
        parts.append(f"no photo turns the filter on (the strongest: {summary['strongest_photo']:.4g}), while the "
                     f"picture drives it to {picture:.4g}")
    if ratio is not None and ratio >= FAR_BEYOND:
        parts.append(f"it drives the filter to {times(ratio)} the strongest photo, far beyond what photos do")
    if not parts:
        return "Too few dataset examples to read these checks."
    text = "; ".join(parts)
    return f"Reading: {text}."


def filter_row(trust: dict) -> dict:
    """The filter page's Trust row: the numbers with their baselines, the path plot, one sentence."""
    summary = trust["summary"]
    path = trust["path_similarity"]
    two = trust["two_image"]
    seed = trust.get("seed_agreement")
    unlit = no_photo_on(summary)
    rows = [
        ("Beyond nature", unlit or f"{times(summary.get('beyond_nature'))} the strongest photo",
         "×1: as strong as the strongest photo" if unlit is None else
         "no photo turns the filter on; the picture does what none of them does" if summary["picture_value"] > 0 else
         "neither the photos nor the picture turn the filter on"),
        ("Path similarity", number(summary.get("path")),
         f"{number(summary.get('path_random'))} for a random photo (mean over {len(path['layers'])} layers)"
         if path["layers"] else "no layer up to this one has 3 filters, too few to rank"),
        ("Two-image prediction", f"{number(two.get('score'))} of {two.get('pairs', 0)} pairs",
         f"0.50 is chance (closeness at {two.get('layer')})"),
        ("Seed agreement", number(seed.get("diversity")) if seed else "no diversity view",
         (f"{number(seed.get('random_filters'))} for {len(seed.get('filters', []))} other filters' pictures"
          if seed.get("diversity") is not None else "a layer of one filter: its pictures are alike by nature")
         if seed else f"needs the {SEED_PICTURES} diversity pictures (`--views diversity`)"),
    ]
    plot = None
    if path.get("picture"):
        plot = plots.path_plot(path["layers"], path["picture"], path.get("random_image"))
    return {"rows": rows, "plot": plot, "reading": reading(summary, len(path["layers"])),
            "random_image": path.get("random_image_file"), "top": path.get("top"),
            "first": path["layers"][0] if path["layers"] else None,
            "last": path["layers"][-1] if path["layers"] else None}


def _weak(summary: dict) -> dict[str, bool]:
    two, path, base = summary.get("two_image"), summary.get("path"), summary.get("path_random")
    seed, others = summary.get("seed"), summary.get("seed_random")
    return {
        "two_image": two is not None and two < WEAK_TWO_IMAGE,
        "path": path is not None and base is not None and path - base < -PATH_MARGIN,
        "seed": seed is not None and others is not None and seed < others,
    }


def table_row(filter_index: int, href: str, thumb: str, summary: dict) -> dict:
    """One row of the layer's table: each cell's text, the number it sorts by, and whether it is weak."""
    weak = _weak(summary)

    def cell(key: str, text: str, flag: str | None = None) -> dict:
        value = summary.get(key)
        return {"text": text, "sort": "" if value is None else f"{value:.6g}", "weak": bool(flag and weak[flag])}

    return {
        "filter": filter_index, "href": href, "thumb": thumb,
        "cells": [
            cell("two_image", number(summary.get("two_image")), "two_image"),
            cell("path", number(summary.get("path")), "path"),
            cell("path_random", number(summary.get("path_random"))),
            cell("beyond_nature", no_photo_on(summary) or times(summary.get("beyond_nature"))),
            cell("seed", number(summary.get("seed")), "seed"),
            cell("seed_random", number(summary.get("seed_random"))),
        ],
    }


COLUMNS = ("Two-image", "Path", "Path, random photo", "Beyond nature", "Seeds", "Seeds, other filters")


def sort_rows(rows: list[dict]) -> list[dict]:
    """The least trustworthy first: by two-image prediction, filters without it last."""
    return sorted(rows, key=lambda r: (r["cells"][0]["sort"] == "", float(r["cells"][0]["sort"] or 0), r["filter"]))


def means_text(means: dict) -> list[str]:
    """A layer's means (``store.trust_means``) as phrases of a sentence."""
    return [
        f"two-image prediction {number(means.get('two_image'))} (chance 0.50)",
        f"path similarity {number(means.get('path'))} (a random photo {number(means.get('path_random'))})",
        f"beyond nature {times(means.get('beyond_nature'))} the strongest photo",
        f"seed agreement {number(means.get('seed'))} (other filters {number(means.get('seed_random'))})"
        if means.get("seed") is not None else "no diversity view to check the seeds",
    ]

def means_cells(means: dict) -> list[str]:
    """A layer's means as the cells of the Method page's table (the order of ``COLUMNS``)."""
    return [number(means.get("two_image")), number(means.get("path")), number(means.get("path_random")),
            times(means.get("beyond_nature")), number(means.get("seed")), number(means.get("seed_random"))]
