"""Image sets for the dataset examples: listing a folder, decoding one image as the network sees it, and
an offline set cut from the photographs that scikit-image's wheel carries.

An image set is a folder tree of JPEG/PNG/WebP/BMP/GIF/TIFF files taken in sorted path order, symlinked
folders followed (each real folder once, so a link loop ends); its identity is the sha256 of that sorted
list, so a changed set is noticed before a resumed pass mixes two of them. Every image becomes ``size``
x ``size`` RGB: used as it is when it already has that size, otherwise the centre square of it is
resampled to ``size`` (small images are upscaled). Folders nobody here made hold anything: a file that
cannot be decoded, one whose header promises more pixels than Pillow's decompression-bomb limit, or one
of an extreme aspect ratio is skipped with its reason, never decoded whole.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import stat
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generator.errors import AtlasError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
KINDS = "JPEG/PNG/WebP/BMP/GIF/TIFF"
# Why a file of the set is not used (the summary line counts them, the manifest names them).
UNREADABLE = "unreadable"
TOO_MANY_PIXELS = "too many pixels"
EXTREME_ASPECT = "extreme aspect ratio"
UNREADABLE_FOLDER = "unreadable folder"
SKIP_REASONS = (UNREADABLE, TOO_MANY_PIXELS, EXTREME_ASPECT, UNREADABLE_FOLDER)
# The centre square keeps 1/ratio of an image: past 10:1 what is left is a sliver of a banner, a strip
# or a scan line, not the picture the set is about (panoramas, 2:1 to 6:1, still pass), and a side of a
# few pixels blown up to ``size`` is mostly interpolation.
MAX_ASPECT = 10
# What the decoder threads may hold at once, estimated as 12 bytes a pixel (a decoded picture of up to 4
# bytes a pixel, its palette or alpha expanded, Pillow's premultiplied copy for the resampling): a big
# image waits for the others, and one larger than the budget decodes alone, so 16 threads never hold 16
# of them.
DECODE_BUDGET = 512 << 20
BYTES_PER_PIXEL = 12
# scikit-image's sample photographs whose licence is public domain or CC0 (see skimage.data's docstrings)
SAMPLE_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png", "coffee.png",
    "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg", "microaneurysms.png", "retina.jpg",
    "rocket.jpg", "text.png",
)
SAMPLE_NAME = "scikit-image sample photographs, tiled"
SAMPLE_LICENSE = "public domain and CC0"


def display_name(name: str) -> str:
    """A file name as UTF-8 text for JSON and pages: a byte that is not UTF-8 (a name from another
    system's encoding, kept by Python as a surrogate) written as ``\\xNN``, as a shell's ``$'...'`` does."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class ImageSet:
    root: Path
    files: tuple[str, ...]  # paths relative to root, posix, sorted
    unlisted: tuple[str, ...] = ()  # folders (relative, ending in /) that could not be read

    @property
    def sha256(self) -> str:
        # bytes as the file system has them: a name that is not UTF-8 hashes too (and UTF-8 names as before)
        return hashlib.sha256(b"\n".join(os.fsencode(f) for f in self.files)).hexdigest()

    def path(self, index: int) -> Path:
        return self.root / self.files[index]


def list_images(folder: str | Path) -> ImageSet:
    """Every image file under ``folder`` (recursively, through symlinked folders), sorted by path;
    one-line errors otherwise. A folder that cannot be read is kept in ``unlisted``, not dropped in
    silence."""
    root = Path(folder)
    if not root.is_dir():
        raise AtlasError(f"--images {folder}: no such folder; give a folder of {KINDS} images")
    files, unlisted, seen = [], [], set()

    def unreadable(exc: OSError) -> None:
        unlisted.append(_relative(root, exc.filename or str(root)) + "/")

    for here, folders, names in os.walk(root, onerror=unreadable, followlinks=True):
        try:
            info = os.stat(here)
        except OSError as exc:
            unreadable(exc)
            folders.clear()
            continue
        if (info.st_dev, info.st_ino) in seen:  # a second link to a folder already listed, or a loop
            folders.clear()
            continue
        seen.add((info.st_dev, info.st_ino))
        folders.sort()  # a folder linked twice is listed under the first of its names in path order
        files += [_relative(root, os.path.join(here, name)) for name in names
                  if os.path.splitext(name)[1].lower() in EXTENSIONS]
    if not files:
        raise AtlasError(f"--images {folder}: no {KINDS} images in it (searched all subfolders)")
    return ImageSet(root, tuple(sorted(files)), tuple(sorted(unlisted)))


def _relative(root: Path, path: str) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


class _Budget:
    """Bytes that threads may hold at once; a request larger than the whole waits until it is alone."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0
        self.changed = threading.Condition()

    @contextmanager
    def hold(self, amount: int):
        amount = min(amount, self.limit)
        with self.changed:
            self.changed.wait_for(lambda: self.held + amount <= self.limit)
            self.held += amount
        try:
            yield
        finally:
            with self.changed:
                self.held -= amount
                self.changed.notify_all()


_DECODING = _Budget(DECODE_BUDGET)


def refusal(width: int, height: int) -> str | None:
    """Why an image of this size is not decoded at all (None: it is)."""
    from PIL import Image

    if width < 1 or height < 1:
        return UNREADABLE
    if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        return TOO_MANY_PIXELS
    if max(width, height) > MAX_ASPECT * min(width, height):
        return EXTREME_ASPECT
    return None


def decode_image(path: Path, size: int) -> np.ndarray | str:
    """``size`` x ``size`` x 3 uint8 RGB, or the reason the file is skipped (one of ``SKIP_REASONS``).

    The size is read from the header first (Pillow opens lazily), so a decompression bomb or a 1 x
    20,000 strip is refused without decoding it; animated images give their first frame."""
    Image = _pillow()
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return UNREADABLE  # a broken link, a pipe or a device named like an image
        with Image.open(path) as image:
            reason = refusal(*image.size)
            if reason:
                return reason
            w, h = image.size
            if image.format == "JPEG" and min(w, h) > 2 * size:
                # decode a big JPEG at a reduced scale straight away (DCT scaling), keeping the
                # shorter side at least ``size``: several times faster, and the same result every run
                image.draft("RGB", (size * w // min(w, h), size * h // min(w, h)))
            with _DECODING.hold(image.size[0] * image.size[1] * BYTES_PER_PIXEL):
                image.load()
                small = fit(image, size)
            rgb = _to_rgb(small)
            return np.asarray(rgb, np.uint8)
    except (MemoryError, Image.DecompressionBombError):
        return TOO_MANY_PIXELS
    except Exception:  # noqa: BLE001 - whatever a file makes the decoder raise, the file is unreadable
        return UNREADABLE


@functools.cache
def _pillow():
    """Pillow's Image, its decompression-bomb warning silenced: such an image is refused and counted
    here (``refusal``), the warning would only add a line per file."""
    from PIL import Image

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    return Image


def load_image(path: Path, size: int) -> np.ndarray | None:
    """``size`` x ``size`` x 3 uint8 RGB, or None for a file that is skipped."""
    image = decode_image(path, size)
    return None if isinstance(image, str) else image


def _to_rgb(image):
    """Grayscale, palette, CMYK and alpha images as RGB (alpha composed on white); 16-bit images
    scaled to 8 bits (Pillow's own conversion clips them, and they come out white)."""
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode == "I":
        wide = np.asarray(image).astype(np.float64)  # I: the 32-bit mode 16-bit files may open in
        return Image.fromarray(np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def fit(image, size: int):
    """The centre square resampled to ``size`` x ``size``; an image already that size is kept as it is.

    Only the square is resampled (``box``), so a long strip costs its square, not its whole length
    upscaled; palette and bilevel images are expanded first (Pillow resamples them nearest-neighbour)."""
    from PIL import Image

    w, h = image.size
    if (w, h) == (size, size):
        return image
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    return image.resize((size, size), Image.BICUBIC, box=(left, top, left + side, top + side))


def sample_photos_folder() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise AtlasError("sample-images needs scikit-image's photographs: run `make install` (it installs the "
                         "pinned wheel with --no-deps)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def write_sample_tiles(folder: str | Path, size: int = 96, grid: int = 4) -> tuple[int, int]:
    """Cut each sample photograph (shorter side resized to ``grid`` x ``size``) into ``size`` px tiles,
    written as PNGs under ``folder``; returns (tiles, photographs)."""
    from PIL import Image

    if size < 16:
        raise AtlasError(f"--size {size}: give a tile side of at least 16 pixels")
    source = sample_photos_folder()
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AtlasError(f"{folder}: cannot write there ({exc.strerror or exc}); choose another folder") from None
    count = photos = 0
    for name in SAMPLE_PHOTOS:
        path = source / name
        if not path.is_file():
            continue
        with Image.open(path) as image:
            rgb = _to_rgb(image)
        w, h = rgb.size
        scale = grid * size / min(w, h)
        rgb = rgb.resize((round(w * scale), round(h * scale)), Image.LANCZOS)
        stem = Path(name).stem
        for row in range(rgb.size[1] // size):
            for col in range(rgb.size[0] // size):
                tile = rgb.crop((col * size, row * size, (col + 1) * size, (row + 1) * size))
                tile.save(out / f"{stem}-r{row}c{col}.png", optimize=True)
                count += 1
        photos += 1
    if not photos:
        raise AtlasError(f"{source}: none of scikit-image's sample photographs are there; reinstall it with `make install`")
    return count, photos
