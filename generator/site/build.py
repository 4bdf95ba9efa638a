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
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from generator import paths
from generator.atlas.store import AtlasStore, atlas_models, read_json, read_json_or_none, weights_name
from generator.cluster.shards import check_merged
from generator.errors import AtlasError
from generator.network.layers import Layer, groups, model_layers
from generator.network.zoo import MODELS, model_spec
from generator.render.views import VIEWS
from generator.site import plots, trust_pages
from generator.site.assets import (CHANNEL_QUALITY, DISPLAY, OTHER_VIEWS_QUALITY, THUMB, AssetCache, avif,
                                   copy_file, crop_first, webp)
from generator.site.classes import accuracy_summary, class_display, filter_classes, top_class
from generator.site.escape import bibtex_text, fenced_code
from generator.site.staging import MARKER, STAGING, swap_in
from generator.site.templates import environment
from generator.site.urls import downloads_url, relative, relative_md, site_url

SAMPLE = 8  # filters per layer on the model and group pages


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
        self.env = environment()
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
            swap_in(self.staging, self.out, self.models)
        finally:
            if self.staging.exists():
                shutil.rmtree(self.staging)
        return self.pages

    def _landing(self, sites: list[ModelSite]) -> None:
        cards = [site.card() for site in sites]
        text = self.env.get_template("models.md.j2").render(cards=cards, thumb=THUMB)
        (self.staging / "_models.md").write_text(text)

    def _method(self, sites: list[ModelSite]) -> None:
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
        self.make(self.asset(layer.name, f, "thumb"), [sp.filter_png(layer.name, f)], webp(sp.filter_png(layer.name, f), 80, THUMB))
        views = []
        for name in row.get("views", ["channel"]):
            view = VIEWS[name]
            entry = record if name == "channel" else record["views"][name]
            pictures = []
            for suffix in view.suffixes():
                src = sp.filter_png(layer.name, f, suffix)
                url = self.asset(layer.name, f, "display" if name == "channel" else f"view:{suffix}")
                self.make(url, [src], avif(src, CHANNEL_QUALITY if name == "channel" else OTHER_VIEWS_QUALITY))
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
        self.make(url, [sprite], copy_file(sprite))
        cell = data["sprite"]["cell"]
        self.make(self.asset(layer.name, f, "top1"), [sprite], crop_first(sprite, cell))

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
        from generator.atlas.store import trust_means

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
                    self.make(url, [src], webp(src, 80, THUMB))
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


def model_source(spec) -> dict | None:
    """A user's network: its file (name and sha256, never its path), input and preprocessing."""
    if spec.zoo:
        return None
    size = f"{spec.input_size}×{spec.input_size} px" if spec.input_size else "any size"
    return {"file": spec.source["file"], "sha256": spec.source["sha256"], "input": size,
            "colour": "grayscale" if spec.channels == 1 else "RGB", "preprocessing": spec.preprocessing.key,
            "preprocessing_from": spec.source.get("preprocessing_from", ""),
            "classes": spec.head["classes"] if spec.head else None}


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


def build_site(data: str | Path, out: str | Path, compare: str | Path | None = None) -> int:
    """Render every page of every model of the atlas in ``data`` into ``out``; returns the number of
    pages. ``compare``: an atlas of the same filters made with the original method, shown beside ours
    on the Method page."""
    return SiteBuilder(data, out, compare).build()
