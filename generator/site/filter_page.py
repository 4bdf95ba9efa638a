"""A filter's page (``/vgg16/block3_conv3/80/``): every view's display pictures with their loss curve
and facts, the dataset examples, the wiring, the classes, the trust row, the links to its neighbours,
its downloads and its BibTeX entry."""

from __future__ import annotations

from generator import paths
from generator.atlas.files import read_json
from generator.network.layers import Layer
from generator.render.views import VIEWS
from generator.site import plots, trust_pages
from generator.site.assets import (
    CHANNEL_QUALITY,
    DISPLAY,
    FIELD_QUALITY,
    OTHER_VIEWS_QUALITY,
    THUMB,
    avif,
    copy_file,
    crop_first,
    webp,
)
from generator.site.classes import filter_classes
from generator.site.escape import bibtex_text, fenced_code
from generator.site.model_site import Cell, ModelSite, public_weights
from generator.site.urls import downloads_url, permalinks, relative, relative_md

FIELD_DISPLAY = 256  # the field view's picture is shown about this wide, a whole number of screen pixels per pixel
WIRING_ROWS = {"excite": "Strongest positive inputs", "inhibit": "Strongest negative inputs",
               "excites": "Excites most", "inhibits": "Inhibits most"}


def write_filter_page(site: ModelSite, layer: Layer, row: dict, prev: int | None, nxt: int | None,
                      wiring: dict) -> dict | None:
    """Write the filter's page; return its trust summary (None if it has no current trust scores)."""
    f = row["filter"]
    here = paths.filter_url(site.model, layer.name, f)
    record = site.store.read_filter(layer.name, f)
    sp = site.store.paths
    site.make(site.asset(layer.name, f, "thumb"), [sp.filter_png(layer.name, f)], webp(sp.filter_png(layer.name, f), 80, THUMB))
    views = [_view(site, layer, f, here, name, record) for name in row.get("views", ["channel"])]
    permalink, latest = permalinks(here)
    short = site.spec.short_name(layer.name, f)

    def link(other: int | None):
        if other is None:
            return None
        return {"href": relative(here, paths.filter_url(site.model, layer.name, other)), "label": f"{layer.name}:{other}"}

    downloads = downloads_url()
    trust = trust_pages.current_trust(record, site.manifest)
    examples = _examples(site, layer, f, here, record)
    for view in views:
        if view["name"] == "field" and examples:
            view["nature"] = _field_nature(record["views"]["field"], examples, relative(here, site.asset(layer.name, f, "top1")),
                                           trust)
        if view["name"] == "accentuation":
            view["start"] = _accentuation_start(record["views"]["accentuation"], examples,
                                                relative(here, site.asset(layer.name, f, "top1")), trust)
    site.writer.write_page(
        here, "filter.md.j2", layer=layer, record=record, short=short, model=site.model,
        crumbs=site.crumbs(here, site.group_crumb(layer), (layer.name, paths.layer_url(site.model, layer.name)), (str(f), None)),
        views=views, display=DISPLAY,
        downloads=f"{downloads}{site.model}/{layer.name}/{paths.filter_stem(f)}" if downloads else None,
        data_path=f"atlas/{site.model}/{layer.name}/{paths.filter_stem(f)}",
        prev=link(prev), next=link(nxt), up=relative(here, paths.layer_url(site.model, layer.name)),
        permalink=permalink, latest=latest if latest != permalink else None,
        # plain text: colouring the BibTeX took 0.8 KB of every filter page
        bibtex=fenced_code(bibtex(site.spec.title, site.model, layer.name, f, permalink, site.manifest)),
        examples=examples, examples_set=site.examples,
        wiring=_filter_wiring(site, f, here, wiring), classes=_classes(site, layer, f),
        model_flag=site.model if site.spec.zoo else f"PATH.keras --name {site.model}",
        trust=trust_pages.filter_row(trust) if trust else None, method_href=relative_md(here, "method.md"),
    )
    return trust["summary"] if trust else None


def _view(site: ModelSite, layer: Layer, f: int, here: str, name: str, record: dict) -> dict:
    """One view of the filter: its display pictures (made now), loss curve and facts."""
    view = VIEWS[name]
    entry = record if name == "channel" else record["views"][name]
    pictures = []
    for suffix in view.suffixes():
        src = site.store.paths.filter_png(layer.name, f, suffix)
        url = site.asset(layer.name, f, "display" if name == "channel" else f"view:{suffix}")
        quality = {"channel": CHANNEL_QUALITY, "field": FIELD_QUALITY}.get(name, OTHER_VIEWS_QUALITY)
        site.make(url, [src], avif(src, quality))
        pictures.append(relative(here, url))
    return {
        "name": name, "title": view.title, "what": view.what, "pictures": pictures,
        "plot": plots.line_plot(entry.get("loss", [])), "numbers": numbers(name, entry, layer),
        **(_field(layer, entry["canvas"]) if name == "field" else {}),
    }


