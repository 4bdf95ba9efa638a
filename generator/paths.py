"""Every path of the data layout and every URL of the site, in one place.

Both are contracts (papers link the page URLs, tools read the files): files are only ever added, never
renamed. The display files beside the pages (AVIF, WebP) are the site's own and follow its pages.
Change them here or nowhere.

    atlas/<model>/manifest.json
    atlas/<model>/accuracy.json                   the classifier's accuracy on labelled images (a model file's)
    atlas/<model>/<layer>/layer.json              one row per filter
    atlas/<model>/<layer>/wiring.json             each filter's strongest inputs and outputs
    atlas/<model>/<layer>/0080.png                the channel picture      site: 0080.avif (display)
    atlas/<model>/<layer>/0080.json               its numbers and loss curves (every view)
    atlas/<model>/<layer>/0080.neuron.png, .negative.png, .diversity-1.png ... -4.png (other views)
    atlas/<model>/<layer>/0080.field.png          the field view (layers with a receptive field under 1/4 of the image)
    atlas/<model>/<layer>/0080.examples.json      top and bottom dataset examples
    atlas/<model>/<layer>/0080.examples.webp      their crops, one sprite
    atlas/logs/                                   one log per Slurm task
    /  /vgg16/  /vgg16/block3/  /vgg16/block3_conv3/  /vgg16/block3_conv3/80/
    /resnet50/  /resnet50/conv4/  /resnet50/conv4_block3_out/  /resnet50/conv4_block3_out/17/
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

    @property
    def accuracy_json(self) -> Path:
        """Top-1 / top-5 accuracy of a network's classifier on the labelled examples images."""
        return self.model_dir / "accuracy.json"

    @property
    def lock(self) -> Path:
        return self.model_dir / ".lock"

    @property
    def examples_state(self) -> Path:
        """The examples pass's checkpoint (running top-k, histograms, position)."""
        return self.model_dir / ".examples-state.npz"

    @property
    def manifest_lock(self) -> Path:
        """Held for a moment around each read-modify-write of the manifest by a shard."""
        return self.model_dir / ".manifest.lock"

    @property
    def shards_dir(self) -> Path:
        """What each shard of a job split N ways has finished (``atlas merge`` reads and removes it)."""
        return self.model_dir / ".shards"

    def shard_file(self, command: str, index: int, count: int, suffix: str) -> Path:
        """A shard's record (``.json``), lock (``.lock``), final examples state (``.npz``) or examples
        checkpoint (``.state.npz``): ``.shards/generate-1-of-3.json``."""
        return self.shards_dir / f"{command}-{int(index)}-of-{int(count)}{suffix}"

    def layer_dir(self, layer: str) -> Path:
        return self.model_dir / safe_name("layer", layer)

    def layer_json(self, layer: str) -> Path:
        return self.layer_dir(layer) / "layer.json"

    def wiring_json(self, layer: str) -> Path:
        return self.layer_dir(layer) / "wiring.json"

    def filter_png(self, layer: str, filter_index: int, suffix: str = "") -> Path:
        """A picture: ``suffix`` '' is the channel view, else ``.neuron``, ``.diversity-2`` ..."""
        return self.layer_dir(layer) / f"{filter_stem(filter_index)}{suffix}.png"

    def filter_json(self, layer: str, filter_index: int) -> Path:
        return self.layer_dir(layer) / f"{filter_stem(filter_index)}.json"

    def examples_json(self, layer: str, filter_index: int) -> Path:
        return self.layer_dir(layer) / f"{filter_stem(filter_index)}.examples.json"

    def examples_sprite(self, layer: str, filter_index: int) -> Path:
        return self.layer_dir(layer) / f"{filter_stem(filter_index)}.examples.webp"


def logs_dir(root: Path | str) -> Path:
    """One log per Slurm task, and the scripts that were submitted (``atlas/logs/``)."""
    return Path(root) / "logs"


# --- site URLs (relative to the site root, no leading slash, as MkDocs wants them) ---------------


def model_url(model: str) -> str:
    return f"{safe_name('model', model)}/"


def group_url(model: str, group: str) -> str:
    """A block (VGG: ``block3``) or stage (ResNet: ``conv4``)."""
    return f"{model_url(model)}{safe_name('group', group)}/"


def layer_url(model: str, layer: str) -> str:
    return f"{model_url(model)}{safe_name('layer', layer)}/"


def filter_url(model: str, layer: str, filter_index: int) -> str:
    return f"{layer_url(model, layer)}{int(filter_index)}/"


ASSETS = {
    "display": ".avif",  # the channel picture as the filter page shows it (lossless PNG and JSON: the release)
    "thumb": ".thumb.webp",  # grids
    "compare": ".naive.webp",  # the original method's thumbnail (Method page)
    "examples": ".examples.webp",  # dataset example crops, one sprite
    "top1": ".top1.webp",  # the strongest dataset example (layer grid)
}


def asset_url(model: str, layer: str, filter_index: int, kind: str) -> str:
    """A file of the site beside the layer page: one of ``ASSETS``, or ``view:<suffix>`` for the
    display picture of another view (``view:.neuron``, ``view:.diversity-2``)."""
    suffix = kind[5:] + ".avif" if kind.startswith("view:") else ASSETS[kind]
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
