"""A layer's page (``/vgg16/block3_conv3/``): the grid of its filters (and of their strongest dataset
examples), its loss histogram, and the table of its pictures' trust scores."""

from __future__ import annotations

from generator import paths
from generator.network.layers import Layer
from generator.site import plots, trust_pages
from generator.site.model_site import ModelSite
from generator.site.urls import relative, relative_md


def write_layer_page(site: ModelSite, layer: Layer, rows: list[dict], trusted: dict[int, dict | None]) -> None:
    """Write the page of ``layer`` from its rows (filter order) and its filters' trust summaries."""
    here = paths.layer_url(site.model, layer.name)
    has_examples = any(site.store.paths.examples_sprite(layer.name, r["filter"]).exists() for r in rows)
    pair_cells = site.cells(here, layer, rows, True) if has_examples else []
    # the field view (early layers): each filter's pattern at its own scale, the pictures shown pixelated
    field_cells = site.cells(here, layer, rows, view="field") if any("field" in r.get("views", []) for r in rows) else []
    site.writer.write_page(
        here, "layer.md.j2", layer=layer, title=site.spec.title,
        crumbs=site.crumbs(here, site.group_crumb(layer), (layer.name, None)),
        cells=site.cells(here, layer, rows), pair_cells=pair_cells, has_classes=any(c.caption for c in pair_cells),
        field_cells=field_cells,
        rendered=len(rows), dead=sum(r["dead"] for r in rows),
        retried=sum(r.get("retried_float32", False) for r in rows),
        tap=layer.tap if not layer.fused else None,
        hist=plots.histogram([r["final_loss"] for r in rows]) if rows else None,
        examples=site.examples, trust=trust_table(site, layer, here, trusted),
    )


def trust_table(site: ModelSite, layer: Layer, here: str, trusted: dict[int, dict | None]) -> dict | None:
    """The layer page's table of its pictures' trust scores, and the layer's means (kept for the Method page)."""
    from generator.atlas.records import trust_means

    scored = {f: s for f, s in trusted.items() if s}
    if not scored:
        return None
    means = trust_means([{"trust": s} for s in scored.values()])["trust"]
    site.trust_means[layer.name] = means
    rows = [trust_pages.table_row(f, relative(here, paths.filter_url(site.model, layer.name, f)),
                                  relative(here, site.asset(layer.name, f, "thumb")), s)
            for f, s in scored.items()]
    return {"rows": trust_pages.sort_rows(rows), "columns": trust_pages.COLUMNS, "count": len(scored),
            "means": trust_pages.means_text(means), "method_href": relative_md(here, "method.md")}
