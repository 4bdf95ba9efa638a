"""What a command reads from the atlas when it is not given: its model, its weights, and the folder of
images its dataset examples came from (``atlas trust``, and ``atlas generate`` for the accentuation
view, which starts from those images)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generator.atlas.files import read_json
from generator.errors import AtlasError
from generator.network.weights import SOURCES


@dataclass(frozen=True)
class AtlasDefaults:
    """What ``atlas trust`` reads from the atlas when it is not given: the model, its weights, the folder
    of images its dataset examples came from."""

    model: str
    weights: str | None  # None: the network's own default (a model file's weights)
    images: str  # empty: the atlas has no dataset examples (the pass then refuses, saying which command to run)


def atlas_defaults(out: str, model: str | None, weights: str | None, images: str | None,
                   zoo: tuple[str, ...]) -> AtlasDefaults:
    """``--model``, ``--weights`` and ``--images``, each from the atlas in ``out`` where not given.

    The model: the one atlas in ``out`` (a network of ``zoo``; a user's network needs its file), or
    VGG16 among several, as before atlas trust read the atlas. The
    weights: the manifest's source where it is one by name (imagenet, hed-bsds500, random) or a file
    found under that name beside the atlas or here. The images: the folder the examples came from, found
    by its recorded name here or beside the atlas, and only if it holds the very list of files (the
    manifest keeps a folder's name, never its path)."""
    root = Path(out)
    if model is None:
        found = sorted(p.parent.name for p in root.glob("*/manifest.json"))
        if len(found) > 1 and "vgg16" not in found:
            raise AtlasError(f"{out} holds atlases of {', '.join(found)}; say which with --model")
        model = "vgg16" if len(found) != 1 else found[0]  # several: VGG16, the command's default as before
        if model not in zoo:
            raise AtlasError(f"{out}/{model} is an atlas of a model file; give its path with --model")
    manifest = read_json(root / model / "manifest.json", "manifest") if (root / model / "manifest.json").exists() else {}
    if weights is None:
        name = (manifest.get("weights") or {}).get("name")
        if name in SOURCES:
            weights = name
        elif name:
            weights = _beside(root, name, Path.is_file)
            if weights is None and model in zoo:
                raise AtlasError(f"{out}/{model} was made with the weights file {name}; give its path with --weights")
    recorded = ((manifest.get("examples") or {}).get("images") or {})
    if images is None and recorded:  # without examples, the pass refuses with its own line
        folder = _beside(root, recorded.get("folder"), Path.is_dir) if recorded.get("folder") else None
        if folder is None or _list_sha256(folder) != recorded.get("list_sha256"):
            what = f"a folder named {recorded['folder']!r}" if recorded.get("folder") else "the images of its dataset examples"
            raise AtlasError(f"{out}/{model}: {what} was not found here or beside the atlas; give it with --images DIR")
        images = folder
    return AtlasDefaults(model, weights, images or "")


def _beside(root: Path, name: str, kind) -> str | None:
    """``name`` in the current folder, or beside the atlas folder ``root``, if it is of ``kind``."""
    for candidate in (Path(name), root.parent / name):
        if kind(candidate):
            return str(candidate)
    return None


def _list_sha256(folder: str) -> str | None:
    from generator.evidence.imagesets import list_images

    try:
        return list_images(folder).sha256
    except AtlasError:
        return None
