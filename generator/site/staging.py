"""What a build owns under ``site_src/``, and how the new pages replace the old ones.

A build writes into a staging folder (``STAGING``, hidden from MkDocs) and swaps it in only when
complete, so a failed build leaves the last good pages. Every model folder it writes carries a
``.gitignore`` marker (``MARKER``): a user's network is named as its user chose, and the marker is how
the next build, ``stage_project``, git and ``make clean`` know such a folder as generated.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from generator.network.zoo import MODELS
from generator.site.templates import TEMPLATES

MARKER = "# written by atlas site: this folder is generated, and git ignores all of it\n*\n"
GENERATED = ("method.md", "_models.md")  # generated files at the top of site_src
STAGING = ".atlas-new"


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


def swap_in(staging: Path, out: Path, models: list[str]) -> None:
    """Put the new pages in place of the old ones, model by model, then the top files."""
    trash = staging / ".old"
    trash.mkdir()
    for model in dict.fromkeys([*MODELS, *generated_folders(out), *models]):  # a model no longer in the atlas loses its pages too
        current = out / model
        if current.exists():
            current.rename(trash / model)
        if model in models:
            (staging / model).rename(current)
    for name in GENERATED:
        os.replace(staging / name, out / name)


def stage_project(dest: Path) -> Path:
    """A copy of what ``mkdocs build`` reads (mkdocs.yml, hand-written pages, BENCHMARKS.md) in
    ``dest/project``, for builds that must not touch the working tree (tests, benchmarks)."""
    repo = TEMPLATES.parent
    project = Path(dest) / "project"
    project.mkdir(parents=True)
    shutil.copy(repo / "mkdocs.yml", project)
    shutil.copy(repo / "BENCHMARKS.md", project)
    shutil.copytree(repo / "site_src", project / "site_src",
                    ignore=shutil.ignore_patterns(*MODELS, *generated_folders(repo / "site_src"), *GENERATED, STAGING,
                                                  ".nav.yml*"))
    return project
