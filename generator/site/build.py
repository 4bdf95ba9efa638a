"""``atlas site``: the stored atlas -> Markdown pages (from ``templates/``) and images under ``site_src/``.

Reads only the data layout (``generator.paths``), and writes the generated part of the MkDocs
``docs_dir``: one folder per model (model, block or stage, layer and filter pages, display WebPs,
thumbnails, dataset-example sprites, the JSON downloads), the landing page's model list and the Method
page. Hand-written pages stay as they are.

Everything is built into a staging folder (``site_src/.atlas-new``, hidden from MkDocs) and swapped
in when complete, so a failed build leaves the last good pages; display files whose source has not
changed (same size and modification time) are taken over from the last build instead of re-encoded.

A user's own network (a model file) is shown like the zoo's, from what its manifest stores; its folder
is named by its ``--name``, so every generated model folder carries a ``.gitignore`` marker (``MARKER``)
by which the next build, ``stage_project``, git and ``make clean`` know it as generated.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from generator import paths
from generator.site import plots
from generator.site import trust_pages
from generator.errors import AtlasError
from generator.site.escape import bibtex_text, fenced_code, markdown_text
from generator.network.layers import Layer, groups, model_layers
from generator.cluster.shard_store import check_merged
from generator.atlas.files import read_json, read_json_or_none
from generator.atlas.store import AtlasStore, atlas_models, weights_name
from generator.render.views import VIEWS
from generator.network.zoo import MODELS, model_spec

MARKER = "# written by atlas site: this folder is generated, and git ignores all of it\n*\n"

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
DEFAULT_SITE_URL = "https://vgg16-filter-atlas.github.io/"
THUMB = 96
DISPLAY = 320  # the picture beside its facts table; the lightbox shows it larger
SAMPLE = 8  # filters per layer on the model and group pages
GENERATED = ("method.md", "_models.md")  # generated files at the top of site_src
STAGING = ".atlas-new"
CACHE = ".assets.json"
# Display pictures are AVIF with full-resolution colour (4:4:4): WebP halves the colour resolution, which
# smears the one-pixel colour patterns of early layers (PSNR 21 dB at WebP quality 90, 25 dB here at a
# smaller file). The channel picture at quality 70; the six other views of a filter smaller at 60.
CHANNEL_QUALITY = 70
OTHER_VIEWS_QUALITY = 60
AVIF_SPEED = 9  # 3 ms a picture on a CPU core, like WebP; speed 8 is 5x slower for 4% smaller files
# The addresses the pages link (permalinks, downloads): http(s) only, and nothing that could end a
# Markdown link or autolink or an HTML attribute early.
WEB_ADDRESS = re.compile(r"^https?://[^\s<>\"'`()\[\]{}|\\^]+$")


def _address(variable: str, url: str) -> str:
    if not WEB_ADDRESS.match(url):
        raise AtlasError(f"{variable}={url!r}: give an http:// or https:// address without spaces, quotes, "
                         "brackets or angle brackets")
    return url if url.endswith("/") else url + "/"


def site_url() -> str:
    """The published site's root, as mkdocs.yml reads it (ATLAS_SITE_URL, for forks)."""
    return _address("ATLAS_SITE_URL", os.environ.get("ATLAS_SITE_URL", DEFAULT_SITE_URL))


def downloads_url() -> str | None:
    """Where the atlas's lossless files are served, mirroring the data layout (ATLAS_DOWNLOADS_URL);
    None: the pages point to the atlas data instead (the site carries display WebPs only)."""
    url = os.environ.get("ATLAS_DOWNLOADS_URL", "").strip()
    return _address("ATLAS_DOWNLOADS_URL", url) if url else None


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


@dataclass
class Cell:
    href: str | None
    thumb: str | None
    title: str
    label: str
    dead: bool = False
    extra: str | None = None  # a second picture beside the first (the top dataset example)
    alt: str | None = None  # the picture's text when shorter than the title
    caption: str | None = None  # a user-given text under the label (the top class), shown as literal text


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # everything lands in HTML, Markdown pages included
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    env.filters["text"] = markdown_text  # every user-given string: literal text, not Markdown
    return env


