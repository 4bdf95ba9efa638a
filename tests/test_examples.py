"""`atlas examples`: the real patches that drive each filter up and down, checked against the network,
planted pictures, interruption, bad image sets; and the offline image set itself."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator import inputs
from generator.imagesets import (
    SAMPLE_PHOTOS,
    list_images,
    load_image,
    sample_photos_folder,
)
from generator.layers import find_layer
from tests.conftest import ROOT, error_line, run_atlas

ARGS = ["--weights", "hed-bsds500", "--layers", "block2_conv2,block4_conv3", "--top", "8", "--size", "96"]


def test_sample_photos_are_the_public_domain_set():
    folder = sample_photos_folder()
    assert all((folder / name).is_file() for name in SAMPLE_PHOTOS)


def test_sample_tiles(sample_tiles):
    images = list_images(sample_tiles)
    assert 250 <= len(images.files) <= 600
    assert all(Image.open(images.path(i)).size == (96, 96) for i in range(0, len(images.files), 37))


@pytest.fixture(scope="module")
def examples_atlas(sample_tiles, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("examples") / "atlas"
    proc = run_atlas("examples", "--images", str(sample_tiles), *ARGS, "--images-name", "tiles",
                     "--images-license", "CC0", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "examples of 640 filters" in proc.stdout
    return out


def test_every_filter_has_its_examples_and_sprite(examples_atlas, sample_tiles):
    for layer, count in (("block2_conv2", 128), ("block4_conv3", 512)):
        files = sorted((examples_atlas / "vgg16" / layer).glob("*.examples.json"))
        assert len(files) == count
        assert len(list((examples_atlas / "vgg16" / layer).glob("*.examples.webp"))) == count
    record = json.loads((examples_atlas / "vgg16/block4_conv3/0007.examples.json").read_text())
    assert len(record["top"]) == 8 and len(record["bottom"]) == 8
    values = [e["value"] for e in record["top"]]
    assert values == sorted(values, reverse=True)
    lows = [e["value"] for e in record["bottom"]]
    assert lows == sorted(lows) and lows[0] <= values[-1]
    assert sum(record["histogram"]["counts"]) == len(list_images(sample_tiles).files)
    sprite = Image.open(examples_atlas / "vgg16/block4_conv3/0007.examples.webp")
    assert sprite.size == (8 * 64, 2 * 64)
    manifest = json.loads((examples_atlas / "vgg16/manifest.json").read_text())
    assert manifest["examples"]["images"]["count"] == len(list_images(sample_tiles).files)
    assert manifest["examples"]["images"]["name"] == "tiles" and manifest["examples"]["images"]["license"] == "CC0"
    assert manifest["examples"]["layers"] == ["block2_conv2", "block4_conv3"]
    assert not (examples_atlas / "vgg16/.examples-state.npz").exists()


def test_recorded_values_and_positions_are_what_the_network_says(examples_atlas, sample_tiles, hed_model):
    for layer_name, filters in (("block2_conv2", [3, 77]), ("block4_conv3", [0, 100, 511])):
        layer = find_layer(layer_name, "vgg16")
        net = hed_model.tap_net([layer])
        for f in filters:
            record = json.loads((examples_atlas / f"vgg16/{layer_name}/{f:04d}.examples.json").read_text())
            for kind, pick in (("top", np.max), ("bottom", np.min)):
                entry = record[kind][0]
                image = load_image(sample_tiles / entry["image"], 96)
                maps = np.asarray(net(inputs.from_uint8(image[None], "caffe"), net.variables)[0])[0, :, :, f]
                assert maps[entry["y"], entry["x"]] == pytest.approx(entry["value"], rel=1e-4, abs=1e-3)
                assert pick(maps) == pytest.approx(entry["value"], rel=1e-4, abs=1e-3)


@pytest.mark.slow
def test_a_filters_own_picture_is_found_near_the_top(hed_model, sample_tiles, tmp_path):
    """Plant the rendered pictures of deep filters among the tiles: each should rank high for its filter."""
    from generator.config import RenderConfig
    from generator.render import LayerRenderer

    layer = find_layer("block4_conv3", "vgg16")
    filters = list(range(0, 512, 64))
    results = LayerRenderer(hed_model, layer, RenderConfig(weights="hed-bsds500", size=96, steps=64)).render_batch(filters, 8)
    images = tmp_path / "images"
    shutil.copytree(sample_tiles, images)
    for r in results:
        Image.fromarray(r.image).save(images / f"planted-{r.filter:04d}.png")
    out = tmp_path / "atlas"
    proc = run_atlas("examples", "--images", str(images), "--weights", "hed-bsds500", "--layers", "block4_conv3",
                     "--top", "8", "--size", "96", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    found = 0
    for f in filters:
        record = json.loads((out / f"vgg16/block4_conv3/{f:04d}.examples.json").read_text())
        found += any(e["image"] == f"planted-{f:04d}.png" for e in record["top"][:3])
    assert found >= len(filters) * 3 // 4, found


def _outputs(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.examples.*"))}


@pytest.mark.slow
def test_killed_and_resumed_equals_uninterrupted(examples_atlas, sample_tiles, tmp_path):
    out = tmp_path / "atlas"
    args = [sys.executable, "-m", "generator", "examples", "--images", str(sample_tiles), *ARGS,
            "--images-name", "tiles", "--images-license", "CC0", "--batch", "32", "--checkpoint", "64", "--out", str(out)]
    state = out / "vgg16/.examples-state.npz"
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 300
    while not state.exists() and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state.exists(), "the pass ended before its first checkpoint"
    resumed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at image" in resumed.stdout
    assert _outputs(out / "vgg16") == _outputs(examples_atlas / "vgg16")


def test_unreadable_files_are_skipped_and_counted(sample_tiles, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in sorted(os.listdir(sample_tiles))[:20]:
        shutil.copy(sample_tiles / name, images / name)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    Image.new("L", (300, 40), 200).save(images / "gray-wide.png")  # grayscale, not square: converted, cropped
    Image.new("RGBA", (10, 10), (255, 0, 0, 128)).save(images / "tiny-alpha.png")  # smaller than a field: upscaled
    Image.new("CMYK", (96, 96)).save(images / "cmyk.jpg")
    Image.radial_gradient("L").resize((1000, 700)).convert("RGB").save(images / "big.jpg")  # decoded at a reduced scale
    out = tmp_path / "atlas"
    proc = run_atlas("examples", "--images", str(images), "--weights", "hed-bsds500", "--layers", "block1_conv1",
                     "--top", "4", "--size", "96", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "25 images (1 unreadable, skipped)" in proc.stdout
    record = json.loads((out / "vgg16/block1_conv1/0000.examples.json").read_text())
    assert sum(record["histogram"]["counts"]) == 24
    assert all(e["image"] != "broken.jpg" for e in record["top"] + record["bottom"])


def test_bad_image_sets_are_one_line(tmp_path, sample_tiles):
    missing = error_line(run_atlas("examples", "--images", str(tmp_path / "nope"), "--weights", "random",
                                   "--out", str(tmp_path / "a")))
    assert "--images" in missing and "no such folder" in missing
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    empty = error_line(run_atlas("examples", "--images", str(tmp_path / "empty"), "--weights", "random",
                                 "--out", str(tmp_path / "a")))
    assert "no JPEG/PNG/WebP/BMP images" in empty
    assert not (tmp_path / "a").exists()


def test_another_image_set_is_refused_then_forced(examples_atlas, sample_tiles, tmp_path):
    out = tmp_path / "atlas"
    shutil.copytree(examples_atlas, out)
    images = tmp_path / "fewer"
    images.mkdir()
    for name in sorted(os.listdir(sample_tiles))[:10]:
        shutil.copy(sample_tiles / name, images / name)
    line = error_line(run_atlas("examples", "--images", str(images), *ARGS, "--out", str(out)))
    assert "holds examples from another image set or size" in line and "--force" in line
    proc = run_atlas("examples", "--images", str(images), "--weights", "hed-bsds500", "--layers", "block2_conv2",
                     "--top", "8", "--size", "96", "--force", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert not list((out / "vgg16/block4_conv3").glob("*.examples.*"))  # the old set's examples are gone
    assert json.loads((out / "vgg16/manifest.json").read_text())["examples"]["images"]["count"] == 10


def test_other_weights_than_the_atlas_are_refused(examples_atlas, sample_tiles, tmp_path):
    line = error_line(run_atlas("examples", "--images", str(sample_tiles), "--weights", "random", "--layers",
                                "block1_conv1", "--size", "96", "--out", str(examples_atlas)))
    assert "holds an atlas of other weights" in line
