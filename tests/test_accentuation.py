"""The accentuation view: a filter's strongest photograph, the filter raised, an earlier layer held near it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import error_line, run_atlas, tree_bytes

LAYERS = "block1_conv2,block3_conv3"  # held at the pixels, and at block2_conv2
SETTINGS = ["--weights", "random", "--filters", "0-1", "--size", "32", "--steps", "8"]
TILES = 48  # of the sample tiles: the examples pass reads these only


def test_the_start_spectrum_is_the_photograph_exactly():
    from generator.network.inputs import rgb_to_uint8
    from generator.render.accentuation import image_spectrum
    from generator.render.params import fourier_constants, fourier_to_rgb

    photo = np.random.default_rng(0).integers(0, 256, (33, 33, 3), dtype=np.uint8)
    rgb = np.asarray(fourier_to_rgb(image_spectrum(photo)[None], fourier_constants(33)))[0]
    assert np.array_equal(rgb_to_uint8(rgb), photo)  # every pixel, 0 and 255 included


def test_the_held_layer_is_about_a_block_earlier():
    from generator.network.layers import model_layers
    from generator.network.zoo import model_spec
    from generator.render.accentuation import earlier_layer

    layers = {x.name: x for x in model_layers(model_spec("vgg16"))}
    held = {name: getattr(earlier_layer(layers[name], tuple(layers.values())), "name", None)
            for name in ("block1_conv1", "block1_conv2", "block2_conv1", "block3_conv3", "block5_conv1")}
    assert held == {"block1_conv1": None, "block1_conv2": None, "block2_conv1": "block1_conv2",
                    "block3_conv3": "block2_conv2", "block5_conv1": "block4_conv1"}


@pytest.fixture(scope="module")
def accented(tmp_path_factory, sample_tiles) -> tuple[Path, Path, dict[str, bytes], dict[str, bytes]]:
    """Random VGG16 at 32 px: channel pictures of two block3_conv3 filters, dataset examples among 48
    tiles, then the accentuation view of those filters and of two of block1_conv2 (no channel view
    there: its contrast reference is the costly part), and the trust pass; with the atlas's pictures
    and filter files as they were before the view."""
    root = tmp_path_factory.mktemp("accent")
    tiles, out = root / "tiles", root / "atlas"
    tiles.mkdir()
    for path in sorted(sample_tiles.iterdir())[:TILES]:
        shutil.copy(path, tiles / path.name)
    for args in (["generate", *SETTINGS, "--layers", "block3_conv3"],
                 ["examples", "--weights", "random", "--images", str(tiles), "--layers", LAYERS, "--top", "2",
                  "--size", "32"]):
        proc = run_atlas(*args, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
    before_png, before_json = tree_bytes(out, "*.png"), tree_bytes(out, "*.json")
    proc = run_atlas("generate", *SETTINGS, "--layers", LAYERS, "--views", "accentuation", "--out", str(out))
    assert proc.returncode == 0, proc.stderr  # the image folder found beside the atlas, by its name
    assert "4 filter views rendered" in proc.stdout, proc.stdout
    proc = run_atlas("trust", "--weights", "random", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, tiles, before_png, before_json


def test_accentuation_is_stored_beside_the_other_views_raised_and_near_its_photo(accented):
    out, tiles, before_png, before_json = accented
    after = tree_bytes(out, "*.png")
    assert {k: after[k] for k in before_png} == before_png  # the channel pictures are untouched
    assert sorted(set(after) - set(before_png)) == [f"vgg16/{layer}/{f:04d}.accentuation.png"
                                                    for layer in LAYERS.split(",") for f in (0, 1)]
    manifest = json.loads((out / "vgg16/manifest.json").read_text())
    assert manifest["config_hash"] == json.loads(before_json["vgg16/manifest.json"])["config_hash"]
    for layer, held in (("block1_conv2", "input"), ("block3_conv3", "block2_conv2")):
        for f in (0, 1):
            record = json.loads((out / f"vgg16/{layer}/{f:04d}.json").read_text())
            entry = record["views"]["accentuation"]
            top = json.loads((out / f"vgg16/{layer}/{f:04d}.examples.json").read_text())["top"][0]
            assert entry["start"]["image"] == top["image"] and entry["held_layer"] == held
            # the start is the photo as the examples pass saw it: the same strongest unit
            assert entry["start"]["pre_relu_max"] == pytest.approx(top["value"], rel=1e-3, abs=1e-3)
            assert entry["activation"] > entry["start"]["activation"]  # the filter raised (its objective)
            photo = np.asarray(Image.open(tiles / top["image"]).convert("RGB").resize((32, 32), Image.BICUBIC), float)
            accent = np.asarray(Image.open(out / f"vgg16/{layer}/{f:04d}.accentuation.png"), float)
            if layer == "block1_conv2":
                assert np.abs(accent - photo).mean() < 0.5 * np.abs(128.0 - photo).mean()  # nearer it than grey
                continue
            old = json.loads(before_json[f"vgg16/{layer}/{f:04d}.json"])
            assert {k: record[k] for k in old} == old  # only new keys are added: the view and trust
            channel = np.asarray(Image.open(out / f"vgg16/{layer}/{f:04d}.png"), float)
            assert np.abs(accent - photo).mean() < 0.5 * np.abs(channel - photo).mean()  # still the photo
            trust = record["trust"]["accentuation"]
            assert trust["start"] == entry["start"]["image"] and 0 <= trust["two_image"] <= 1 and -1 <= trust["path"] <= 1
            assert record["trust"]["summary"]["accentuation_two_image"] == trust["two_image"]

    again = run_atlas("generate", *SETTINGS, "--layers", LAYERS, "--views", "accentuation", "--images", str(tiles),
                      "--out", str(out))
    assert again.returncode == 0 and "0 filter views rendered, 4 already done" in again.stdout, again.stderr
    assert tree_bytes(out, "*.accentuation.png") == {k: v for k, v in after.items() if "accentuation" in k}


def test_the_filter_page_shows_it_beside_its_photo(accented, tmp_path):
    from generator.site import build_site

    build_site(accented[0], tmp_path / "site_src")
    page = (tmp_path / "site_src/vgg16/block3_conv3/1.md").read_text()
    assert '=== "Accentuation"' in page and "0001.accentuation.avif" in page and "0001.top1.webp" in page
    tab = page.split('=== "Accentuation"')[1]
    assert "Accentuation view of" in tab and "the photograph it started from" in tab and "held near" in tab
    assert "Trust, against the other top examples: two-image prediction" in tab


def test_asked_for_without_examples_it_is_refused_in_one_line(tmp_path):
    proc = run_atlas("generate", *SETTINGS, "--layers", LAYERS, "--views", "accentuation", "--out", str(tmp_path / "atlas"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert error_line(proc).startswith("atlas generate: error: --views accentuation:") and "atlas examples" in error_line(proc)
