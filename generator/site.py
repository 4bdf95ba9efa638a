"""``atlas site``: the stored atlas -> Markdown pages (from ``templates/``) and images under ``site_src/``.

Reads only the data layout (``generator.paths``), checks that every filter the layer tables list has
its image and JSON, and writes the generated part of the MkDocs ``docs_dir``: ``site_src/vgg16/`` (model,
block, layer and filter pages, display WebPs, thumbnails, the PNG and JSON downloads), the landing
page's example strip and settings, and the Method page. Hand-written pages stay as they are.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from dataclasses import dataclass
from pathlib import Path

from generator import paths, plots
from generator.errors import AtlasError
from generator.models import ConvLayer, conv_layers
from generator.store import AtlasStore

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
DEFAULT_SITE_URL = "https://vgg16-filter-atlas.github.io/"
THUMB = 96
DISPLAY = 384
SAMPLE = 8  # filters per layer on the model and block pages
GENERATED = ("method.md", "_examples.md")  # generated files at the top of site_src


def site_url() -> str:
    """The published site's root, as mkdocs.yml reads it (ATLAS_SITE_URL, for forks)."""
    url = os.environ.get("ATLAS_SITE_URL", DEFAULT_SITE_URL)
    return url if url.endswith("/") else url + "/"


def relative(from_url: str, to_url: str) -> str:
    """Link from the page at ``from_url`` to ``to_url`` (both site-root relative directory URLs)."""
    start = "/" + from_url
    target = "/" + to_url
    rel = posixpath.relpath(target, start if start.endswith("/") else posixpath.dirname(start))
    if to_url.endswith("/") and not rel.endswith("/"):
        rel += "/"
    return "./" if rel in (".", "./") else rel


def relative_md(from_url: str, to_url: str) -> str:
    """A Markdown link between the source files of two pages, which MkDocs checks in strict mode."""
    start = posixpath.dirname(paths.source_path(from_url))
    return posixpath.relpath(paths.source_path(to_url), start or ".")


def checked_rows(store: AtlasStore, layer: ConvLayer) -> list[dict]:
    """The rows of a layer's table, after checking every listed filter has its image and JSON."""
    if not store.paths.layer_json(layer.name).exists():
        return []
    rows = store.layer_rows(layer)
    for row in rows:
        f = row["filter"]
        for path, what in ((store.paths.filter_png(layer.name, f), "image"),
                           (store.paths.filter_json(layer.name, f), "loss JSON")):
            if not path.exists():
                raise AtlasError(
                    f"{path}: missing {what} of {layer.name}:{f}; rerun `atlas generate` with the same "
                    "settings to fill it in"
                )
    return rows


@dataclass
class Cell:
    href: str
    thumb: str
    title: str
    label: str
    dead: bool


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # everything lands in HTML, Markdown pages included
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
    )


def bibtex(model: str, layer: str, filter_index: int, permalink: str, manifest: dict) -> str:
    key = f"{model}_{layer}_{filter_index}"
    year = str(manifest.get("updated", ""))[:4] or "2026"
    return (
        f"@misc{{{key},\n"
        f"  title = {{{paths.short_name(model, layer, filter_index)}: feature visualization}},\n"
        f"  author = {{{{VGG16 Filter Atlas}}}},\n"
        f"  year = {{{year}}},\n"
        f"  howpublished = {{\\url{{{permalink}}}}},\n"
        f"  note = {{weights {manifest['weights']['name']}, sha256 {manifest['weights']['sha256'][:16]}, "
        f"config {manifest['config_hash']}}}\n"
        f"}}"
    )


