"""One model of the atlas as its pages see it: the manifest, the rendered filters (checked against the
files on disk), the display-file cache, and the helpers every page of the model shares (its pictures'
addresses, breadcrumbs, grid cells). The pages themselves are written by ``model_pages``,
``layer_page``, ``filter_page``, ``landing_page`` and ``method_page``.

A user's own network (a model file) is shown like the zoo's, from what its manifest stores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from generator import paths
from generator.atlas.files import read_json_or_none
from generator.atlas.store import AtlasStore, weights_name
from generator.cluster.shard_store import check_merged
from generator.errors import AtlasError
from generator.network.layers import Layer, model_layers
from generator.network.zoo import ModelSpec
from generator.site.assets import AssetCache
from generator.site.classes import class_display, top_class
from generator.site.offsite import offsite_sources
from generator.site.templates import PageWriter
from generator.site.urls import relative

SAMPLE = 8  # filters per layer on the model and group pages


@dataclass
class Cell:
    href: str | None
    thumb: str | None
    title: str
    label: str
    dead: bool = False
    extra: str | None = None  # a second picture beside the first (the top dataset example)
    alt: str | None = None  # the picture's text (what it shows: filter and view) when not the title
    extra_alt: str | None = None  # the second picture's text
    caption: str | None = None  # a user-given text under the label (the top class), shown as literal text


def public_weights(manifest: dict) -> dict:
    """The weights as the pages name them: the source or file name (an older manifest may hold a local
    path, which is nobody's business) and the sha256."""
    weights = manifest.get("weights") or {}
    return {"name": weights_name(str(weights.get("name", ""))), "sha256": str(weights.get("sha256", ""))}


def model_source(spec) -> dict | None:
    """A user's network: its file (name and sha256, never its path), input and preprocessing."""
    if spec.zoo:
        return None
    size = f"{spec.input_size}×{spec.input_size} px" if spec.input_size else "any size"
    return {"file": spec.source["file"], "sha256": spec.source["sha256"], "input": size,
            "colour": "grayscale" if spec.channels == 1 else "RGB", "preprocessing": spec.preprocessing.key,
            "preprocessing_from": spec.source.get("preprocessing_from", ""),
            "classes": spec.head["classes"] if spec.head else None}


class ModelSite:
    """The pages of one model: what they are made from, and the helpers they share."""

    def __init__(self, writer: PageWriter, data: Path, out: Path, spec: ModelSpec, compare: Path | None = None,
                 upload: Path | None = None) -> None:
        model = spec.name
        self.writer = writer
        self.model = model
        self.spec = spec
        self.store = AtlasStore(data, model)
        self.manifest = self.store.read_manifest()
        check_merged(self.store)  # a sharded job's tables are whole only once merged
        if "config_hash" not in self.manifest:
            flag = model if self.spec.zoo else f"PATH.keras --name {model}"
            raise AtlasError(f"{self.store.paths.manifest}: the atlas has no pictures yet; run `atlas generate "
                             f"--model {flag} --out {data}`")
        self.config_hash = self.manifest["config_hash"]
        self.layers = model_layers(spec)
        self.rows = {layer.name: self.checked_rows(layer) for layer in self.layers}
        if not any(self.rows.values()):
            raise AtlasError(f"{self.store.paths.model_dir}: the atlas has no rendered filters yet; run `atlas generate`")
        self.assets = AssetCache(out / model, writer.root / model, offsite_sources(out, model, upload))
        self.trust_means: dict[str, dict] = {}  # layer -> means of its pictures' trust scores (Method page)
        self.examples = (self.manifest.get("examples") or {}).get("images")  # the image set: name, licence, count
        other = AtlasStore(compare, model) if compare else None
        self.compare = other if other and other.paths.manifest.exists() else None

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

    def sorted_rows(self, layer: Layer) -> list[dict]:
        """The layer's rendered filters in filter order."""
        return [self.rows[layer.name][f] for f in sorted(self.rows[layer.name])]

    def asset(self, layer: str, f: int, kind: str) -> str:
        return paths.asset_url(self.model, layer, f, kind)

    def make(self, url: str, sources: list[Path], build: Callable[[Path], None]) -> None:
        self.assets.make(url[len(self.model) + 1:], sources, build)

    def crumbs(self, here: str, *trail: tuple[str, str | None]) -> list[tuple[str, str | None]]:
        items = [("Atlas", ""), (self.spec.title, paths.model_url(self.model)), *trail]
        return [(label, None if url is None else relative(here, url)) for label, url in items]

    def group_crumb(self, layer: Layer) -> tuple[str, str]:
        return self.spec.group_label(layer.group), paths.group_url(self.model, layer.group)

    def cells(self, here: str, layer: Layer, rows: list[dict], with_top: bool = False, view: str = "channel") -> list[Cell]:
        """The grid cells of ``rows``: each filter's thumbnail (or, for another ``view``, its display
        picture; a blank where the filter lacks that view), with ``with_top`` its strongest dataset example."""
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
            short = self.spec.short_name(layer.name, f)
            if view == "channel":
                thumb = relative(here, self.asset(layer.name, f, "thumb"))
            else:
                thumb = relative(here, self.asset(layer.name, f, f"view:.{view}")) if view in r.get("views", []) else None
            out.append(Cell(
                href=relative(here, paths.filter_url(self.model, layer.name, f)),
                thumb=thumb,
                title=title, label=str(f), dead=r["dead"], extra=top, caption=caption,
                alt=f"{short}, {view} view" + (" (dead)" if r["dead"] else ""),
                extra_alt=f"{short}, its strongest dataset example" if top else None,
            ))
        return out
