"""Every path of the data layout and every URL of the site, in one place.

Both are contracts (papers link the URLs, tools read the files): change them here or nowhere.

    atlas/vgg16/manifest.json
    atlas/vgg16/block3_conv3/layer.json
    atlas/vgg16/block3_conv3/0080.png            site: /vgg16/block3_conv3/0080.png (download)
    atlas/vgg16/block3_conv3/0080.json           site: /vgg16/block3_conv3/0080.json (download)
    /vgg16/  /vgg16/block3/  /vgg16/block3_conv3/  /vgg16/block3_conv3/80/
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from generator.errors import AtlasError

SAFE_NAME = re.compile(r"^[a-z0-9_]+$")


def safe_name(kind: str, name: str) -> str:
    """Refuse a model or layer name that could escape its folder once it becomes a path."""
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise AtlasError(f"{kind} name {name!r}: only lowercase letters, digits and _ are allowed")
    return name


def filter_stem(filter_index: int) -> str:
    return f"{filter_index:04d}"


@dataclass(frozen=True)
class AtlasPaths:
    """Files of one model's atlas under ``root`` (``atlas/`` by default)."""

    root: Path
    model: str

    @property
    def model_dir(self) -> Path:
        return Path(self.root) / safe_name("model", self.model)

    @property
    def manifest(self) -> Path:
        return self.model_dir / "manifest.json"

    def layer_dir(self, layer: str) -> Path:
        return self.model_dir / safe_name("layer", layer)

    def layer_json(self, layer: str) -> Path:
        return self.layer_dir(layer) / "layer.json"

    def filter_png(self, layer: str, filter_index: int) -> Path:
        return self.layer_dir(layer) / f"{filter_stem(filter_index)}.png"

    def filter_json(self, layer: str, filter_index: int) -> Path:
        return self.layer_dir(layer) / f"{filter_stem(filter_index)}.json"


# --- site URLs (relative to the site root, no leading slash, as MkDocs wants them) ---------------


def model_url(model: str) -> str:
    return f"{safe_name('model', model)}/"


def block_url(model: str, block: int) -> str:
    return f"{model_url(model)}block{int(block)}/"


def layer_url(model: str, layer: str) -> str:
    return f"{model_url(model)}{safe_name('layer', layer)}/"


def filter_url(model: str, layer: str, filter_index: int) -> str:
    return f"{layer_url(model, layer)}{int(filter_index)}/"


def asset_url(model: str, layer: str, filter_index: int, kind: str) -> str:
    """``kind``: png, json (downloads, same names as the data layout), webp, thumb (display), compare
    (the thumbnail of the original method's picture, for the Method page)."""
    suffix = {"png": ".png", "json": ".json", "webp": ".webp", "thumb": ".thumb.webp",
              "compare": ".naive.webp"}[kind]
    return f"{layer_url(model, layer)}{filter_stem(filter_index)}{suffix}"


def source_path(url: str) -> str:
    """The Markdown file under ``site_src/`` that MkDocs turns into ``url`` (directory URLs)."""
    if not url:
        return "index.md"
    if url.endswith("/"):
        parts = url.rstrip("/").split("/")
        if parts[-1].isdigit():  # filter pages: vgg16/block3_conv3/80.md -> /vgg16/block3_conv3/80/
            return "/".join(parts) + ".md"
        return url + "index.md"
    return url


def short_name(model: str, layer: str, filter_index: int) -> str:
    """How a paper names a filter: ``VGG16 block3_conv3:80``."""
    return f"{model.upper()} {layer}:{int(filter_index)}"
