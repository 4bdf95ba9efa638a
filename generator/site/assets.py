"""The pictures a build puts beside the pages, and the cache that spares re-encoding them.

A filter page shows AVIF display pictures, the grids WebP thumbnails; the lossless PNGs stay in the
atlas data. Each file is made by a small builder (``webp``, ``avif``, ``copy_file``, ``crop_first``),
and ``AssetCache`` takes a file over from the last build instead when its sources have the same size
and modification time as then.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from generator.errors import AtlasError

CACHE = ".assets.json"
THUMB = 96
DISPLAY = 320  # the picture beside its facts table; the lightbox shows it larger
# Display pictures are AVIF with full-resolution colour (4:4:4): WebP halves the colour resolution, which
# smears the one-pixel colour patterns of early layers (PSNR 21 dB at WebP quality 90, 25 dB here at a
# smaller file). The channel picture at quality 70; the six other views of a filter smaller at 60.
CHANNEL_QUALITY = 70
OTHER_VIEWS_QUALITY = 60
# The field view's picture is a few dozen pixels shown many times enlarged, where every coding error is a
# visible square; at this size near-lossless costs a few hundred bytes.
FIELD_QUALITY = 95
AVIF_SPEED = 9  # 3 ms a picture on a CPU core, like WebP; speed 8 is 5x slower for 4% smaller files

Builder = Callable[[Path], None]  # writes one file to the path it is given


class AssetCache:
    """Display files of the last build, taken over when their source is unchanged."""

    def __init__(self, old_root: Path, new_root: Path, elsewhere: dict[str, Path] | None = None) -> None:
        """``elsewhere``: where the last build's files went that are no longer under ``old_root`` (the
        pictures a ``--assets-url`` build put into its upload folder)."""
        self.old_root, self.new_root = old_root, new_root
        self.elsewhere = elsewhere or {}
        try:
            self.old = json.loads((old_root / CACHE).read_text())
        except (OSError, ValueError):
            self.old = {}
        self.new: dict[str, list] = {}
        self.reused = self.made = 0

    def make(self, rel: str, sources: list[Path], build: Builder) -> None:
        """Put the file ``rel`` (relative to the model folder) into the new build: linked from the old
        build if ``sources`` are as they were, else made by ``build(path)``."""
        key = [[s.name, s.stat().st_size, s.stat().st_mtime_ns] for s in sources]
        old, new = self.old_root / rel, self.new_root / rel
        if not old.is_file() and rel in self.elsewhere:
            old = self.elsewhere[rel]
        new.parent.mkdir(parents=True, exist_ok=True)
        if self.old.get(rel) == key and old.is_file():
            try:
                os.link(old, new)
            except OSError:
                shutil.copyfile(old, new)
            self.reused += 1
        else:
            build(new)
            self.made += 1
        self.new[rel] = key

    def save(self) -> None:
        (self.new_root / CACHE).write_text(json.dumps(self.new, separators=(",", ":")))


def _open_rgb(src: Path):
    """A stored picture as RGB, or one line naming the file and the command that rewrites it."""
    from PIL import Image

    try:
        return Image.open(src).convert("RGB")
    except OSError:
        raise AtlasError(f"{src}: not a readable image; rerun the command that wrote it") from None


def webp(src: Path, quality: int, side: int | None = None) -> Builder:
    """``src`` as a WebP, scaled to ``side`` × ``side`` pixels if given."""
    def build(target: Path) -> None:
        from PIL import Image

        image = _open_rgb(src)
        if side:
            image = image.resize((side, side), Image.LANCZOS)
        image.save(target, format="WEBP", quality=quality, method=4)

    return build


def avif(src: Path, quality: int) -> Builder:
    """``src`` as an AVIF with full-resolution colour."""
    def build(target: Path) -> None:
        from PIL import features

        if not features.check("avif"):
            raise AtlasError("this Pillow has no AVIF encoder for the display pictures; pip install 'pillow>=11.3'")
        _open_rgb(src).save(target, format="AVIF", quality=quality, subsampling="4:4:4", speed=AVIF_SPEED, max_threads=1)

    return build


def copy_file(src: Path) -> Builder:
    """``src`` as it is."""
    return lambda target: shutil.copyfile(src, target)


def crop_first(src: Path, cell: int) -> Builder:
    """The first ``cell`` × ``cell`` crop of a sprite (its strongest dataset example) as a WebP."""
    def build(target: Path) -> None:
        from PIL import Image

        Image.open(src).convert("RGB").crop((0, 0, cell, cell)).save(target, format="WEBP", quality=80)

    return build