def public_weights(manifest: dict) -> dict:
    """The weights as the pages name them: the source or file name (an older manifest may hold a local
    path, which is nobody's business) and the sha256."""
    weights = manifest.get("weights") or {}
    return {"name": weights_name(str(weights.get("name", ""))), "sha256": str(weights.get("sha256", ""))}


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


class AssetCache:
    """Display files of the last build, taken over when their source is unchanged."""

    def __init__(self, old_root: Path, new_root: Path) -> None:
        self.old_root, self.new_root = old_root, new_root
        try:
            self.old = json.loads((old_root / CACHE).read_text())
        except (OSError, ValueError):
            self.old = {}
        self.new: dict[str, list] = {}
        self.reused = self.made = 0

    def make(self, rel: str, sources: list[Path], build: Callable[[Path], None]) -> None:
        """Put the file ``rel`` (relative to the model folder) into the new build: linked from the old
        build if ``sources`` are as they were, else made by ``build(path)``."""
        key = [[s.name, s.stat().st_size, s.stat().st_mtime_ns] for s in sources]
        old, new = self.old_root / rel, self.new_root / rel
        new.parent.mkdir(parents=True, exist_ok=True)
        if self.old.get(rel) == key and old.is_file():
            try:
                os.link(old, new)
            except OSError:
                shutil.copyfile(old, new)
            self.reused += 1
        else:
            build(new)
            self.made += 1
        self.new[rel] = key

    def save(self) -> None:
        (self.new_root / CACHE).write_text(json.dumps(self.new, separators=(",", ":")))


def _open_rgb(src: Path):
    """A stored picture as RGB, or one line naming the file and the command that rewrites it."""
    from PIL import Image

    try:
        return Image.open(src).convert("RGB")
    except OSError:
        raise AtlasError(f"{src}: not a readable image; rerun the command that wrote it") from None


def _webp(src: Path, quality: int, side: int | None = None) -> Callable[[Path], None]:
    def build(target: Path) -> None:
        from PIL import Image

        image = _open_rgb(src)
        if side:
            image = image.resize((side, side), Image.LANCZOS)
        image.save(target, format="WEBP", quality=quality, method=4)

    return build


def _avif(src: Path, quality: int) -> Callable[[Path], None]:
    def build(target: Path) -> None:
        from PIL import features

        if not features.check("avif"):
            raise AtlasError("this Pillow has no AVIF encoder for the display pictures; pip install 'pillow>=11.3'")
        _open_rgb(src).save(target, format="AVIF", quality=quality, subsampling="4:4:4", speed=AVIF_SPEED, max_threads=1)

    return build


def _copy(src: Path) -> Callable[[Path], None]:
    return lambda target: shutil.copyfile(src, target)


def _crop_first(src: Path, cell: int) -> Callable[[Path], None]:
    def build(target: Path) -> None:
        from PIL import Image

        Image.open(src).convert("RGB").crop((0, 0, cell, cell)).save(target, format="WEBP", quality=80)

    return build


class SiteBuilder:
    """All models of an atlas folder (or the ones named) -> pages under ``out``."""

    def __init__(self, data: str | Path, out: str | Path, compare: str | Path | None = None) -> None:
        self.data = Path(data)
        self.out = Path(out)
        self.compare = Path(compare) if compare else None
        self.models = atlas_models(self.data)
        if not self.models:
            raise AtlasError(f"{self.data}: no atlas here; run `atlas generate --out {self.data}` first")
        for model in self.models:
            if model not in MODELS:  # a user's network, known from its manifest
                from generator.network.modelfile import register_from_manifest

                register_from_manifest(model, AtlasStore(self.data, model).read_manifest())
        self.env = _environment()
        self.staging = self.out / STAGING
        self.pages = 0

    def write_page(self, url: str, template: str, **context) -> None:
        text = self.env.get_template(template).render(**context)
        target = self.staging / paths.source_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        self.pages += 1

    def build(self) -> int:
        if self.staging.exists():
            shutil.rmtree(self.staging)  # left by a failed build
        self.staging.mkdir(parents=True)
        try:
            sites = [ModelSite(self, model) for model in self.models]
            for site in sites:
                site.build()
            self._landing(sites)
            self._method(sites)
            self._swap()
        finally:
            if self.staging.exists():
                shutil.rmtree(self.staging)
        return self.pages

    def _swap(self) -> None:
        """Put the new pages in place of the old ones, model by model, then the top files."""
        trash = self.staging / ".old"
        trash.mkdir()
        for model in dict.fromkeys([*MODELS, *generated_folders(self.out), *self.models]):  # a model no longer in the atlas loses its pages too
            current = self.out / model
            if current.exists():
                current.rename(trash / model)
            if model in self.models:
                (self.staging / model).rename(current)
        for name in GENERATED:
            os.replace(self.staging / name, self.out / name)

    def _landing(self, sites: list["ModelSite"]) -> None:
        cards = [site.card() for site in sites]
        text = self.env.get_template("models.md.j2").render(cards=cards, thumb=THUMB)
        (self.staging / "_models.md").write_text(text)

    def _method(self, sites: list["ModelSite"]) -> None:
        self.write_page("method.md", "method.md.j2", sites=[site.method_context() for site in sites])


