"""Versioned permalinks: each published atlas version under its own path, in mike's layout.

A paper cites ``/1.0/vgg16/block3_conv3/80/``, and that picture never changes under the citation
when the next method version re-renders the atlas. ``deploy`` puts a built site into the folder that
is published (a copy of the ``gh-pages`` branch) as ``<version>/``, lists it in ``versions.json``
(mike's format, which Material's version selector reads), and writes the two aliases as redirect
pages, not symlinks (GitHub Pages refuses symlinks): ``latest/<page>`` and the unversioned
``<page>`` itself, each to ``<version>/<page>``, keeping the ``#section``. So the contract's
unversioned URLs keep reaching the latest version, and each version stays as it was published.

``python -m generator.site.versions SITE VERSION PUBLISHED`` does it from ``make publish VERSION=``.
"""

from __future__ import annotations

import html
import json
import os
import posixpath
import shutil
import sys
from pathlib import Path

from generator.errors import AtlasError
from generator.site.urls import VERSION_NAME

VERSIONS = "versions.json"
LATEST = "latest"
VERSION = VERSION_NAME  # 1.0, 2026.12, 0.3.0-rc1: never a page's folder name
KEEP = {VERSIONS, LATEST, ".nojekyll", "CNAME", ".git"}  # what the root holds besides versions and redirects


def check_version(version: str) -> str:
    """A version name that can be a path: it starts with a digit, so no page folder is called so."""
    if not VERSION.match(version) or version.strip(".") != version:
        raise AtlasError(f"version {version!r}: give a number-like name such as 1.0 or 2026.12 (digits first; "
                         "letters, digits, '.', '-', '_'; at most 40)")
    return version


def redirect_page(target: str) -> str:
    """A page that sends the reader (and search engines, by its canonical link) to ``target``, a link
    relative to the page, with the ``#section`` it was opened at."""
    t = html.escape(target)
    js = json.dumps(target)
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Redirecting</title>"
            f"<link rel=\"canonical\" href=\"{t}\"><meta http-equiv=\"refresh\" content=\"0; url={t}\">"
            f"<script>location.replace({js} + location.hash)</script></head>"
            f"<body><p>This page is at <a href=\"{t}\">{t}</a>.</p></body></html>\n")


def _pages(folder: Path) -> list[str]:
    """The folder URLs of a built site's pages (``vgg16/block3_conv3/80/``; ``""`` for the home page)."""
    out = []
    for page in folder.rglob("index.html"):
        rel = page.parent.relative_to(folder).as_posix()
        out.append("" if rel == "." else rel + "/")
    return sorted(out)


def _write_redirects(root: Path, prefix: str, version: str, pages: list[str]) -> None:
    """``root/prefix/<page>/index.html`` -> ``root/<version>/<page>``, for every page."""
    for url in pages:
        here = posixpath.join(prefix, url)
        depth = len([p for p in here.split("/") if p])
        target = "../" * depth + f"{version}/{url}"
        path = root / here / "index.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(redirect_page(target or "./"), encoding="utf-8")


def read_versions(root: Path) -> list[dict]:
    try:
        data = json.loads((root / VERSIONS).read_text())
    except (OSError, ValueError):
        return []
    return [v for v in data if isinstance(v, dict) and isinstance(v.get("version"), str)] if isinstance(data, list) else []


def deploy(site: Path, published: Path, version: str, title: str | None = None) -> list[dict]:
    """Put the built ``site`` into ``published`` as ``version``, the latest; returns versions.json."""
    check_version(version)
    if not (site / "index.html").is_file():
        raise AtlasError(f"{site}: no built site here; run `mkdocs build --strict` first")
    published.mkdir(parents=True, exist_ok=True)
    clash = [p.name for p in site.iterdir() if p.is_dir() and VERSION.match(p.name)]
    if clash:
        raise AtlasError(f"{site}: its folder {clash[0]} looks like a version; rename it")
    target = published / version
    if target.exists():
        shutil.rmtree(target)  # a version republished (a fix before anyone cites it)
    shutil.copytree(site, target)
    versions = [v for v in read_versions(published) if v["version"] != version]
    for v in versions:
        v["aliases"] = [a for a in v.get("aliases", []) if a != LATEST]
    versions.insert(0, {"version": version, "title": title or version, "aliases": [LATEST]})
    names = {v["version"] for v in versions}
    for entry in published.iterdir():  # the old redirects; versions and the host's files stay
        if entry.name in KEEP or entry.name in names:
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    if (published / LATEST).exists():
        shutil.rmtree(published / LATEST)
    pages = _pages(target)
    _write_redirects(published, LATEST, version, pages)
    _write_redirects(published, "", version, pages)
    (published / ".nojekyll").touch()
    tmp = published / (VERSIONS + ".tmp")
    tmp.write_text(json.dumps(versions, indent=2) + "\n")
    os.replace(tmp, published / VERSIONS)
    return versions


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m generator.site.versions SITE VERSION PUBLISHED", file=sys.stderr)
        return 2
    try:
        versions = deploy(Path(argv[0]), Path(argv[2]), argv[1])
    except AtlasError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{argv[0]} is version {argv[1]} in {argv[2]}/ (latest; {len(versions)} versions: "
          f"{', '.join(v['version'] for v in versions)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
