"""The site's navigation, generated from the pages ``atlas site`` wrote: a MkDocs plugin.

mkdocs.yml cannot list the models an atlas happens to hold, so this plugin (``plugins: [atlas-nav]``,
registered by the package) builds the nav at config time: Home, then for each model in the docs folder
its page, its blocks or stages, each with its layers, then the hand-written pages. Filter pages stay
out of the nav (``not_in_nav``), or every page would embed thousands of links.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config import base
from mkdocs.config import config_options as c
from mkdocs.plugins import BasePlugin

from generator.layers import groups, model_layers
from generator.zoo import MODELS


class AtlasNavConfig(base.Config):
    after = c.Type(list, default=["method.md", "cite.md"])  # hand-written pages after the models


class AtlasNav(BasePlugin[AtlasNavConfig]):
    """Sets ``nav`` from the generated model folders, unless mkdocs.yml gives one."""

    def on_config(self, config):
        if config.get("nav"):
            return config
        config["nav"] = build_nav(Path(config["docs_dir"]), self.config.after)
        return config


def build_nav(docs: Path, after: list[str]) -> list:
    """Home, models (page, groups, layers), then the pages in ``after`` that exist."""
    nav: list = [{"Home": "index.md"}]
    for name, spec in MODELS.items():
        if not (docs / name / "index.md").is_file():
            continue
        entries: list = [f"{name}/index.md"]
        for group in groups(name):
            layers = [layer for layer in model_layers(name) if layer.group == group]
            pages = [{layer.name: f"{name}/{layer.name}/index.md"} for layer in layers
                     if (docs / name / layer.name / "index.md").is_file()]
            if (docs / name / group / "index.md").is_file():
                entries.append({spec.group_label(group): [f"{name}/{group}/index.md", *pages]})
        nav.append({spec.title: entries})
    for page in after:
        if (docs / page).is_file():
            nav.append(page)
    return nav
