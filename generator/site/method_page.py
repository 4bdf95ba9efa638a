"""The Method page (``/method/``): how each model was rendered, the original method's pictures beside
ours for the same filters (``atlas site --compare``), and each layer's mean trust scores."""

from __future__ import annotations

from generator import paths
from generator.site import trust_pages
from generator.site.assets import THUMB, webp
from generator.site.model_site import SAMPLE, Cell, ModelSite, public_weights
from generator.site.templates import PageWriter
from generator.site.urls import relative, relative_md


def write_method_page(writer: PageWriter, sites: list[ModelSite]) -> None:
    """Write ``method.md`` from every model (after their layer pages, which gather the trust means)."""
    writer.write_page("method.md", "method.md.j2", sites=[method_context(site) for site in sites])


def method_context(site: ModelSite) -> dict:
    """One model's part of the Method page; makes the comparison's thumbnails."""
    comparison, naive = [], None
    if site.compare is not None:
        manifest = site.compare.read_manifest()
        naive, naive_hash = manifest.get("config"), manifest.get("config_hash")
        here = "method/"
        for layer in site.layers:
            ours = site.rows[layer.name]
            theirs = site.compare.rows(layer, naive_hash)
            common = sorted(set(ours) & set(theirs))[:SAMPLE]
            if not common:
                continue
            cells_naive = []
            for f in common:
                url = site.asset(layer.name, f, "compare")
                src = site.compare.paths.filter_png(layer.name, f)
                site.make(url, [src], webp(src, 80, THUMB))
                cells_naive.append(Cell(relative(here, paths.filter_url(site.model, layer.name, f)),
                                        relative(here, url), f"{layer.name}:{f} (original method)", str(f),
                                        theirs[f]["dead"],
                                        alt=f"{site.spec.short_name(layer.name, f)}, channel view by the original method"))
            comparison.append({
                "layer": layer.name, "href": relative_md("method.md", paths.layer_url(site.model, layer.name)),
                "naive": cells_naive, "ours": site.cells(here, layer, [ours[f] for f in common]),
            })
        site.assets.save()
    trust = [{"layer": name, "href": relative_md("method.md", paths.layer_url(site.model, name)),
              "filters": means["filters"], "cells": trust_pages.means_cells(means)}
             for name, means in site.trust_means.items()]
    return {"title": site.spec.title, "config": site.manifest["config"], "weights": public_weights(site.manifest),
            "naive": naive, "comparison": comparison, "trust": trust}