def _field(layer: Layer, canvas: int) -> dict:
    """How the field view's small picture is shown: enlarged a whole number of times (its pixels stay
    sharp squares), with the centre unit's receptive field marked, in percent of the picture."""
    scale = max(1, round(FIELD_DISPLAY / canvas))
    mid = layer.output_size(canvas) // 2  # the unit the view drives (``objectives.neuron``)
    y, x = layer.centre(mid, mid)
    top, left = y - (layer.receptive_field - 1) / 2, x - (layer.receptive_field - 1) / 2

    def percent(v: float) -> str:
        return f"{100.0 * v / canvas:.3g}%"

    return {"canvas": canvas, "shown": canvas * scale, "scale": scale, "field": layer.receptive_field, "nature": None,
            "box": {"top": percent(top), "left": percent(left), "side": percent(layer.receptive_field)}}


def _field_nature(entry: dict, examples: dict, crop: str, trust: dict | None) -> dict:
    """The field picture against the real patches: its centre unit's value, the strongest dataset
    example's (the same filter's strongest unit in a photo) and their ratio, and that example's crop
    (its receptive field, enlarged) to show beside it; where ``atlas trust`` scored the view, its
    two-image and path scores beside the channel picture's."""
    value, strongest = entry.get("centre"), examples["strongest"]
    ratio = value / strongest if value is not None and strongest and strongest > 0 else None
    scored, summary = (trust or {}).get("field"), (trust or {}).get("summary") or {}
    scores = ({"two_image": _score(scored.get("two_image")), "path": _score(scored.get("path")),
               "channel_two_image": _score(summary.get("two_image")), "channel_path": _score(summary.get("path"))}
              if scored else None)
    return {"value": value, "strongest": strongest, "ratio": ratio, "crop": crop, "trust": scores}


def _accentuation_start(entry: dict, examples: dict | None, crop: str, trust: dict | None) -> dict:
    """The photograph the accentuation view started from: its name, the filter's strongest unit on it
    and on the accentuated picture, their ratio, its crop (the receptive field of its strongest unit)
    where the dataset examples still name it first, and where ``atlas trust`` scored the picture, its
    two-image and path scores beside the photograph's own (the natural reference)."""
    start = entry.get("start") or {}
    scored = (trust or {}).get("accentuation") or {}
    natural = (trust or {}).get("natural_reference") or {}
    scores = ({"two_image": _score(scored.get("two_image")), "path": _score(scored.get("path")),
               "photo_two_image": _score(natural.get("two_image")), "photo_path": _score(natural.get("path"))}
              if scored.get("start") == start.get("image") else None)
    value, before = entry.get("pre_relu_max"), start.get("pre_relu_max")
    ratio = value / before if value is not None and before and before > 0 else None
    shown = examples is not None and examples["top"] and examples["top"][0]["image"] == start.get("image")
    return {"image": start.get("image"), "value": value, "before": before, "ratio": ratio,
            "held": entry.get("held_layer"), "crop": crop if shown else None, "trust": scores}


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def numbers(view: str, entry: dict, layer: Layer | None = None) -> list[tuple[str, str]]:
    """The facts table of one view."""
    def fmt(value) -> str:
        if isinstance(value, list):
            return ", ".join(f"{v:.4g}" for v in value)
        return f"{value:.5g}" if isinstance(value, float) else str(value)

    rows = [("Final loss", fmt(entry.get("final_loss")))]
    if view in ("channel", "diversity"):
        rows.append(("Mean activation after ReLU", fmt(entry.get("activation"))))
        rows.append(("Coverage of the map", fmt(entry.get("coverage"))))
    if view in ("neuron", "field"):
        rows.append(("Centre unit before ReLU", fmt(entry.get("centre"))))
    if view == "field" and layer is not None:
        rows.append(("Canvas", f"{entry.get('canvas')} px, the receptive field {layer.receptive_field} px"))
    if view in ("channel", "negative"):
        rows.append(("Mean / max before ReLU", f"{fmt(entry.get('pre_relu_mean'))} / {fmt(entry.get('pre_relu_max'))}"))
    if view == "channel":
        rows.append(("Dead", "yes" if entry.get("dead") else "no"))
    if view == "accentuation":
        start = entry.get("start") or {}
        rows.append(("Mean activation after ReLU", f"{fmt(entry.get('activation'))} (the photograph: {fmt(start.get('activation'))})"))
        rows.append(("Max before ReLU", f"{fmt(entry.get('pre_relu_max'))} (the photograph: {fmt(start.get('pre_relu_max'))})"))
        rows.append(("Started from", f"{start.get('image')}, held near it at {entry.get('held_layer')}"))
    precision = entry.get("precision", "")
    rows.append(("Precision", precision + (" (redone in float32)" if entry.get("retried_float32") else "")))
    return rows


