"""A hostile image folder, as the dataset-examples pass meets them (ImageNet dumps, scraped images,
shared drives), and its twin holding only the good images under the same names.

``make_hostile_folder(base)`` writes ``base/hostile`` (what a user points ``--images`` at),
``base/linked`` (folders reachable only through its symlinks) and ``base/good`` (the twin), and returns
what each bad file should be skipped for.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# Strings a user could give (an image-set name, a licence, a file name) that mean something to
# Markdown, HTML, Jinja or the snippets extension; each must reach the page as the text it is.
HOSTILE_STRINGS = (
    "[tiles](javascript:window.__pwned=1)",
    "<script>window.__pwned=1</script>",
    "<img src=x onerror=window.__pwned=1>",
    "](javascript:window.__pwned=1) `code` ```fence``` {{ 7*7 }} {% raw %} &amp; AT&T | a | b |",
    "*em* _u_ \\ --8<-- \"/etc/passwd\"\n# heading\n- item {: onclick=\"window.__pwned=1\" }",
)
HOSTILE_NAME = HOSTILE_STRINGS[0] + " " + HOSTILE_STRINGS[1] + " " + HOSTILE_STRINGS[3]
HOSTILE_LICENSE = HOSTILE_STRINGS[2] + " " + HOSTILE_STRINGS[4]
# File names: no "/" or NUL, anything else goes; the weights file must end in .h5
HOSTILE_FILES = ("[x](javascript:window.__pwned=1).png", "<img src=x onerror=window.__pwned=1>.png",
                 "`tick` {{x}} &amp; | *e*.png")
HOSTILE_WEIGHTS = "<svg onload=window.__pwned=1>[w](javascript:window.__pwned=2)`{{x}}`&amp;|*_\n.weights.h5"
NOT_UTF8 = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes, as a Windows share or an old archive has them

STRIP_SIDE = 50_000  # 1 x 50,000 px: resized whole before cropping it would take 1.8 GB at 96 px


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and header promising ``width`` x ``height`` RGB, with a token of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _good_images(tiles: list[Path]) -> dict[str, object]:
    """Relative path -> a function writing that good image to a path (the same bytes each call)."""
    rng = np.random.default_rng(7)
    out: dict[str, object] = {}
    for i, tile in enumerate(tiles[:4]):
        out[f"cats/tile{i:02d}.png"] = lambda p, t=tile: p.write_bytes(t.read_bytes())
    for i, tile in enumerate(tiles[4:8], 4):
        out[f"dogs/tile{i:02d}.png"] = lambda p, t=tile: p.write_bytes(t.read_bytes())
    for i, tile in enumerate(tiles[8:10], 8):
        out[f"dogs/more/tile{i:02d}.png"] = lambda p, t=tile: p.write_bytes(t.read_bytes())
    out["x.jpg/inside.png"] = lambda p: p.write_bytes(tiles[10].read_bytes())  # a folder named like an image
    gradient = (np.linspace(0, 65535, 120)[None, :] * np.ones((90, 1))).astype(np.uint16)
    out["special/16bit.png"] = lambda p: Image.fromarray(gradient).save(p)  # mode I;16
    cmyk = Image.fromarray(rng.integers(0, 255, (80, 120, 3), dtype=np.uint8)).convert("CMYK")
    out["special/cmyk.jpg"] = lambda p: cmyk.save(p, quality=90)

    indices = rng.integers(0, 4, (100, 100), dtype=np.uint8)

    def palette(p: Path) -> None:
        image = Image.fromarray(indices, "P")
        image.putpalette([255, 0, 0, 0, 128, 255, 30, 200, 30, 250, 250, 0] + [0] * 756)
        image.save(p, transparency=0)

    out["special/palette-alpha.png"] = palette
    frames = [Image.new("RGB", (110, 90), colour) for colour in ((200, 40, 40), (40, 200, 40), (40, 40, 200))]
    out["special/animated.gif"] = lambda p: frames[0].save(p, save_all=True, append_images=frames[1:], duration=80, loop=0)
    out["special/animated.png"] = lambda p: frames[1].save(p, save_all=True, append_images=frames[2:], duration=80)
    out["special/animated.webp"] = lambda p: frames[2].save(p, save_all=True, append_images=frames[:2], duration=80)
    out["special/big.png"] = lambda p: Image.new("RGB", (4000, 3000), (90, 120, 150)).save(p)  # 12 Mpx, allowed
    wide = rng.integers(0, 255, (100, 900, 3), dtype=np.uint8)
    out["special/wide.png"] = lambda p: Image.fromarray(wide).save(p)
    out[f"special/{NOT_UTF8}"] = lambda p: p.write_bytes(tiles[11].read_bytes())
    for name in HOSTILE_FILES:  # loud noise: they rank among the strongest examples of many filters
        noise = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
        out[f"names/{name}"] = lambda p, n=noise: Image.fromarray(n).save(p)
    return out


def make_hostile_folder(base: Path, tiles: list[Path]) -> dict[str, str]:
    """Write the hostile folder and its good twin under ``base``; returns {bad file: reason}."""
    hostile, linked, good = base / "hostile", base / "linked", base / "good"
    for relative, write in _good_images(tiles).items():
        for root in (good, hostile):
            path = root / relative
            if root is hostile and relative.split("/")[0] == "cats":  # a symlinked class folder
                path = linked / "cats" / relative.split("/", 1)[1]
            if root is hostile and relative.startswith("dogs/more/"):  # a partly linked tree
                path = linked / "more-dogs" / relative.split("/", 2)[2]
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path)
    (hostile / "cats").symlink_to(linked / "cats", target_is_directory=True)
    (hostile / "dogs/more").symlink_to(linked / "more-dogs", target_is_directory=True)
    (linked / "cats/loop").symlink_to(".", target_is_directory=True)  # a folder linked into itself
    (hostile / "dogs/up").symlink_to("..", target_is_directory=True)  # and one back to the top

    bad = hostile / "bad"
    bad.mkdir()
    Image.new("L", (1, STRIP_SIDE), 128).save(bad / "strip.png")
    (bad / "bomb.png").write_bytes(_png_header_only(30_000, 30_000))
    jpeg = bad / "whole.jpg"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(jpeg)
    (bad / "truncated.jpg").write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    jpeg.unlink()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.png").write_text("this is not a picture\n")
    (bad / "gone.png").symlink_to(base / "nowhere.png")
    os.mkfifo(bad / "pipe.png")
    return {"bad/strip.png": "extreme aspect ratio", "bad/bomb.png": "too many pixels",
            "bad/truncated.jpg": "unreadable", "bad/empty.jpg": "unreadable", "bad/text.png": "unreadable",
            "bad/gone.png": "unreadable", "bad/pipe.png": "unreadable"}
