"""The settings of ``atlas examples``: one frozen object the pass, its checkpoint, its files, the shards
and the merge share; what the manifest says of the image set, and the fingerprint a checkpoint must
match to be resumed.
"""

from __future__ import annotations

from dataclasses import dataclass

from generator.evidence.imagesets import (
    SKIP_REASONS,
    UNREADABLE_FOLDER,
    ImageSet,
    display_name,
)
from generator.evidence.labels import LabelSet
from generator.network.layers import Layer

STATE_VERSION = 2  # 2: images are cut before they are resampled, skipped files kept with their reason


@dataclass(frozen=True)
class ExamplesConfig:
    """What the pass computes and over what: the model and weights, the image set at ``size`` px, ``top``
    examples each way, the precision and backend, and each image's class where there are labels."""

    model: str
    weights_sha256: str
    size: int
    top: int
    images: ImageSet
    name: str | None = None
    license: str | None = None
    precision: str = "float32"
    backend: str = "tensorflow"
    labels: LabelSet | None = None  # each image's class (--labels)

    def image_set(self, skips: list[tuple[int, str]] | None = None) -> dict:
        """What the manifest says of the image set; with ``skips`` (image index, reason), every file
        and folder skipped, named, and their count by reason."""
        out = {"folder": display_name(self.images.root.name), "count": len(self.images.files),
               "list_sha256": self.images.sha256, "size": self.size, "name": self.name, "license": self.license}
        if skips is not None:
            files = skipped_files(self.images, skips)
            out.update({"skipped": len(files), "skipped_by_reason": count_reasons(files), "skipped_files": files})
        return out

    def fingerprint(self, layers: list[Layer], batch: int) -> dict:
        """Everything a checkpoint must share with this run to be resumed by it."""
        out = {"version": STATE_VERSION, "model": self.model, "weights_sha256": self.weights_sha256,
               "list_sha256": self.images.sha256, "size": self.size, "top": self.top, "batch": batch,
               "layers": [layer.name for layer in layers], "precision": self.precision, "backend": self.backend}
        if self.labels is not None:
            out["labels_sha256"] = self.labels.sha256
        return out


def skipped_files(images: ImageSet, skips: list[tuple[int, str]]) -> list[dict]:
    """The files of the set the pass skipped, and the folders it could not read, each with its reason."""
    return ([{"image": display_name(images.files[i]), "reason": reason} for i, reason in sorted(skips)]
            + [{"image": display_name(folder), "reason": UNREADABLE_FOLDER} for folder in images.unlisted])


def count_reasons(files: list[dict]) -> dict[str, int]:
    counts = {reason: sum(f["reason"] == reason for f in files) for reason in SKIP_REASONS}
    return {reason: n for reason, n in counts.items() if n}
