"""The site's navigation, generated from the pages ``atlas site`` wrote: a MkDocs plugin.

mkdocs.yml cannot list the models an atlas happens to hold, so this plugin (``plugins: [atlas-nav]``,
registered by the package) builds the nav at config time: Home, then for each model in the docs folder
its page, its blocks or stages, each with its layers, then the hand-written pages. Filter pages stay
out of the nav (``not_in_nav``), or every page would embed thousands of links.

Each model page carries its groups and layers in its front matter (``atlas_nav``), which is how a
user's own network (a folder named by its ``--name``) gets into the nav; the zoo's networks come first,
in the zoo's order, then the others by name. A zoo model page without it falls back to the shipped
layer table.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from mkdocs.config import base
from mkdocs.config import config_options as c
from mkdocs.plugins import BasePlugin

from generator.network.layers import groups, model_layers
from generator.network.zoo import MODELS


class AtlasNavConfig(base.Config):
    after = c.Type(list, default=["method.md", "cite.md"])  # hand-written pages after the models


class AtlasNav(BasePlugin[AtlasNavConfig]):
    """Sets ``nav`` from the generated model folders, unless mkdocs.yml gives one."""

    def on_config(self, config):
        if config.get("nav"):
            return config
        config["nav"] = build_nav(Path(config["docs_dir"]), self.config.after)
        return config


def front_matter(page: Path) -> dict:
    """The YAML front matter of a Markdown page ({} when it has none or it does not parse)."""
    text = page.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    try:
        data = yaml.safe_load(text[3:end]) if end > 0 else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def model_entry(docs: Path, name: str) -> tuple[str, list[tuple[str, str, list[str]]]] | None:
    """(title, [(group label, group, layers)]) of the model folder ``name``, or None if it is not one."""
    page = docs / name / "index.md"
    if not page.is_file():
        return None
    nav = front_matter(page).get("atlas_nav")
    if isinstance(nav, str):
        nav = json.loads(nav)
    if isinstance(nav, dict):
        return str(nav["title"]), [(str(label), str(group), [str(x) for x in layers]) for label, group, layers in nav["groups"]]
    if name in MODELS:
        spec = MODELS[name]
        return spec.title, [(spec.group_label(g), g, [x.name for x in model_layers(name) if x.group == g])
                            for g in groups(name)]
    return None


def build_nav(docs: Path, after: list[str]) -> list:
    """Home, models (page, groups, layers), then the pages in ``after`` that exist."""
    nav: list = [{"Home": "index.md"}]
    others = sorted(p.name for p in docs.iterdir() if p.is_dir() and p.name not in MODELS) if docs.is_dir() else []
    for name in [*MODELS, *others]:
        entry = model_entry(docs, name)
        if entry is None:
            continue
        title, model_groups = entry
        entries: list = [f"{name}/index.md"]
        for label, group, layers in model_groups:
            pages = [{layer: f"{name}/{layer}/index.md"} for layer in layers
                     if (docs / name / layer / "index.md").is_file()]
            if (docs / name / group / "index.md").is_file():
                entries.append({label: [f"{name}/{group}/index.md", *pages]})
        nav.append({title: entries})
    for page in after:
        if (docs / page).is_file():
            nav.append(page)
    return nav
