"""Each image's class, for the classes of a filter and the accuracy of a network's classifier.

``--labels folders`` takes an image's class from its first subfolder (``cat/0001.jpg``: ``cat``).
``--labels FILE`` reads a CSV of ``path,label`` (a header row is optional), a list of ``path label``
lines (caffe's ImageNet ``val.txt``) or Kaggle's ImageNet ``LOC_val_solution.csv``. A path in a file
may be the image's path under the image folder, its file name or its stem.

The class order is the order of the network's outputs. It is ``--classes FILE`` (one name a line)
or ``--classes imagenet``, when given. Otherwise: integer labels are output indices; ImageNet synset
ids (``n01440764``) on a network of 1,000 outputs are ImageNet's order, which is Keras's (sorted by
synset id); other labels are sorted, the order of Keras's ``image_dataset_from_directory`` (for
``folders``: every first-level subfolder, sorted, as Keras counts them). A network without a
classifier gets the sorted labels. The devkit's ``ILSVRC2012_validation_ground_truth.txt`` (one number a
line, the class of ``ILSVRC2012_val_NNNNNNNN.JPEG`` in the devkit's own numbering) is read with the
devkit's ``meta.mat`` (or the later devkits' ``map_clsloc.txt``) beside it, which turn the numbers
into synset ids.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

import numpy as np

from generator.errors import AtlasError
from generator.evidence.imagesets import ImageSet

IMAGENET_FILE = Path(__file__).resolve().parent / "data" / "imagenet_classes.json"
SYNSET = re.compile(r"^n\d{8}$")
INTEGER = re.compile(r"^\d+$")
HEADERS = {"path", "image", "file", "filename", "image_id", "imageid", "name", "id"}


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
        table = _read_file(Path(labels))
        named = [_lookup(table, f) for f in images.files]
        found = sorted({label for label in named if label is not None})
        source = Path(labels).name
        if not found:
            raise AtlasError(f"--labels {labels}: names none of the {len(images.files)} images under {images.root}; its "
                             "paths must be the images' paths under the folder, their file names or their stems")
    head = spec.head["classes"] if spec.head else None
    names, order = _class_order(found, named, head, classes, labels)
    position = {name: i for i, name in enumerate(names)}
    index, other = [], 0
    for label in named:
        if label is None:
            index.append(-1)
        elif label in position:
            index.append(position[label])
        elif INTEGER.match(label) and classes is not None and int(label) < len(names):
            index.append(int(label))
        else:
            index.append(-1)
            other += 1
    unlabelled = sum(label is None for label in named)
    if unlabelled + other == len(named):
        raise AtlasError(f"--labels {labels}: no image has one of the {len(names)} classes ({', '.join(names[:4])} …)")
    return LabelSet(source, tuple(names), tuple(index), order, unlabelled, other)


def _class_order(found: list[str], named: list, head: int | None, classes: str | None,
                 labels: str) -> tuple[list[str], str]:
    if classes == "imagenet":
        names = [c.synset for c in imagenet_classes()]
        order = "ImageNet's 1,000 classes, sorted by synset id (Keras's order)"
    elif classes is not None:
        names = [line.strip() for line in Path(classes).read_text(encoding="utf-8").splitlines() if line.strip()]
        order = f"--classes {Path(classes).name}"
        if len(set(names)) != len(names):
            raise AtlasError(f"--classes {classes}: a class name appears twice; give each output's name once")
    elif found and all(INTEGER.match(x) for x in found) and head:
        names = [str(i) for i in range(head)]
        order = "the labels are the classifier's output indices"
    elif found and all(SYNSET.match(x) for x in found) and head in (None, 1000):
        names = [c.synset for c in imagenet_classes()] if head else found
        order = "ImageNet's synsets, sorted (Keras's order)"
    else:
        names = sorted(found, key=lambda x: (0, int(x)) if INTEGER.match(x) else (1, x)) if not head else found
        order = "the labels sorted, as keras.utils.image_dataset_from_directory orders classes"
    if head and len(names) != head:
        shown = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
        raise AtlasError(f"--labels {labels}: {len(names)} classes ({shown}), but the network's classifier has {head} "
                         f"outputs; give --classes FILE naming its {head} outputs in order, one a line")
    return names, order


def devkit_synsets(ground_truth: Path) -> dict[int, str]:
    """{ILSVRC2012_ID: synset id} from the devkit files beside its ground truth: ``meta.mat`` (the 2012
    devkit) or ``map_clsloc.txt`` (``n02119789 1 kit_fox``, the later ones)."""
    folder = ground_truth.parent
    clsloc, meta = folder / "map_clsloc.txt", folder / "meta.mat"
    found: dict[int, str] = {}
    if clsloc.is_file():
        for line in clsloc.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and SYNSET.match(parts[0]) and INTEGER.match(parts[1]):
                found[int(parts[1])] = parts[0]
        where = clsloc
    elif meta.is_file():
        try:
            from scipy.io import loadmat
        except ImportError:
            raise AtlasError(f"--labels {ground_truth}: reading {meta} needs scipy (pip install scipy)") from None
        try:
            synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
            for row in np.atleast_1d(synsets):
                number, wnid = int(row["ILSVRC2012_ID"]), str(row["WNID"])
                if 1 <= number <= 1000 and SYNSET.match(wnid):
                    found[number] = wnid
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise AtlasError(f"--labels {ground_truth}: {meta} is not the devkit's meta.mat ({exc.__class__.__name__})") from None
        where = meta
    else:
        raise AtlasError(f"--labels {ground_truth}: bare class numbers in the devkit's own numbering; keep the devkit's "
                         "meta.mat (or map_clsloc.txt) beside it, or give Kaggle's LOC_val_solution.csv or caffe's val.txt")
    if not found:
        raise AtlasError(f"--labels {ground_truth}: {where} maps no class number to a synset; give the devkit's own file")
    return found


def _read_file(path: Path) -> dict[str, str]:
    """{path, file name or stem: label} from a labels file, whichever of the known formats it is."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AtlasError(f"--labels {path}: cannot read it ({exc.__class__.__name__}); give a CSV of path,label") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise AtlasError(f"--labels {path}: empty; give a CSV of path,label")
    rows: list[tuple[str, str]] = []
    if all(INTEGER.match(line.strip()) for line in lines[:50]):  # the devkit's ground truth: line i, image i
        synsets = devkit_synsets(path)
        for i, line in enumerate(lines, start=1):
            number = int(line.strip()) if INTEGER.match(line.strip()) else 0
            if number not in synsets:
                raise AtlasError(f"--labels {path}: line {i} holds {line.strip()[:20]!r}, not a class number of the "
                                 "devkit (1 to 1000)")
            rows.append((f"ILSVRC2012_val_{i:08d}", synsets[number]))
    elif lines[0].replace(" ", "").lower().startswith("imageid,predictionstring"):
        for row in csv.reader(io.StringIO("\n".join(lines[1:]))):
            if len(row) >= 2 and row[1].split():
                rows.append((row[0].strip(), row[1].split()[0]))
    elif "," in lines[0]:
        reader = list(csv.reader(io.StringIO("\n".join(lines))))
        if reader and reader[0] and reader[0][0].strip().lower() in HEADERS:
            reader = reader[1:]
        for row in reader:
            if len(row) < 2:
                raise AtlasError(f"--labels {path}: the row {','.join(row)[:60]!r} has no label; each row is path,label")
            rows.append((row[0].strip(), row[1].strip()))
    else:
        for line in lines:
            parts = line.split()
            if len(parts) != 2:
                raise AtlasError(f"--labels {path}: the line {line[:60]!r} is not 'path label'; give a CSV of path,label")
            rows.append((parts[0], parts[1]))
    table: dict[str, str] = {}
    for image, label in rows:
        if not label:
            continue
        key = PurePosixPath(image.replace("\\", "/"))
        for variant in (key.as_posix(), key.name, key.stem):
            table.setdefault(variant, label)
    return table


def _lookup(table: dict[str, str], file: str) -> str | None:
    path = PurePosixPath(file)
    for key in (path.as_posix(), path.name, path.stem):
        if key in table:
            return table[key]
    return None
