"""A model's page (``/vgg16/``: its layers, a sample of each, its accuracy, the nav it carries) and its
block or stage pages (``/vgg16/block3/``: the layers of one group)."""

from __future__ import annotations

import json

from generator import paths
from generator.atlas.files import read_json
from generator.network.layers import Layer, groups
from generator.site.classes import accuracy_summary
from generator.site.model_site import SAMPLE, ModelSite, model_source
from generator.site.urls import relative, relative_md


def write_model_pages(site: ModelSite) -> None:
    """Write the model's page and the page of each of its groups."""
    summaries = [(layer, site.sorted_rows(layer)) for layer in site.layers]
    here = paths.model_url(site.model)
    site.writer.write_page(
        here, "model.md.j2", title=site.spec.title, about=site.spec.about,
        layers=[layer_summary(site, here, layer, rows) for layer, rows in summaries],
        groups=[(site.spec.group_label(g), relative_md(here, paths.group_url(site.model, g)))
                for g in groups(site.spec)],
        total_filters=sum(layer.filters for layer in site.layers),
        rendered_count=sum(len(rows) for _, rows in summaries),
        crumbs=[("Atlas", relative(here, "")), (site.spec.title, None)],
        nav=nav_entry(site), source=model_source(site.spec), accuracy=accuracy(site),
    )
    for group in groups(site.spec):
        here = paths.group_url(site.model, group)
        in_group = [(layer, rows) for layer, rows in summaries if layer.group == group]
        site.writer.write_page(
            here, "group.md.j2", title=site.spec.group_label(group), model_title=site.spec.title,
            layers=[layer_summary(site, here, layer, rows) for layer, rows in in_group],
            crumbs=site.crumbs(here, (site.spec.group_label(group), None)),
        )


def nav_entry(site: ModelSite) -> str:
    """The model's nav (its groups and their layers) for the nav plugin, as JSON in the page's front
    matter: the plugin sees only the docs folder, and a user's network has no table it could read."""
    groups_ = [[site.spec.group_label(g), g, [layer.name for layer in site.layers if layer.group == g]]
               for g in groups(site.spec)]
    return json.dumps({"title": site.spec.title, "groups": groups_}, separators=(",", ":"))


def accuracy(site: ModelSite) -> dict | None:
    """The classifier's accuracy on the labelled images, with its worst and best classes."""
    path = site.store.paths.accuracy_json
    if not path.exists():
        return None
    summary = accuracy_summary(read_json(path, "accuracy"), site.manifest.get("labels") or {})
    summary["classifier"] = (site.manifest.get("examples") or {}).get("classifier")  # its weights file
    return summary


def layer_summary(site: ModelSite, here: str, layer: Layer, rows: list[dict]) -> dict:
    """A layer's line on the model or group page: its numbers and a sample of its filters."""
    step = max(1, len(rows) // SAMPLE)
    return {
        "name": layer.name, "group": site.spec.group_label(layer.group), "filters": layer.filters,
        "receptive_field": layer.receptive_field, "rendered": len(rows),
        "dead": sum(r["dead"] for r in rows),
        "href": relative_md(here, paths.layer_url(site.model, layer.name)),
        "group_href": relative_md(here, paths.group_url(site.model, layer.group)),
        "sample": site.cells(here, layer, rows[::step][:SAMPLE]),
    }