def bibtex(title: str, model: str, layer: str, filter_index: int, permalink: str, manifest: dict) -> str:
    """The filter's BibTeX entry; every field's text escaped for BibTeX (``bibtex_text``)."""
    key = f"{model}_{layer}_{filter_index}"
    year = str(manifest.get("updated", ""))[:4] or "2026"
    weights = public_weights(manifest)
    return (
        f"@misc{{{key},\n"
        f"  title = {{{bibtex_text(f'{title} {layer}:{filter_index}')}: feature visualization}},\n"
        f"  author = {{{{VGG16 Filter Atlas}}}},\n"
        f"  year = {{{bibtex_text(year)}}},\n"
        f"  howpublished = {{\\url{{{permalink}}}}},\n"
        f"  note = {{weights {bibtex_text(weights['name'])}, sha256 {bibtex_text(weights['sha256'][:16])}, "
        f"config {bibtex_text(manifest['config_hash'])}}}\n"
        f"}}"
    )


# --- evidence: dataset examples, wiring and classes -------------------------------------------------------


def _examples(site: ModelSite, layer: Layer, f: int, here: str, record: dict) -> dict | None:
    sp = site.store.paths
    src_json, sprite = sp.examples_json(layer.name, f), sp.examples_sprite(layer.name, f)
    if not (src_json.exists() and sprite.exists()):
        return None
    data = read_json(src_json, f"dataset examples of {layer.name}:{f}")
    url = site.asset(layer.name, f, "examples")
    site.make(url, [sprite], copy_file(sprite))
    cell = data["sprite"]["cell"]
    site.make(site.asset(layer.name, f, "top1"), [sprite], crop_first(sprite, cell))

    def crops(kind: str) -> list[dict]:
        return [{"i": i, "value": e["value"], "image": e["image"], "at": f"({int(e['y'])}, {int(e['x'])})"}
                for i, e in enumerate(data[kind])]

    picture = record.get("pre_relu_max")
    strongest = data["top"][0]["value"] if data["top"] else None
    hist = data["histogram"]
    marks = [(picture, "this picture")] if picture is not None else []
    ratio = picture / strongest if picture is not None and strongest and strongest > 0 else None
    return {
        "sprite": relative(here, url), "cell": cell, "sprite_width": cell * len(data["top"]),
        "sprite_height": cell * 2, "top": crops("top"), "bottom": crops("bottom"),
        "plot": plots.distribution(hist["edges"], hist["counts"], marks), "ratio": ratio,
        "strongest": strongest, "picture": picture, "count": sum(hist["counts"]),
    }


def read_wiring(site: ModelSite, layer: Layer) -> dict:
    """The layer's ``wiring.json`` ({} where ``atlas wiring`` has not run)."""
    path = site.store.paths.wiring_json(layer.name)
    return read_json(path, f"wiring of {layer.name}") if path.exists() else {}


def _filter_wiring(site: ModelSite, f: int, here: str, wiring: dict) -> dict | None:
    entry = wiring.get("filters", {}).get(str(f))
    if entry is None:
        return None
    rows = []
    for key, label in WIRING_ROWS.items():
        items = entry.get(key) or []
        if not items:
            continue
        cells = []
        for item in items:
            other, g = item["layer"], item["filter"]
            rendered = g in site.rows.get(other, {})
            cells.append(Cell(
                href=relative(here, paths.filter_url(site.model, other, g)) if rendered else None,
                thumb=relative(here, site.asset(other, g, "thumb")) if rendered else None,
                title=f"{other}:{g}, weight {item['weight']:.3g}" + ("" if rendered else " (not rendered in this atlas)"),
                label=f"{item['weight']:+.2g}", alt=f"{site.spec.short_name(other, g)}, channel view",
            ))
        rows.append({"label": label, "cells": cells, "layer": items[0]["layer"]})
    kernel = entry.get("kernel")
    return {"rows": rows, "kernel": plots.kernel_image(kernel) if kernel else None,
            "rule": wiring.get("rule", "")}


def _classes(site: ModelSite, layer: Layer, f: int) -> dict | None:
    path = site.store.paths.examples_json(layer.name, f)
    if not path.exists():
        return None
    return filter_classes(read_json(path, f"dataset examples of {layer.name}:{f}").get("classes"))
