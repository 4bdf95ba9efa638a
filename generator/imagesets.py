"""Image sets for the dataset examples: listing a folder, decoding one image as the network sees it, and
an offline set cut from the photographs that scikit-image's wheel carries.

An image set is a folder tree of JPEG/PNG/WebP/BMP files taken in sorted path order; its identity is
the sha256 of that sorted list, so a changed set is noticed before a resumed pass mixes two of them.
Every image becomes ``size`` x ``size`` RGB: used as it is when it already has that size, otherwise its
shorter side is resized to ``size`` (small images are upscaled) and the centre cropped.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generator.errors import AtlasError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# scikit-image's sample photographs whose licence is public domain or CC0 (see skimage.data's docstrings)
SAMPLE_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png", "coffee.png",
    "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg", "microaneurysms.png", "retina.jpg",
    "rocket.jpg", "text.png",
)
SAMPLE_NAME = "scikit-image sample photographs, tiled"
SAMPLE_LICENSE = "public domain and CC0"


@dataclass(frozen=True)
class ImageSet:
    root: Path
    files: tuple[str, ...]  # paths relative to root, posix, sorted

    @property
    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.files).encode()).hexdigest()

    def path(self, index: int) -> Path:
        return self.root / self.files[index]


def list_images(folder: str | Path) -> ImageSet:
    """Every image file under ``folder`` (recursively), sorted by path; one-line errors otherwise."""
    root = Path(folder)
    if not root.is_dir():
        raise AtlasError(f"--images {folder}: no such folder; give a folder of JPEG/PNG/WebP/BMP images")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise AtlasError(f"--images {folder}: no JPEG/PNG/WebP/BMP images in it (searched all subfolders)")
    return ImageSet(root, tuple(files))


def load_image(path: Path, size: int) -> np.ndarray | None:
    """``size`` x ``size`` x 3 uint8 RGB, or None for a file that cannot be decoded."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            w, h = image.size
            if image.format == "JPEG" and min(w, h) > 2 * size:
                # decode a big JPEG at a reduced scale straight away (DCT scaling), keeping the
                # shorter side at least ``size``: several times faster, and the same result every run
                image.draft("RGB", (size * w // min(w, h), size * h // min(w, h)))
            image.load()
            rgb = _to_rgb(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return np.asarray(fit(rgb, size), np.uint8)


def _to_rgb(image):
    """Grayscale, palette, CMYK and alpha images as RGB (alpha composed on white)."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def fit(image, size: int):
    """Shorter side to ``size``, centre crop; an image already ``size`` x ``size`` is kept as it is."""
    from PIL import Image

    w, h = image.size
    if (w, h) == (size, size):
        return image
    scale = size / min(w, h)
    resized = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = resized.size
    left, top = (w - size) // 2, (h - size) // 2
    return resized.crop((left, top, left + size, top + size))


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
