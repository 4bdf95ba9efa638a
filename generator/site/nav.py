"""The site's navigation, written by ``atlas site`` into ``site_src/.nav.yml``, which ``mkdocs.yml``
inherits (``INHERIT``): MkDocs Material and Zensical (which runs no third-party plugin) both read it.

mkdocs.yml cannot list the models an atlas happens to hold, so the build writes the nav from the
pages it wrote: Home, then for each model in the docs folder its page, its blocks or stages, each with
its layers, then the hand-written pages. Filter pages stay out of the nav (``not_in_nav``), or every
page would embed thousands of links.

Each model page carries its groups and layers in its front matter (``atlas_nav``), which is how a
user's own network (a folder named by its ``--name``) gets into the nav; the zoo's networks come first,
in the zoo's order, then the others by name. A zoo model page without it falls back to the shipped
layer table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from generator.network.layers import groups, model_layers
from generator.network.zoo import MODELS


NAV = ".nav.yml"  # in the docs folder: hidden, so MkDocs publishes it not as a page or file
AFTER = ("method.md", "cite.md")  # hand-written pages after the models


def write_nav(docs: Path, after: tuple[str, ...] = AFTER) -> Path:
    """Write ``docs/.nav.yml`` (``nav:``, from the pages in ``docs``), atomically; returns its path."""
    target = docs / NAV
    tmp = docs / (NAV + ".tmp")
    tmp.write_text("# written by atlas site from the pages it wrote; mkdocs.yml inherits it\n"
                   + yaml.safe_dump({"nav": build_nav(docs, list(after))}, sort_keys=False, allow_unicode=True))
    os.replace(tmp, target)
    return target


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
