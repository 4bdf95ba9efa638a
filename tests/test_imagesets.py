"""Image sets: listing through symlinked and looping folders, names that are not UTF-8, decoding what a
folder nobody here made holds (bombs, strips, 16-bit, animations) in bounded memory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.evidence.imagesets import (
    EXTREME_ASPECT,
    TOO_MANY_PIXELS,
    UNREADABLE,
    _Budget,
    decode_image,
    display_name,
    fit,
    list_images,
)
from tests.conftest import ROOT
from tests.hostile import NOT_UTF8, STRIP_SIDE, _png_header_only


def _save(path: Path, image: Image.Image | None = None, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (image or Image.new("RGB", (40, 30), (10, 20, 30))).save(path, **kwargs)
    return path


def test_symlinked_class_folders_are_followed_and_loops_end(tmp_path):
    store, root = tmp_path / "store", tmp_path / "images"
    _save(store / "cats/a.png")
    _save(store / "dogs/b.png")
    _save(root / "birds/c.png")
    (root / "cats").symlink_to(store / "cats")  # a folder of linked class directories
    (root / "birds/dogs").symlink_to(store / "dogs")  # a partly linked tree
    (store / "cats/again").symlink_to(store / "cats")  # loops: into itself, back to the top
    (root / "birds/top").symlink_to(root)
    (root / "also-cats").symlink_to(store / "cats")  # the same folder twice: listed once
    images = list_images(root)
    assert images.files == ("also-cats/a.png", "birds/c.png", "birds/dogs/b.png")


def test_a_name_that_is_not_utf8_is_listed_hashed_and_shown(tmp_path):
    _save(tmp_path / NOT_UTF8)
    _save(tmp_path / "plain.png")
    images = list_images(tmp_path)
    assert NOT_UTF8 in images.files
    assert len(images.sha256) == 64
    assert display_name(NOT_UTF8) == "caf\\xe9.png"
    display_name(NOT_UTF8).encode("utf-8")  # valid UTF-8, for JSON and pages
    assert decode_image(images.path(images.files.index(NOT_UTF8)), 32).shape == (32, 32, 3)


def test_utf8_names_hash_as_before(tmp_path):
    """The set's identity of existing atlases stays: UTF-8 names hash to the same bytes as before."""
    import hashlib

    _save(tmp_path / "é/ü.png")
    _save(tmp_path / "a.png")
    images = list_images(tmp_path)
    assert images.sha256 == hashlib.sha256("\n".join(images.files).encode()).hexdigest()


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    grey = np.full((40, 60), 32896, np.uint16)  # 0.502 of 65535: mid-grey
    path = _save(tmp_path / "grey16.png", Image.fromarray(grey))
    assert Image.open(path).mode == "I;16"
    rgb = decode_image(path, 32)
    assert rgb.shape == (32, 32, 3) and np.all(rgb == 128), rgb[0, 0]
    ramp = (np.linspace(0, 65535, 64)[None, :] * np.ones((64, 1))).astype(np.uint16)
    rgb = decode_image(_save(tmp_path / "ramp16.png", Image.fromarray(ramp)), 64)
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255 and 120 < rgb[0, 32, 0] < 136


@pytest.mark.parametrize("suffix", [".gif", ".png", ".webp"])
def test_animated_images_give_their_first_frame(tmp_path, suffix):
    frames = [Image.new("RGB", (50, 40), c) for c in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    path = tmp_path / f"anim{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert getattr(Image.open(path), "n_frames", 1) == 3
    rgb = decode_image(path, 32)
    assert rgb.shape == (32, 32, 3) and rgb[16, 16, 0] > 200 and rgb[16, 16, 1] < 30


def test_gif_and_tiff_are_listed(tmp_path):
    _save(tmp_path / "a.gif")
    _save(tmp_path / "b.TIFF")
    _save(tmp_path / "c.tif")
    assert list_images(tmp_path).files == ("a.gif", "b.TIFF", "c.tif")


def test_over_the_pixel_limit_and_extreme_strips_are_refused_from_the_header(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(30_000, 30_000))  # 900 Mpx promised in 69 bytes
    just_over = tmp_path / "just-over.png"
    just_over.write_bytes(_png_header_only(10_000, 9_000))  # over Pillow's limit, under twice it
    assert decode_image(bomb, 96) == TOO_MANY_PIXELS and decode_image(just_over, 96) == TOO_MANY_PIXELS
    strip = _save(tmp_path / "strip.png", Image.new("L", (1, STRIP_SIDE), 99))
    wide = _save(tmp_path / "wide.png", Image.new("RGB", (1100, 100)))
    assert decode_image(strip, 96) == EXTREME_ASPECT and decode_image(wide, 96) == EXTREME_ASPECT
    assert decode_image(_save(tmp_path / "panorama.png", Image.new("RGB", (900, 100))), 96).shape == (96, 96, 3)


def test_bad_files_are_unreadable_not_errors(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not a picture")
    whole = _save(tmp_path / "whole.jpg", Image.effect_noise((200, 200), 50).convert("RGB"))
    (tmp_path / "truncated.jpg").write_bytes(whole.read_bytes()[:400])
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    os.mkfifo(tmp_path / "pipe.png")  # opening it would wait for a writer forever
    (tmp_path / "x.jpg").mkdir()
    for name in ("empty.jpg", "text.png", "truncated.jpg", "gone.png", "pipe.png", "x.jpg"):
        assert decode_image(tmp_path / name, 32) == UNREADABLE, name


def test_palette_with_transparency_and_cmyk(tmp_path):
    palette = Image.new("P", (40, 40), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    rgb = decode_image(_save(tmp_path / "p.png", palette, transparency=0), 32)
    assert np.all(rgb == 255)  # index 0 is transparent: composed on white
    rgb = decode_image(_save(tmp_path / "c.jpg", Image.new("CMYK", (64, 48), (0, 255, 255, 0))), 32)
    assert rgb[16, 16, 0] > 230 and rgb[16, 16, 1] < 30


def test_fit_resamples_only_the_centre_square_in_bounded_memory():
    """A 1 x 20,000 strip resized whole before cropping took gigabytes: fit stays within 600 MB of
    address space (a fresh process, numpy and Pillow loaded)."""
    code = ("import resource\n"
            "resource.setrlimit(resource.RLIMIT_AS, (600 << 20, 600 << 20))\n"
            "from PIL import Image\n"
            "from generator.evidence.imagesets import fit\n"
            "out = fit(Image.new('RGB', (20000, 1), (1, 2, 3)), 224)\n"
            "assert out.size == (224, 224) and out.getpixel((0, 0)) == (1, 2, 3), out.getpixel((0, 0))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_fit_keeps_the_centre():
    image = Image.new("RGB", (300, 100), (0, 0, 0))
    image.paste((255, 255, 255), (100, 0, 200, 100))  # the centre square is white, the sides black
    out = np.asarray(fit(image, 50))
    assert out[:, 1:-1].min() >= 250  # (the outermost columns see a little of the black beyond, as resampling does)


def test_the_decoding_budget_holds_big_images_one_at_a_time():
    budget, held, most = _Budget(100), [0], [0]
    lock = threading.Lock()

    def work(amount):
        with budget.hold(amount):
            with lock:
                held[0] += min(amount, 100)
                most[0] = max(most[0], held[0])
            time.sleep(0.02)
            with lock:
                held[0] -= min(amount, 100)

    threads = [threading.Thread(target=work, args=(a,)) for a in (60, 60, 500, 30, 30, 70)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads) and most[0] <= 100
