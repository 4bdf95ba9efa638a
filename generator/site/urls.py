"""The site's addresses, built in one place: the published root and the downloads' root (from the
environment, checked), and the relative links between pages that every page and test uses.

The page URLs themselves (``vgg16/block3_conv3/80/``) are part of the data layout's contract and live
in ``generator.paths``; this module turns them into what a page writes: a link relative to the page
it is on, or between the Markdown sources MkDocs checks in strict mode.
"""

from __future__ import annotations

import os
import posixpath
import re

from generator import paths
from generator.errors import AtlasError

DEFAULT_SITE_URL = "https://vgg16-filter-atlas.github.io/"
# The addresses the pages link (permalinks, downloads): http(s) only, and nothing that could end a
# Markdown link or autolink or an HTML attribute early.
VERSION_NAME = re.compile(r"^[0-9][0-9A-Za-z._-]{0,39}$")  # a path segment no page folder has (digits first)
WEB_ADDRESS = re.compile(r"^https?://[^\s<>\"'`()\[\]{}|\\^]+$")


def _address(variable: str, url: str) -> str:
    if not WEB_ADDRESS.match(url):
        raise AtlasError(f"{variable}={url!r}: give an http:// or https:// address without spaces, quotes, "
                         "brackets or angle brackets")
    return url if url.endswith("/") else url + "/"


def site_url() -> str:
    """The published site's root, as mkdocs.yml reads it (ATLAS_SITE_URL, for forks)."""
    return _address("ATLAS_SITE_URL", os.environ.get("ATLAS_SITE_URL", DEFAULT_SITE_URL))


def site_version() -> str | None:
    """The atlas version these pages are published as (ATLAS_SITE_VERSION: ``make publish VERSION=``),
    whose pages live under ``/<version>/`` for good; None: unversioned."""
    version = os.environ.get("ATLAS_SITE_VERSION", "").strip()
    if not version:
        return None
    if not VERSION_NAME.match(version):
        raise AtlasError(f"ATLAS_SITE_VERSION={version!r}: give a number-like name such as 1.0 or 2026.12 (digits "
                         "first; letters, digits, '.', '-', '_')")
    return version


def permalinks(url: str) -> tuple[str, str]:
    """(the address to cite, the address that always shows the latest) of the page at ``url``: the
    versioned one where the pages are published as a version, else the same address twice."""
    latest = site_url() + url
    version = site_version()
    return (f"{site_url()}{version}/{url}" if version else latest), latest


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
