"""Pictures served from elsewhere (``atlas site --assets-url URL``), so that an atlas past GitHub Pages'
1 GB still publishes there: the pages stay on Pages, the pictures go to any static bucket (S3, R2,
GCS), as OpenAI Microscope and Distill keep their HTML apart from their images.

Once a build has written its pages, ``move_offsite`` turns each picture a page shows (an ``src``, or a
``url()`` in a style: the sprite of a row of dataset examples) into a file named by its content
(``<sha256, 20 hex>.<ext>``) in the upload folder and links it as ``URL/<name>``; the picture leaves
the pages' folder, so MkDocs publishes HTML alone. A name that is a hash never changes
meaning, so the bucket can cache the files forever and a new build only adds files. The page URLs stay
as they are; ``OFFSITE`` beside each model's pages maps its pictures to their names, from which the
next build takes unchanged pictures over instead of encoding them again.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import posixpath
import re
import shutil
from pathlib import Path

from generator.errors import AtlasError
from generator.site.urls import WEB_ADDRESS

UPLOAD = "site-assets"  # the upload folder's default name, beside the pages' folder
OFFSITE = ".offsite.json"  # {path under the model folder: file name in the upload folder}
PICTURES = (".avif", ".webp", ".png", ".jpg", ".jpeg", ".gif")
SRC = re.compile(r'(\bsrc=")([^"]+)(")')
CSS_URL = re.compile(r'(\burl\()([^()"\'\s]+)(\))')  # a row of dataset examples names its sprite in its style
HASH_CHARS = 20  # 80 bits: no two pictures of any atlas share a name


def assets_address(url: str) -> str:
    """``--assets-url`` checked: an http(s) address, ending in a slash."""
    if not WEB_ADDRESS.match(url):
        raise AtlasError(f"--assets-url {url!r}: give an http:// or https:// address without spaces, quotes, "
                         "brackets or angle brackets")
    return url if url.endswith("/") else url + "/"


def content_name(path: Path) -> str:
    """The picture's upload name: its content's hash and its extension."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:HASH_CHARS]
    return f"{digest}{path.suffix.lower()}"


def _put(src: Path, upload: Path) -> str:
    name = content_name(src)
    target = upload / name
    if not target.exists():
        try:
            os.link(src, target)
        except OSError:
            shutil.copyfile(src, target)
    return name


def page_url(source: str) -> str:
    """The folder URL that MkDocs gives the Markdown file ``source`` (``a/b.md`` -> ``a/b``,
    ``a/index.md`` -> ``a``), against which the page's relative links resolve. A snippet (``_*.md``,
    no page of its own) is included by the ``index.md`` beside it (the landing page's model list)."""
    stem = posixpath.splitext(source)[0]
    name = posixpath.basename(stem)
    return posixpath.dirname(stem) if name in ("index", "README") or name.startswith("_") else stem


def move_offsite(root: Path, models: list[str], upload: Path, base_url: str) -> int:
    """Link every picture that a page under ``root`` shows as ``base_url/<hash>.<ext>``, put the
    pictures of the ``models`` folders into ``upload`` under those names and take them out of ``root``.
    Returns how many pictures the upload folder gained."""
    upload.mkdir(parents=True, exist_ok=True)
    before = sum(1 for _ in upload.iterdir())
    names: dict[str, str] = {}  # path under root -> upload name

    def replace(page: Path, match: re.Match) -> str:
        link = html.unescape(match.group(2))
        if "://" in link or link.startswith(("/", "#", "data:")) or not link.lower().endswith(PICTURES):
            return match.group(0)
        target = posixpath.normpath(posixpath.join(page_url(page.relative_to(root).as_posix()), link))
        if target not in names:
            file = root / target
            if not file.is_file():
                return match.group(0)
            names[target] = _put(file, upload)
        return match.group(1) + html.escape(base_url + names[target]) + match.group(3)

    for page in sorted(root.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        new = text
        for pattern in (SRC, CSS_URL):
            new = pattern.sub(lambda m, page=page: replace(page, m), new)
        if new != text:
            page.write_text(new, encoding="utf-8")
    for model in models:
        folder = root / model
        own = {k[len(model) + 1:]: v for k, v in names.items() if k.startswith(model + "/")}
        for path in folder.rglob("*"):
            rel = path.relative_to(folder).as_posix()
            if path.is_file() and path.suffix.lower() in PICTURES:
                if rel not in own:  # a picture no page shows still goes up
                    own[rel] = _put(path, upload)
                path.unlink()
        (folder / OFFSITE).write_text(json.dumps(own, separators=(",", ":"), sort_keys=True))
    return sum(1 for _ in upload.iterdir()) - before


def offsite_sources(out: Path, model: str, upload: Path | None) -> dict[str, Path]:
    """{path under the model folder: the file in ``upload``} of the last build's pictures that went up
    (``{}`` when it kept them beside the pages); the asset cache takes them over from there."""
    if upload is None:
        return {}
    try:
        names = json.loads((out / model / OFFSITE).read_text())
    except (OSError, ValueError):
        return {}
    return {rel: upload / name for rel, name in names.items() if isinstance(name, str) and "/" not in name}
