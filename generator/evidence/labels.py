"""Each image's class, for the classes of a filter and the accuracy of a network's classifier.

``--labels folders`` takes an image's class from its first subfolder (``cat/0001.jpg``: ``cat``), and
numbers the classes as Keras's ``image_dataset_from_directory`` does: every first-level subfolder,
sorted as text, numbered names included (folders ``0`` to ``10`` are outputs ``0, 1, 10, 2, …``: folder
``10`` is output 2). ``--labels FILE`` reads a labels file (``label_files``: a CSV of ``path,label``,
caffe's ``val.txt``, Kaggle's ``LOC_val_solution.csv``, the devkit's ground truth); a row whose path
matches two images, or two rows that give one image different labels, are refused.

The class order is the order of the network's outputs. It is ``--classes FILE`` (one name a line)
or ``--classes imagenet``, when given. Otherwise: integer labels of a file are output indices; ImageNet
synset ids (``n01440764``) on a network of 1,000 outputs are ImageNet's order, which is Keras's
(sorted by synset id); other labels are sorted as text, Keras's order. A class count that is not the
classifier's output count is refused. A network without a classifier gets the sorted labels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

import numpy as np

from generator.errors import AtlasError
from generator.evidence.imagesets import ImageSet
from generator.evidence.label_files import INTEGER, SYNSET, read_label_table

IMAGENET_FILE = Path(__file__).resolve().parent / "data" / "imagenet_classes.json"


@dataclass(frozen=True)
class ImageNetClass:
    synset: str
    name: str
    lemmas: str


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1,000 ImageNet classes in Keras's order (sorted by synset id), shipped with the package."""
    data = json.loads(IMAGENET_FILE.read_text(encoding="utf-8"))
    return tuple(ImageNetClass(*row) for row in data["classes"])


@dataclass(frozen=True)
class LabelSet:
    """The classes (in the network's output order) and each image's class index (-1: none)."""

    source: str  # "folders", or the labels file's name
    classes: tuple[str, ...]
    index: tuple[int, ...]  # one per image of the set
    order: str  # how the class order was found, for the manifest
    unlabelled: int  # images the labels do not name
    other: int  # images whose label is none of the classes

    @property
    def display(self) -> tuple[str, ...]:
        """Class names as pages show them: an ImageNet synset id with its name (``n01440764 tench``)."""
        names = {c.synset: c.name for c in imagenet_classes()}
        return tuple(f"{c} {names[c]}" if c in names else c for c in self.classes)

    @property
    def array(self) -> np.ndarray:
        return np.asarray(self.index, np.int32)

    @property
    def sha256(self) -> str:
        text = json.dumps([self.classes, self.index], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def counts(self) -> np.ndarray:
        """Images of each class."""
        valid = self.array[self.array >= 0]
        return np.bincount(valid, minlength=len(self.classes))

    def summary(self) -> dict:
        """What the manifest says of the labels."""
        return {"source": self.source, "classes": len(self.classes), "order": self.order,
                "labelled": len(self.index) - self.unlabelled - self.other, "unlabelled": self.unlabelled,
                "other": self.other, "sha256": self.sha256}


def check_labels_arg(labels: str | None, classes: str | None) -> None:
    """What can be told of ``--labels`` and ``--classes`` before anything is read."""
    if classes is not None and labels is None:
        raise AtlasError("--classes names the classes of --labels; give --labels folders or --labels FILE too")
    if labels not in (None, "folders") and not Path(labels).is_file():
        raise AtlasError(f"--labels {labels}: no such file; give folders (each image's subfolder is its class) or a "
                         "CSV of path,label")
    if classes not in (None, "imagenet") and not Path(classes).is_file():
        raise AtlasError(f"--classes {classes}: no such file; give imagenet or a text file of class names, one a line")


def read_labels(labels: str, images: ImageSet, spec, classes: str | None = None) -> LabelSet:
    """Each image's class for the network ``spec`` (its classifier decides how many classes there are)."""
    check_labels_arg(labels, classes)
    if labels == "folders":
        named = [PurePosixPath(f).parts[0] if len(PurePosixPath(f).parts) > 1 else None for f in images.files]
        found = sorted(p.name for p in images.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        source = "folders"
    else:
        table = read_label_table(Path(labels))
        named = [table.label_of(f) for f in images.files]
        found = sorted({label for label in named if label is not None})
        source = Path(labels).name
        if not found:
            raise AtlasError(f"--labels {labels}: names none of the {len(images.files)} images under {images.root}; its "
                             "paths must be the images' paths under the folder, their file names or their stems")
    head = spec.head["classes"] if spec.head else None
    names, order = _class_order(found, head, classes, labels)
    position = {name: i for i, name in enumerate(names)}
    index, other = [], 0
    for label in named:
        if label is None:
            index.append(-1)
        elif label in position:
            index.append(position[label])
        elif labels != "folders" and INTEGER.match(label) and classes is not None and int(label) < len(names):
            index.append(int(label))
        else:
            index.append(-1)
            other += 1
    unlabelled = sum(label is None for label in named)
    if unlabelled + other == len(named):
        raise AtlasError(f"--labels {labels}: no image has one of the {len(names)} classes ({', '.join(names[:4])} …)")
    return LabelSet(source, tuple(names), tuple(index), order, unlabelled, other)


def _class_order(found: list[str], head: int | None, classes: str | None, labels: str) -> tuple[list[str], str]:
    """The classes in the order of the network's outputs, and how that order was found."""
    if classes == "imagenet":
        names = [c.synset for c in imagenet_classes()]
        order = "ImageNet's 1,000 classes, sorted by synset id (Keras's order)"
    elif classes is not None:
        names = [line.strip() for line in Path(classes).read_text(encoding="utf-8").splitlines() if line.strip()]
        order = f"--classes {Path(classes).name}"
        if len(set(names)) != len(names):
            raise AtlasError(f"--classes {classes}: a class name appears twice; give each output's name once")
    elif labels != "folders" and found and all(INTEGER.match(x) for x in found) and head:
        beyond = [x for x in found if int(x) >= head]
        if beyond:
            raise AtlasError(f"--labels {labels}: the label {max(beyond, key=int)} is not an output of the network's "
                             f"classifier (0 to {head - 1}); integer labels are output indices: give --classes FILE "
                             "naming the outputs, or labels of the right network")
        names = [str(i) for i in range(head)]
        order = "the labels are the classifier's output indices"
    elif found and all(SYNSET.match(x) for x in found) and head in (None, 1000):
        names = [c.synset for c in imagenet_classes()] if head else found
        order = "ImageNet's synsets, sorted (Keras's order)"
    elif labels == "folders":
        names = sorted(found)
        order = ("the class folders sorted as text ('10' before '2'), as keras.utils.image_dataset_from_directory "
                 "numbers them")
    else:
        names = sorted(found, key=lambda x: (0, int(x)) if INTEGER.match(x) else (1, x)) if not head else sorted(found)
        order = "the labels sorted as text, as keras.utils.image_dataset_from_directory orders classes"
    if head and len(names) != head:
        shown = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
        raise AtlasError(f"--labels {labels}: {len(names)} classes ({shown}), but the network's classifier has {head} "
                         f"outputs; give --classes FILE naming its {head} outputs in order, one a line")
    return names, order
