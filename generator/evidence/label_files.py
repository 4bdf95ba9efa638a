"""A labels file, read and matched to the images: which row names which image.

Formats: a CSV of ``path,label`` (a header row is optional), ``path label`` lines (caffe's ImageNet
``val.txt``), Kaggle's ImageNet ``LOC_val_solution.csv``, and the devkit's
``ILSVRC2012_validation_ground_truth.txt`` (one number a line, read with the devkit's ``meta.mat`` or
``map_clsloc.txt`` beside it, which turn the numbers into synset ids).

Matching: a row's path may be the image's path under the image folder, a longer path ending in it (an
absolute path, a path under another root), its file name or its stem. An image takes the row whose
path shares the most trailing parts with its own; where two rows with different labels match it
equally well (``cat/0.png`` and ``dog/0.png`` for an image ``0.png``, or two rows of one path), the
file is refused, naming both rows: a label is never taken from whichever row came first.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from generator.errors import AtlasError

SYNSET = re.compile(r"^n\d{8}$")
INTEGER = re.compile(r"^\d+$")
HEADERS = {"path", "image", "file", "filename", "image_id", "imageid", "name", "id"}


@dataclass(frozen=True)
class Row:
    line: int  # 1-based line of the file
    path: str
    label: str


@dataclass
class LabelTable:
    """The rows of a labels file, indexed by their whole paths and by every trailing part of them."""

    path: Path
    rows: list[Row]
    _whole: dict[str, list[int]] = field(default_factory=dict, repr=False)
    _endings: dict[str, list[int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            parts = _parts(row.path)
            self._whole.setdefault("/".join(parts), []).append(i)
            for start in range(len(parts)):
                self._endings.setdefault("/".join(parts[start:]), []).append(i)

    def label_of(self, file: str) -> str | None:
        """The label of the image at ``file`` (its path under the image folder): from the rows whose
        path ends in the image's, or the image's path ends in theirs, sharing the most trailing parts
        (the file name's stem standing for it last); None when no row names it; one line when rows
        that match it equally well disagree."""
        parts = _parts(file)
        stemmed = parts[:-1] + (PurePosixPath(parts[-1]).stem,)
        for variant in (parts, stemmed):
            key = "/".join(variant)
            found = self._endings.get(key)  # rows as long as the image's path or longer, ending in it
            for start in range(1, len(variant)):
                if found:
                    break
                key = "/".join(variant[start:])
                found = self._whole.get(key)  # rows that are a shorter ending of the image's path
            if found:
                labels = {self.rows[i].label for i in found}
                if len(labels) > 1:
                    self._refuse(file, key, found)
                return self.rows[found[0]].label
        return None

    def _refuse(self, file: str, key: str, found: list[int]) -> None:
        first = self.rows[found[0]]
        other = next(self.rows[i] for i in found if self.rows[i].label != first.label)
        raise AtlasError(
            f"--labels {self.path}: rows {first.line} ({first.path}, {first.label}) and {other.line} ({other.path}, "
            f"{other.label}) both match the image {file} by {key!r}; give each image's path under the image folder "
            "so that every row names one image")


def _parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in PurePosixPath(path).parts if p not in ("/", "", "."))


def read_label_table(path: Path) -> LabelTable:
    """The rows of a labels file, whichever of the known formats it is; one line for anything else."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AtlasError(f"--labels {path}: cannot read it ({exc.__class__.__name__}); give a CSV of path,label") from None
    lines = [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise AtlasError(f"--labels {path}: empty; give a CSV of path,label")
    first = lines[0][1]
    if all(INTEGER.match(line.strip()) for _, line in lines[:50]):  # the devkit's ground truth: line i, image i
        rows = _devkit_rows(path, lines)
    elif first.replace(" ", "").lower().startswith("imageid,predictionstring"):
        rows = [Row(i, row[0].strip(), row[1].split()[0]) for i, row in _csv(lines[1:]) if len(row) >= 2 and row[1].split()]
    elif "," in first:
        parsed = _csv(lines)
        if parsed and parsed[0][1] and parsed[0][1][0].strip().lower() in HEADERS:
            parsed = parsed[1:]
        rows = []
        for i, row in parsed:
            if len(row) < 2:
                raise AtlasError(f"--labels {path}: row {i} ({','.join(row)[:60]!r}) has no label; each row is path,label")
            rows.append(Row(i, row[0].strip(), row[1].strip()))
    else:
        rows = []
        for i, line in lines:
            parts = line.split()
            if len(parts) != 2:
                raise AtlasError(f"--labels {path}: line {i} ({line[:60]!r}) is not 'path label'; give a CSV of path,label")
            rows.append(Row(i, parts[0], parts[1]))
    rows = [Row(r.line, r.path.replace("\\", "/"), r.label) for r in rows if r.label]
    return LabelTable(path, rows)


def _csv(lines: list[tuple[int, str]]) -> list[tuple[int, list[str]]]:
    return [(i, row) for (i, _), row in zip(lines, csv.reader(io.StringIO("\n".join(line for _, line in lines))))]


def _devkit_rows(path: Path, lines: list[tuple[int, str]]) -> list[Row]:
    synsets = devkit_synsets(path)
    rows = []
    for n, (i, line) in enumerate(lines, start=1):
        number = int(line.strip()) if INTEGER.match(line.strip()) else 0
        if number not in synsets:
            raise AtlasError(f"--labels {path}: line {i} holds {line.strip()[:20]!r}, not a class number of the "
                             "devkit (1 to 1000)")
        rows.append(Row(i, f"ILSVRC2012_val_{n:08d}", synsets[number]))
    return rows


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