class ModelSite:
    """The pages of one model."""

    def __init__(self, builder: SiteBuilder, model: str) -> None:
        self.builder = builder
        self.model = model
        self.spec = model_spec(model)
        self.store = AtlasStore(builder.data, model)
        self.manifest = self.store.read_manifest()
        check_merged(self.store)  # a sharded job's tables are whole only once merged
        if "config_hash" not in self.manifest:
            flag = model if self.spec.zoo else f"PATH.keras --name {model}"
            raise AtlasError(f"{self.store.paths.manifest}: the atlas has no pictures yet; run `atlas generate "
                             f"--model {flag} --out {builder.data}`")
        self.config_hash = self.manifest["config_hash"]
        self.layers = model_layers(model)
        self.rows = {layer.name: self.checked_rows(layer) for layer in self.layers}
        if not any(self.rows.values()):
            raise AtlasError(f"{self.store.paths.model_dir}: the atlas has no rendered filters yet; run `atlas generate`")
        self.assets = AssetCache(builder.out / model, builder.staging / model)
        self.trust_means: dict[str, dict] = {}  # layer -> means of its pictures' trust scores (Method page)
        self.examples = (self.manifest.get("examples") or {}).get("images")  # the image set: name, licence, count
        compare = AtlasStore(builder.compare, model) if builder.compare else None
        self.compare = compare if compare and compare.paths.manifest.exists() else None

    def checked_rows(self, layer: Layer) -> dict[int, dict]:
        """The filters whose files are on disk (the truth, even if a crash left ``layer.json`` behind);
        a filter the table lists whose files are gone is an error, not a silent gap."""
        rows = self.store.rows(layer, self.config_hash)
        if self.store.paths.layer_json(layer.name).exists():
            for row in self.store.layer_rows(layer):
                f = row["filter"]
                if f in rows:
                    continue
                for path, what in ((self.store.paths.filter_png(layer.name, f), "image"),
                                   (self.store.paths.filter_json(layer.name, f), "loss JSON")):
                    if not path.exists():
                        raise AtlasError(f"{path}: missing {what} of {layer.name}:{f}; rerun `atlas generate` with "
                                         "the same settings to fill it in")
                json_path = self.store.paths.filter_json(layer.name, f)
                if read_json_or_none(json_path) is None:
                    raise AtlasError(f"{json_path}: unreadable loss JSON of {layer.name}:{f}; rerun `atlas generate` "
                                     "with the same settings to render it again")
        return rows

    # --- small helpers ------------------------------------------------------------------------------

    def asset(self, layer: str, f: int, kind: str) -> str:
        return paths.asset_url(self.model, layer, f, kind)

    def make(self, url: str, sources: list[Path], build: Callable[[Path], None]) -> None:
        self.assets.make(url[len(self.model) + 1:], sources, build)

    def crumbs(self, here: str, *trail: tuple[str, str | None]) -> list[tuple[str, str | None]]:
        items = [("Atlas", ""), (self.spec.title, paths.model_url(self.model)), *trail]
        return [(label, None if url is None else relative(here, url)) for label, url in items]

    def group_crumb(self, layer: Layer) -> tuple[str, str]:
        return self.spec.group_label(layer.group), paths.group_url(self.model, layer.group)

    def cells(self, here: str, layer: Layer, rows: list[dict], with_top: bool = False) -> list[Cell]:
        out = []
        for r in rows:
            f = r["filter"]
            top = caption = None
            title = f"{layer.name}:{f}" + (" (dead)" if r["dead"] else "")
            if with_top and self.store.paths.examples_sprite(layer.name, f).exists():
                top = relative(here, self.asset(layer.name, f, "top1"))
                first = top_class(self.store.paths.examples_json(layer.name, f))
                if first:
                    caption = class_display(first["class"], short=True)
                    title += (f", top class {class_display(first['class'])}: {first['count']} of its top examples "
                              f"({first['share']:.0%}; {first['base']:.0%} of the images)")
            out.append(Cell(
                href=relative(here, paths.filter_url(self.model, layer.name, f)),
                thumb=relative(here, self.asset(layer.name, f, "thumb")),
                title=title, label=str(f), dead=r["dead"], extra=top, caption=caption,
            ))
        return out

    # --- the pages ------------------------------------------------------------------------------------

    def build(self) -> None:
        b = self.builder
        (b.staging / self.model).mkdir(parents=True, exist_ok=True)
        (b.staging / self.model / ".gitignore").write_text(MARKER)
        for layer in self.layers:
            self.layer_page(layer)
        summaries = [(layer, [self.rows[layer.name][f] for f in sorted(self.rows[layer.name])]) for layer in self.layers]
        here = paths.model_url(self.model)
        b.write_page(
            here, "model.md.j2", title=self.spec.title, about=self.spec.about,
            layers=[self.layer_summary(here, layer, rows) for layer, rows in summaries],
            groups=[(self.spec.group_label(g), relative_md(here, paths.group_url(self.model, g)))
                    for g in groups(self.model)],
            total_filters=sum(layer.filters for layer in self.layers),
            rendered_count=sum(len(rows) for _, rows in summaries),
            crumbs=[("Atlas", relative(here, "")), (self.spec.title, None)],
            nav=self.nav_entry(), source=model_source(self.spec), accuracy=self.accuracy(),
        )
        for group in groups(self.model):
            here = paths.group_url(self.model, group)
            in_group = [(layer, rows) for layer, rows in summaries if layer.group == group]
            b.write_page(
                here, "group.md.j2", title=self.spec.group_label(group), model_title=self.spec.title,
                layers=[self.layer_summary(here, layer, rows) for layer, rows in in_group],
                crumbs=self.crumbs(here, (self.spec.group_label(group), None)),
            )
        self.assets.save()

    def nav_entry(self) -> str:
        """The model's nav (its groups and their layers) for the nav plugin, as JSON in the page's front
        matter: the plugin sees only the docs folder, and a user's network has no table it could read."""
        groups_ = [[self.spec.group_label(g), g, [layer.name for layer in self.layers if layer.group == g]]
                   for g in groups(self.model)]
        return json.dumps({"title": self.spec.title, "groups": groups_}, separators=(",", ":"))

    def accuracy(self) -> dict | None:
        """The classifier's accuracy on the labelled images, with its worst and best classes."""
        path = self.store.paths.accuracy_json
        if not path.exists():
            return None
        return accuracy_summary(read_json(path, "accuracy"), self.manifest.get("labels") or {})

    def layer_summary(self, here: str, layer: Layer, rows: list[dict]) -> dict:
        step = max(1, len(rows) // SAMPLE)
        return {
            "name": layer.name, "group": self.spec.group_label(layer.group), "filters": layer.filters,
            "receptive_field": layer.receptive_field, "rendered": len(rows),
            "dead": sum(r["dead"] for r in rows),
            "href": relative_md(here, paths.layer_url(self.model, layer.name)),
            "group_href": relative_md(here, paths.group_url(self.model, layer.group)),
            "sample": self.cells(here, layer, rows[::step][:SAMPLE]),
        }

    def layer_page(self, layer: Layer) -> None:
        rows = [self.rows[layer.name][f] for f in sorted(self.rows[layer.name])]
        here = paths.layer_url(self.model, layer.name)
        wiring = self._wiring(layer)
        trusted = {}
        for i, row in enumerate(rows):
            trusted[row["filter"]] = self.filter_page(layer, row, rows[i - 1]["filter"] if i else None,
                                                      rows[i + 1]["filter"] if i + 1 < len(rows) else None, wiring)
        has_examples = any(self.store.paths.examples_sprite(layer.name, r["filter"]).exists() for r in rows)
        pair_cells = self.cells(here, layer, rows, True) if has_examples else []
        self.builder.write_page(
            here, "layer.md.j2", layer=layer, title=self.spec.title,
            crumbs=self.crumbs(here, self.group_crumb(layer), (layer.name, None)),
            cells=self.cells(here, layer, rows), pair_cells=pair_cells, has_classes=any(c.caption for c in pair_cells),
            rendered=len(rows), dead=sum(r["dead"] for r in rows),
            retried=sum(r.get("retried_float32", False) for r in rows),
            tap=layer.tap if not layer.fused else None,
            hist=plots.histogram([r["final_loss"] for r in rows]) if rows else None,
            examples=self.examples, trust=self._trust_table(layer, here, trusted),
        )

    def filter_page(self, layer: Layer, row: dict, prev: int | None, nxt: int | None, wiring: dict) -> dict | None:
        """Write the filter's page; return its trust summary (None if it has no current trust scores)."""
        f = row["filter"]
        here = paths.filter_url(self.model, layer.name, f)
        record = self.store.read_filter(layer.name, f)
        sp = self.store.paths
        self.make(self.asset(layer.name, f, "thumb"), [sp.filter_png(layer.name, f)], _webp(sp.filter_png(layer.name, f), 80, THUMB))
        views = []
        for name in row.get("views", ["channel"]):
            view = VIEWS[name]
            entry = record if name == "channel" else record["views"][name]
            pictures = []
            for suffix in view.suffixes():
                src = sp.filter_png(layer.name, f, suffix)
                url = self.asset(layer.name, f, "display" if name == "channel" else f"view:{suffix}")
                self.make(url, [src], _avif(src, CHANNEL_QUALITY if name == "channel" else OTHER_VIEWS_QUALITY))
                pictures.append(relative(here, url))
            views.append({
                "name": name, "title": view.title, "what": view.what, "pictures": pictures,
                "plot": plots.line_plot(entry.get("loss", [])), "numbers": _numbers(name, entry),
            })
        permalink = site_url() + here
        short = self.spec.short_name(layer.name, f)

        def link(other: int | None):
            if other is None:
                return None
            return {"href": relative(here, paths.filter_url(self.model, layer.name, other)), "label": f"{layer.name}:{other}"}

        downloads = downloads_url()
        trust = trust_pages.current_trust(record, self.manifest)
        self.builder.write_page(
            here, "filter.md.j2", layer=layer, record=record, short=short, model=self.model,
            crumbs=self.crumbs(here, self.group_crumb(layer), (layer.name, paths.layer_url(self.model, layer.name)), (str(f), None)),
            views=views, display=DISPLAY,
            downloads=f"{downloads}{self.model}/{layer.name}/{paths.filter_stem(f)}" if downloads else None,
            data_path=f"atlas/{self.model}/{layer.name}/{paths.filter_stem(f)}",
            prev=link(prev), next=link(nxt), up=relative(here, paths.layer_url(self.model, layer.name)),
            permalink=permalink,
            bibtex=fenced_code(bibtex(self.spec.title, self.model, layer.name, f, permalink, self.manifest), "bibtex"),
            examples=self._examples(layer, f, here, record), examples_set=self.examples,
            wiring=self._filter_wiring(layer, f, here, wiring), classes=self._classes(layer, f),
            model_flag=self.model if self.spec.zoo else f"PATH.keras --name {self.model}",
            trust=trust_pages.filter_row(trust) if trust else None, method_href=relative_md(here, "method.md"),
        )
        return trust["summary"] if trust else None

    def _classes(self, layer: Layer, f: int) -> dict | None:
        path = self.store.paths.examples_json(layer.name, f)
        if not path.exists():
            return None
        return filter_classes(read_json(path, f"dataset examples of {layer.name}:{f}").get("classes"))

    # --- evidence: dataset examples and wiring ----------------------------------------------------------

    def _examples(self, layer: Layer, f: int, here: str, record: dict) -> dict | None:
        sp = self.store.paths
        src_json, sprite = sp.examples_json(layer.name, f), sp.examples_sprite(layer.name, f)
        if not (src_json.exists() and sprite.exists()):
            return None
        data = read_json(src_json, f"dataset examples of {layer.name}:{f}")
        url = self.asset(layer.name, f, "examples")
        self.make(url, [sprite], _copy(sprite))
        cell = data["sprite"]["cell"]
        self.make(self.asset(layer.name, f, "top1"), [sprite], _crop_first(sprite, cell))

        def crops(kind: str, row: int) -> list[dict]:
            return [{"x": -i * cell, "y": -row * cell, "value": e["value"], "image": e["image"],
                     "title": f"{e['image']} at ({e['y']}, {e['x']}): {e['value']:.4g}"}
                    for i, e in enumerate(data[kind])]

        picture = record.get("pre_relu_max")
        strongest = data["top"][0]["value"] if data["top"] else None
        hist = data["histogram"]
        marks = [(picture, "this picture")] if picture is not None else []
        ratio = picture / strongest if picture is not None and strongest and strongest > 0 else None
        return {
            "sprite": relative(here, url), "cell": cell, "sprite_width": cell * len(data["top"]),
            "sprite_height": cell * 2, "top": crops("top", 0), "bottom": crops("bottom", 1),
            "plot": plots.distribution(hist["edges"], hist["counts"], marks), "ratio": ratio,
            "strongest": strongest, "picture": picture, "count": sum(hist["counts"]),
        }

    def _wiring(self, layer: Layer) -> dict:
        path = self.store.paths.wiring_json(layer.name)
        return read_json(path, f"wiring of {layer.name}") if path.exists() else {}

    def _filter_wiring(self, layer: Layer, f: int, here: str, wiring: dict) -> dict | None:
        entry = wiring.get("filters", {}).get(str(f))
        if entry is None:
            return None
        labels = {"excite": "Strongest positive inputs", "inhibit": "Strongest negative inputs",
                  "excites": "Excites most", "inhibits": "Inhibits most"}
        rows = []
        for key, label in labels.items():
            items = entry.get(key) or []
            if not items:
                continue
            cells = []
            for item in items:
                other, g = item["layer"], item["filter"]
                rendered = g in self.rows.get(other, {})
                cells.append(Cell(
                    href=relative(here, paths.filter_url(self.model, other, g)) if rendered else None,
                    thumb=relative(here, self.asset(other, g, "thumb")) if rendered else None,
                    title=f"{other}:{g}, weight {item['weight']:.3g}" + ("" if rendered else " (not rendered in this atlas)"),
                    label=f"{item['weight']:+.2g}", alt=f"{other}:{g}",
                ))
            rows.append({"label": label, "cells": cells, "layer": items[0]["layer"]})
        kernel = entry.get("kernel")
        return {"rows": rows, "kernel": plots.kernel_image(kernel) if kernel else None,
                "rule": wiring.get("rule", "")}

    def _trust_table(self, layer: Layer, here: str, trusted: dict[int, dict | None]) -> dict | None:
        """The layer page's table of its pictures' trust scores, and the layer's means."""
        from generator.atlas.records import trust_means

        scored = {f: s for f, s in trusted.items() if s}
        if not scored:
            return None
        means = trust_means([{"trust": s} for s in scored.values()])["trust"]
        self.trust_means[layer.name] = means
        rows = [trust_pages.table_row(f, relative(here, paths.filter_url(self.model, layer.name, f)),
                                      relative(here, self.asset(layer.name, f, "thumb")), s)
                for f, s in scored.items()]
        return {"rows": trust_pages.sort_rows(rows), "columns": trust_pages.COLUMNS, "count": len(scored),
                "means": trust_pages.means_text(means), "method_href": relative_md(here, "method.md")}

    # --- for the landing and Method pages ------------------------------------------------------------------

    def card(self) -> dict:
        picks = []
        for group in groups(self.model):
            in_group = [layer for layer in self.layers if layer.group == group and self.rows[layer.name]]
            if in_group:
                layer = in_group[-1]
                rows = [self.rows[layer.name][f] for f in sorted(self.rows[layer.name])][:2]
                picks.extend(self.cells("", layer, rows))
        return {
            "title": self.spec.title, "about": self.spec.about, "source": model_source(self.spec),
            "href": relative_md("index.md", paths.model_url(self.model)), "cells": picks[:12],
            "layers": len(self.layers), "filters": sum(layer.filters for layer in self.layers),
            "rendered": sum(len(r) for r in self.rows.values()), "config": self.manifest["config"],
            "weights": public_weights(self.manifest), "config_hash": self.config_hash,
        }

    def method_context(self) -> dict:
        comparison, naive = [], None
        if self.compare is not None:
            manifest = self.compare.read_manifest()
            naive, naive_hash = manifest.get("config"), manifest.get("config_hash")
            here = "method/"
            for layer in self.layers:
                ours = self.rows[layer.name]
                theirs = self.compare.rows(layer, naive_hash)
                common = sorted(set(ours) & set(theirs))[:SAMPLE]
                if not common:
                    continue
                cells_naive = []
                for f in common:
                    url = self.asset(layer.name, f, "compare")
                    src = self.compare.paths.filter_png(layer.name, f)
                    self.make(url, [src], _webp(src, 80, THUMB))
                    cells_naive.append(Cell(relative(here, paths.filter_url(self.model, layer.name, f)),
                                            relative(here, url), f"{layer.name}:{f} (original method)", str(f),
                                            theirs[f]["dead"]))
                comparison.append({
                    "layer": layer.name, "href": relative_md("method.md", paths.layer_url(self.model, layer.name)),
                    "naive": cells_naive, "ours": self.cells(here, layer, [ours[f] for f in common]),
                })
            self.assets.save()
        trust = [{"layer": name, "href": relative_md("method.md", paths.layer_url(self.model, name)),
                  "filters": means["filters"], "cells": trust_pages.means_cells(means)}
                 for name, means in self.trust_means.items()]
        return {"title": self.spec.title, "config": self.manifest["config"], "weights": public_weights(self.manifest),
                "naive": naive, "comparison": comparison, "trust": trust}


# --- classes and accuracy: pure functions from the stored records to what the pages show ---------------------


def class_display(name: str, short: bool = False) -> str:
    """A class as pages name it: an ImageNet synset id with its name (``tench (n01440764)``, or
    ``tench`` where space is short), any other class as it is."""
    from generator.evidence.labels import SYNSET, imagenet_classes

    if SYNSET.match(name):
        names = {c.synset: c.name for c in imagenet_classes()}
        if name in names:
            return names[name] if short else f"{names[name]} ({name})"
    return name


def top_class(examples_json: Path) -> dict | None:
    """The first class of a filter's top examples, or None (no labels)."""
    if not examples_json.exists():
        return None
    rows = (read_json(examples_json, "dataset examples").get("classes") or {}).get("top") or []
    return rows[0] if rows else None


def filter_classes(record: dict | None) -> dict | None:
    """The classes row of a filter page: its top examples' classes against the image set, its votes."""
    if not record:
        return None

    def vote(entry: dict) -> dict:
        return {"name": class_display(entry["class"]), "value": f"{entry['value']:+.3g}"}

    rows = [{"name": class_display(r["class"]), "count": r["count"], "share": f"{r['share']:.0%}",
             "base": f"{r['base']:.1%}", "lift": f"{r['lift']:.2g}×" if r.get("lift") else "–",
             "p": f"{r['p']:.2g}"} for r in record.get("top", [])]
    return {"examples": record.get("examples", 0), "labelled": record.get("labelled", 0), "rows": rows,
            "votes": [vote(v) for v in record.get("votes", []) if v["value"] > 0],
            "against": [vote(v) for v in record.get("against", [])],
            "has_votes": "votes" in record}


def accuracy_summary(data: dict, labels: dict, shown: int = 5) -> dict:
    """The model page's accuracy: overall, and the worst and best classes by top-1 (ties: more images first)."""
    per_class = [{"name": class_display(name), "images": v["images"], "top1": v["top1"], "top5": v["top5"]}
                 for name, v in (data.get("per_class") or {}).items()]
    ranked = sorted(per_class, key=lambda r: (r["top1"], -r["images"], r["name"]))
    worst = ranked[:shown]
    best = [r for r in sorted(per_class, key=lambda r: (-r["top1"], -r["images"], r["name"])) if r not in worst][:shown]
    fmt = lambda v: "–" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    for row in worst + best:
        row["top1_text"], row["top5_text"] = fmt(row["top1"]), fmt(row["top5"])
    return {"images": data.get("images", 0), "top1": fmt(data.get("top1")), "top5": fmt(data.get("top5")),
            "top_k": data.get("top_k", 5), "classes": len(data.get("classes") or []), "order": data.get("order", ""),
            "source": labels.get("source", ""), "worst": worst, "best": best}


def model_source(spec) -> dict | None:
    """A user's network: its file (name and sha256, never its path), input and preprocessing."""
    if spec.zoo:
        return None
    size = f"{spec.input_size}×{spec.input_size} px" if spec.input_size else "any size"
    return {"file": spec.source["file"], "sha256": spec.source["sha256"], "input": size,
            "colour": "grayscale" if spec.channels == 1 else "RGB", "preprocessing": spec.preprocessing.key,
            "preprocessing_from": spec.source.get("preprocessing_from", ""),
            "classes": spec.head["classes"] if spec.head else None}


def generated_folders(site_src: Path) -> list[str]:
    """The model folders a past ``atlas site`` wrote under ``site_src``: the zoo's, and every folder
    with the generated marker (a user's network, named as its user chose)."""
    found = []
    if Path(site_src).is_dir():
        for folder in sorted(Path(site_src).iterdir()):
            marker = folder / ".gitignore"
            if folder.is_dir() and (folder.name in MODELS or (marker.is_file() and marker.read_text() == MARKER)):
                found.append(folder.name)
    return found


def _numbers(view: str, entry: dict) -> list[tuple[str, str]]:
    """The facts table of one view."""
    def fmt(value) -> str:
        if isinstance(value, list):
            return ", ".join(f"{v:.4g}" for v in value)
        return f"{value:.5g}" if isinstance(value, float) else str(value)

    rows = [("Final loss", fmt(entry.get("final_loss")))]
    if view in ("channel", "diversity"):
        rows.append(("Mean activation after ReLU", fmt(entry.get("activation"))))
        rows.append(("Coverage of the map", fmt(entry.get("coverage"))))
    if view == "neuron":
        rows.append(("Centre unit before ReLU", fmt(entry.get("centre"))))
    if view in ("channel", "negative"):
        rows.append(("Mean / max before ReLU", f"{fmt(entry.get('pre_relu_mean'))} / {fmt(entry.get('pre_relu_max'))}"))
    if view == "channel":
        rows.append(("Dead", "yes" if entry.get("dead") else "no"))
    precision = entry.get("precision", "")
    rows.append(("Precision", precision + (" (redone in float32)" if entry.get("retried_float32") else "")))
    return rows


def stage_project(dest: Path) -> Path:
    """A copy of what ``mkdocs build`` reads (mkdocs.yml, hand-written pages, BENCHMARKS.md) in
    ``dest/project``, for builds that must not touch the working tree (tests, benchmarks)."""
    repo = TEMPLATES.parent
    project = Path(dest) / "project"
    project.mkdir(parents=True)
    shutil.copy(repo / "mkdocs.yml", project)
    shutil.copy(repo / "BENCHMARKS.md", project)
    shutil.copytree(repo / "site_src", project / "site_src",
                    ignore=shutil.ignore_patterns(*MODELS, *generated_folders(repo / "site_src"), *GENERATED, STAGING))
    return project


def build_site(data: str | Path, out: str | Path, compare: str | Path | None = None) -> int:
    """Render every page of every model of the atlas in ``data`` into ``out``; returns the number of
    pages. ``compare``: an atlas of the same filters made with the original method, shown beside ours
    on the Method page."""
    return SiteBuilder(data, out, compare).build()
