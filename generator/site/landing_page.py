"""The landing page's model list (``_models.md``, included by the hand-written ``index.md``): one card
per model with a few of its pictures, its size and how it was rendered."""

from __future__ import annotations

from generator import paths
from generator.network.layers import groups
from generator.site.assets import THUMB
from generator.site.model_site import ModelSite, model_source, public_weights
from generator.site.templates import PageWriter
from generator.site.urls import relative_md


def write_landing(writer: PageWriter, sites: list[ModelSite]) -> None:
    """Write ``_models.md``: the cards of every model."""
    writer.write_snippet("_models.md", "models.md.j2", cards=[card(site) for site in sites], thumb=THUMB)


def card(site: ModelSite) -> dict:
    """One model's card: two filters of the last rendered layer of each group, and the model's facts."""
    picks = []
    for group in groups(site.spec):
        in_group = [layer for layer in site.layers if layer.group == group and site.rows[layer.name]]
        if in_group:
            layer = in_group[-1]
            picks.extend(site.cells("", layer, site.sorted_rows(layer)[:2]))
    return {
        "title": site.spec.title, "about": site.spec.about, "source": model_source(site.spec),
        "href": relative_md("index.md", paths.model_url(site.model)), "cells": picks[:12],
        "layers": len(site.layers), "filters": sum(layer.filters for layer in site.layers),
        "rendered": sum(len(r) for r in site.rows.values()), "config": site.manifest["config"],
        "weights": public_weights(site.manifest), "config_hash": site.config_hash,
    }
