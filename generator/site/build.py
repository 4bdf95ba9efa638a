"""``atlas site``: the build, from the stored atlas to the generated part of ``site_src/``.

For each model: every layer's filter pages and then its layer page, then the model's and its groups'
pages; then the landing page's model list and the Method page, all into the staging folder, which is
swapped in when complete (``staging``). The pages are in their own modules; this one only says in
which order they are written, because the layer table needs its filters' trust scores and the Method
page every layer's means.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from generator.atlas.store import AtlasStore, atlas_models
from generator.errors import AtlasError
from generator.network.modelfile import spec_from_manifest
from generator.network.zoo import MODELS, ModelSpec
from generator.site.filter_page import read_wiring, write_filter_page
from generator.site.landing_page import write_landing
from generator.site.layer_page import write_layer_page
from generator.site.method_page import write_method_page
from generator.site.model_pages import write_model_pages
from generator.site.model_site import ModelSite
from generator.site.nav import write_nav
from generator.site.offsite import UPLOAD, assets_address, move_offsite
from generator.site.staging import MARKER, STAGING, swap_in
from generator.site.templates import PageWriter


def build_site(data: str | Path, out: str | Path, compare: str | Path | None = None,
               assets_url: str | None = None, assets_dir: str | Path | None = None,
               models: list[str] | None = None) -> int:
    """Render every page of every model of the atlas in ``data`` into ``out``; returns the number of
    pages. ``compare``: an atlas of the same filters made with the original method, shown beside ours
    on the Method page. ``assets_url``: the pictures are served from there, named by their content,
    and go into ``assets_dir`` (default: ``site-assets`` beside ``out``) to upload (``offsite``).
    ``models``: only these models of the atlas (each model its own site)."""
    data, out = Path(data), Path(out)
    compare = Path(compare) if compare else None
    base = assets_address(assets_url) if assets_url else None
    upload = Path(assets_dir) if assets_dir else out.parent / UPLOAD
    if base and upload.resolve().is_relative_to(out.resolve()):
        raise AtlasError(f"--assets-dir {upload}: inside --out {out}, so the pictures would be published with the "
                         "pages; choose a folder outside it")
    held = atlas_models(data)
    if not held:
        raise AtlasError(f"{data}: no atlas here; run `atlas generate --out {data}` first")
    for model in models or []:
        if model not in held:
            raise AtlasError(f"--models {model}: not in the atlas {data} (it holds {', '.join(held)})")
    models = [m for m in held if m in models] if models else held
    specs = [network_of(data, model) for model in models]
    staging = out / STAGING
    writer = PageWriter(staging)
    if staging.exists():
        shutil.rmtree(staging)  # left by a failed build
    staging.mkdir(parents=True)
    try:
        sites = [ModelSite(writer, data, out, spec, compare, upload) for spec in specs]
        for site in sites:
            build_model(site)
        write_landing(writer, sites)
        write_method_page(writer, sites)
        if base:
            move_offsite(staging, models, upload, base)
        swap_in(staging, out, models)
        write_nav(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return writer.pages


def network_of(data: Path, model: str) -> ModelSpec:
    """The network of the model folder ``model``: one of the zoo, or a user's, read from its manifest."""
    if model in MODELS:
        return MODELS[model]
    return spec_from_manifest(model, AtlasStore(data, model).read_manifest())


def build_model(site: ModelSite) -> None:
    """One model's pages: each layer's filter pages and then the layer page, then the model and group pages."""
    folder = site.writer.root / site.model
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".gitignore").write_text(MARKER)
    for layer in site.layers:
        rows = site.sorted_rows(layer)
        wiring = read_wiring(site, layer)
        trusted = {}
        for i, row in enumerate(rows):
            prev = rows[i - 1]["filter"] if i else None
            nxt = rows[i + 1]["filter"] if i + 1 < len(rows) else None
            trusted[row["filter"]] = write_filter_page(site, layer, row, prev, nxt, wiring)
        write_layer_page(site, layer, rows, trusted)
    write_model_pages(site)
    site.assets.save()