class SiteBuilder:
    def __init__(self, data: str | Path, out: str | Path, model: str, compare: str | Path | None = None) -> None:
        paths.safe_name("model", model)
        self.store = AtlasStore(data, model)
        self.compare = AtlasStore(compare, model) if compare else None
        if self.compare:
            self.compare.read_manifest()
        self.out = Path(out)
        self.model = model
        self.env = _environment()
        self.manifest = self.store.read_manifest()
        self.pages = 0

    # --- writing helpers ---------------------------------------------------------------------------

    def _write_page(self, url: str, template: str, **context) -> None:
        text = self.env.get_template(template).render(model=self.model, **context)
        target = self.out / paths.source_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        self.pages += 1

    def _crumbs(self, here: str, *trail: tuple[str, str | None]) -> list[tuple[str, str | None]]:
        items = [("Atlas", ""), (self.model.upper(), paths.model_url(self.model)), *trail]
        return [(label, None if url is None else relative(here, url)) for label, url in items]

    def _copy_assets(self, layer: ConvLayer, filter_index: int) -> None:
        from PIL import Image

        src_png = self.store.paths.filter_png(layer.name, filter_index)
        src_json = self.store.paths.filter_json(layer.name, filter_index)
        base = self.out
        dst = {k: base / paths.asset_url(self.model, layer.name, filter_index, k) for k in ("png", "json", "webp", "thumb")}
        if all(p.exists() and p.stat().st_mtime >= src_png.stat().st_mtime for p in dst.values()):
            return  # unchanged since the last build
        dst["png"].parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src_png, dst["png"])
        shutil.copyfile(src_json, dst["json"])
        try:
            image = Image.open(src_png).convert("RGB")
        except OSError:
            raise AtlasError(f"{src_png}: not a readable PNG; rerun `atlas generate` to redo it") from None
        image.save(dst["webp"], format="WEBP", quality=90, method=4)
        image.resize((THUMB, THUMB), Image.LANCZOS).save(dst["thumb"], format="WEBP", quality=80, method=4)

    # --- the pages ---------------------------------------------------------------------------------

    def layer_rows(self, layer: ConvLayer) -> list[dict]:
        return checked_rows(self.store, layer)

    def cells(self, here: str, layer: ConvLayer, rows: list[dict]) -> list[Cell]:
        return [
            Cell(
                href=relative(here, paths.filter_url(self.model, layer.name, r["filter"])),
                thumb=relative(here, paths.asset_url(self.model, layer.name, r["filter"], "thumb")),
                title=f"{layer.name}:{r['filter']}" + (" (dead)" if r["dead"] else ""),
                label=str(r["filter"]),
                dead=r["dead"],
            )
            for r in rows
        ]

    def build(self) -> int:
        generated = self.out / paths.model_url(self.model)
        if generated.exists():
            shutil.rmtree(generated)  # generated wholesale: no stale pages of an older atlas
        layers = conv_layers(self.model)
        all_rows = {layer.name: self.layer_rows(layer) for layer in layers}
        if not any(all_rows.values()):
            raise AtlasError(
                f"{self.store.paths.model_dir}: the atlas has no rendered filters yet; run `atlas generate`"
            )
        summaries = []
        for layer in layers:
            rows = all_rows[layer.name]
            self._layer(layer, rows)
            summaries.append((layer, rows))
        self._model(summaries)
        for block in sorted({layer.block for layer in layers}):
            self._block(block, [(layer, rows) for layer, rows in summaries if layer.block == block])
        self._examples(summaries)
        self._method()
        return self.pages

    def _layer(self, layer: ConvLayer, rows: list[dict]) -> None:
        here = paths.layer_url(self.model, layer.name)
        crumbs = self._crumbs(here, (f"Block {layer.block}", paths.block_url(self.model, layer.block)), (layer.name, None))
        self._write_page(
            here, "layer.md.j2", layer=layer, crumbs=crumbs, cells=self.cells(here, layer, rows),
            rendered=len(rows), dead=sum(r["dead"] for r in rows),
            retried=sum(r.get("retried_float32", False) for r in rows),
            hist=plots.histogram([r["final_loss"] for r in rows]) if rows else None,
        )
        for i, row in enumerate(rows):
            self._filter(layer, row["filter"], rows[i - 1]["filter"] if i else None,
                         rows[i + 1]["filter"] if i + 1 < len(rows) else None)

    def _filter(self, layer: ConvLayer, f: int, prev: int | None, nxt: int | None) -> None:
        here = paths.filter_url(self.model, layer.name, f)
        record = self.store.read_filter(layer.name, f)
        self._copy_assets(layer, f)
        permalink = site_url() + here
        short = paths.short_name(self.model, layer.name, f)
        crumbs = self._crumbs(
            here, (f"Block {layer.block}", paths.block_url(self.model, layer.block)),
            (layer.name, paths.layer_url(self.model, layer.name)), (str(f), None),
        )

        def link(other: int | None):
            if other is None:
                return None
            return {"href": relative(here, paths.filter_url(self.model, layer.name, other)), "label": f"{layer.name}:{other}"}

        self._write_page(
            here, "filter.md.j2", layer=layer, record=record, short=short, crumbs=crumbs,
            webp=relative(here, paths.asset_url(self.model, layer.name, f, "webp")),
            png=relative(here, paths.asset_url(self.model, layer.name, f, "png")),
            png_md=relative_md(here, paths.asset_url(self.model, layer.name, f, "png")),
            json_md=relative_md(here, paths.asset_url(self.model, layer.name, f, "json")),
            display=DISPLAY, plot=plots.line_plot(record.get("loss", [])), prev=link(prev), next=link(nxt),
            up=relative(here, paths.layer_url(self.model, layer.name)), permalink=permalink,
            bibtex=bibtex(self.model, layer.name, f, permalink, self.manifest),
        )

    def _layer_summary(self, here: str, layer: ConvLayer, rows: list[dict]) -> dict:
        step = max(1, len(rows) // SAMPLE)
        return {
            "name": layer.name, "block": layer.block, "filters": layer.filters,
            "receptive_field": layer.receptive_field, "rendered": len(rows),
            "dead": sum(r["dead"] for r in rows),
            "href": relative_md(here, paths.layer_url(self.model, layer.name)),
            "block_href": relative_md(here, paths.block_url(self.model, layer.block)),
            "sample": self.cells(here, layer, rows[::step][:SAMPLE]),
        }

    def _model(self, summaries) -> None:
        here = paths.model_url(self.model)
        layers = [self._layer_summary(here, layer, rows) for layer, rows in summaries]
        self._write_page(
            here, "model.md.j2", model_title=self.model.upper(), layers=layers,
            blocks=sorted({layer.block for layer, _ in summaries}),
            total_filters=sum(layer.filters for layer, _ in summaries),
            rendered_count=sum(len(rows) for _, rows in summaries),
            crumbs=[("Atlas", relative(here, "")), (self.model.upper(), None)],
        )

    def _block(self, block: int, summaries) -> None:
        here = paths.block_url(self.model, block)
        layers = [self._layer_summary(here, layer, rows) for layer, rows in summaries]
        self._write_page(
            here, "block.md.j2", block=block, layers=layers, filters=summaries[0][0].filters,
            crumbs=self._crumbs(here, (f"Block {block}", None)),
        )

    def _examples(self, summaries) -> None:
        """The landing page's strip (first filter of each block's last layer) and settings."""
        picks = []
        for block in sorted({layer.block for layer, _ in summaries}):
            in_block = [(layer, rows) for layer, rows in summaries if layer.block == block and rows]
            if in_block:
                layer, rows = in_block[-1]
                picks.extend(self.cells("", layer, rows[:2]))
        text = self.env.get_template("examples.md.j2").render(
            cells=picks, thumb=THUMB, config=self.manifest["config"], weights=self.manifest["weights"],
            config_hash=self.manifest["config_hash"],
        )
        (self.out / "_examples.md").write_text(text)

    def _method(self) -> None:
        naive = {"steps": 50, "lr": 10}
        self._write_page(
            "method.md", "method.md.j2", config=self.manifest["config"], weights=self.manifest["weights"],
            naive=naive, comparison=self._comparison(),
        )

    def _comparison(self) -> list[dict]:
        """Side-by-side rows: the ``--compare`` atlas (the original method) next to this one."""
        if self.compare is None:
            return []
        rows_out = []
        here = "method/"
        for layer in conv_layers(self.model):
            ours = {r["filter"]: r for r in self.layer_rows(layer)}
            theirs = {r["filter"]: r for r in checked_rows(self.compare, layer)}
            common = sorted(set(ours) & set(theirs))[:SAMPLE]
            if not common:
                continue
            cells_naive = []
            for f in common:
                rel = paths.asset_url(self.model, layer.name, f, "compare")
                self._compare_thumb(self.compare.paths.filter_png(layer.name, f), self.out / rel)
                cells_naive.append(Cell(relative(here, paths.filter_url(self.model, layer.name, f)),
                                        relative(here, rel), f"{layer.name}:{f} (original method)", str(f),
                                        theirs[f]["dead"]))
            rows_out.append({
                "layer": layer.name, "href": relative_md("method.md", paths.layer_url(self.model, layer.name)),
                "naive": cells_naive, "ours": self.cells(here, layer, [ours[f] for f in common]),
            })
        return rows_out

    @staticmethod
    def _compare_thumb(src: Path, target: Path) -> None:
        from PIL import Image

        image = Image.open(src).convert("RGB").resize((THUMB, THUMB), Image.LANCZOS)
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, format="WEBP", quality=80)


def stage_project(dest: Path) -> Path:
    """A copy of what ``mkdocs build`` reads (mkdocs.yml, hand-written pages, BENCHMARKS.md) in
    ``dest/project``, for builds that must not touch the working tree (tests, benchmarks)."""
    repo = TEMPLATES.parent
    project = Path(dest) / "project"
    project.mkdir(parents=True)
    shutil.copy(repo / "mkdocs.yml", project)
    shutil.copy(repo / "BENCHMARKS.md", project)
    shutil.copytree(repo / "site_src", project / "site_src",
                    ignore=shutil.ignore_patterns("vgg16", *GENERATED))
    return project


def build_site(data: str | Path, out: str | Path, model: str = "vgg16", compare: str | Path | None = None) -> int:
    """Render every page of the atlas in ``data`` into ``out``; returns the number of pages.

    ``compare``: an atlas of the same filters made with the original method, shown beside ours on the
    Method page.
    """
    return SiteBuilder(data, out, model, compare).build()
