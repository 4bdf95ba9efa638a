"""What a shard belongs to: a job, the whole ``atlas generate`` or ``atlas examples`` run that was cut
N ways. A job's id is a digest of its settings, its work and N, so every shard of one job (on any
machine) names the same job, and a shard of another job in the same folder is recognised.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from generator.cluster.split import (
    EXAMPLES_GRAIN,
    Shard,
    Split,
    image_range,
    ranges,
    split_generate,
)
from generator.network.layers import Layer
from generator.render.config import RenderConfig

COMMANDS = ("generate", "examples")


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class GenerateJob:
    """An ``atlas generate`` run split ``count`` ways."""

    work: tuple
    views: tuple
    config: RenderConfig
    count: int
    weights: str = ""  # the weight source's name, recorded for the merge
    table: tuple = field(default=(), compare=False, repr=False)  # the network's layers (the cost model reads them)
    command: str = "generate"
    _split: list = field(default_factory=list, compare=False, repr=False)

    def describe(self) -> dict:
        return {"command": self.command, "count": self.count, "config_hash": self.config.hash,
                "views": [v.name for v in self.views], "work": {layer.name: ranges(f) for layer, f in self.work}}

    @property
    def id(self) -> str:
        return _digest(self.describe())

    def split(self) -> Split:
        if not self._split:
            self._split.append(split_generate(list(self.work), self.views, self.config, self.count, self.table or None))
        return self._split[0]

    def share(self, index: int) -> list[tuple[Layer, list[int]]]:
        return self.split().shares[index]

    def settings(self) -> dict:
        return {"config": self.config.to_dict(), "weights": {"name": self.weights or self.config.weights,
                                                               "sha256": self.config.weights_sha256}}


@dataclass(frozen=True)
class ExamplesJob:
    """An ``atlas examples`` pass split ``count`` ways."""

    config: object  # examples.ExamplesConfig of the whole image set
    layers: tuple
    count: int
    weights: str = ""  # the weight source's name, for the merge to load the model by
    classifier: dict | None = None  # a zoo network's classifier ({"file", "sha256"}), where the pass classifies
    command: str = "examples"

    def describe(self) -> dict:
        c = self.config
        return {"command": self.command, "count": self.count, "model": c.model, "weights_sha256": c.weights_sha256,
                "list_sha256": c.images.sha256, "images": len(c.images.files), "size": c.size, "top": c.top,
                "layers": [layer.name for layer in self.layers], "precision": c.precision, "backend": c.backend,
                **({"labels_sha256": c.labels.sha256} if getattr(c, "labels", None) is not None else {})}

    @property
    def id(self) -> str:
        return _digest(self.describe())

    def range(self, index: int) -> tuple[int, int]:
        return image_range(len(self.config.images.files), Shard(index, self.count))

    def share(self, index: int):
        """The ExamplesConfig of shard ``index``: its images only (indices counted from its first)."""
        lo, hi = self.range(index)
        images = replace(self.config.images, files=self.config.images.files[lo:hi])
        labels = self.config.labels
        if labels is not None:
            labels = replace(labels, index=labels.index[lo:hi])
        return replace(self.config, images=images, labels=labels)

    def settings(self) -> dict:
        c = self.config
        return {"examples": {"images_root": str(Path(c.images.root).resolve()), "size": c.size, "top": c.top,
                             "name": c.name, "license": c.license, "precision": c.precision, "backend": c.backend,
                             "layers": [layer.name for layer in self.layers],
                             **({"labels": asdict(c.labels)} if c.labels is not None else {})},
                "weights": {"name": self.weights, "sha256": c.weights_sha256},
                **({"classifier": self.classifier} if self.classifier else {})}


def generate_units(work: list[tuple[Layer, list[int]]]) -> int:
    """Filters of a generate job: more shards than this would leave some empty."""
    return sum(len(f) for _, f in work)


def examples_units(images: int) -> int:
    """Runs of images an examples pass is cut into."""
    return math.ceil(images / EXAMPLES_GRAIN)
