"""`atlas examples`: the real patches that drive each filter up and down, checked against the network,
planted pictures, interruption, bad image sets, a hostile folder, a full disk, checkpoints, bounded
memory; and the offline image set itself."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.atlas.store import AtlasStore
from generator.evidence import tracker
from generator.evidence.imagesets import (
    SAMPLE_PHOTOS,
    list_images,
    load_image,
    sample_photos_folder,
)
from generator.network import inputs
from generator.network.layers import find_layer
from generator.passes import examples_files
from generator.passes.examples_config import ExamplesConfig
from tests.conftest import HOSTILE_EXAMPLES, ROOT, error_line, run_atlas

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
    """Plant the rendered pictures of deep filters among the tiles: each should rank high for its filter
    (at 64 px, 7 of the 8 are their filter's strongest image, measured)."""
    from generator.render.config import RenderConfig
    from generator.render.renderer import LayerRenderer

    layer = find_layer("block4_conv3", "vgg16")
    filters = list(range(0, 512, 64))
    results = LayerRenderer(hed_model, layer, RenderConfig(weights="hed-bsds500", size=64, steps=64)).render_batch(filters, 8)
    images = tmp_path / "images"
    shutil.copytree(sample_tiles, images)
    for r in results:
        Image.fromarray(r.image).save(images / f"planted-{r.filter:04d}.png")
    out = tmp_path / "atlas"
    proc = run_atlas("examples", "--images", str(images), "--weights", "hed-bsds500", "--layers", "block4_conv3",
                     "--top", "8", "--size", "64", "--out", str(out))
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
    assert "25 images (skipped 1: 1 unreadable)" in proc.stdout
    record = json.loads((out / "vgg16/block1_conv1/0000.examples.json").read_text())
    assert sum(record["histogram"]["counts"]) == 24
    assert all(e["image"] != "broken.jpg" for e in record["top"] + record["bottom"])
    manifest = json.loads((out / "vgg16/manifest.json").read_text())["examples"]["images"]
    assert manifest["skipped_files"] == [{"image": "broken.jpg", "reason": "unreadable"}]


def test_bad_image_sets_are_one_line(tmp_path, sample_tiles):
    missing = error_line(run_atlas("examples", "--images", str(tmp_path / "nope"), "--weights", "random",
                                   "--out", str(tmp_path / "a")))
    assert "--images" in missing and "no such folder" in missing
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    empty = error_line(run_atlas("examples", "--images", str(tmp_path / "empty"), "--weights", "random",
                                 "--out", str(tmp_path / "a")))
    assert "no JPEG/PNG/WebP/BMP/GIF/TIFF images" in empty
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


# --- a hostile folder ----------------------------------------------------------------------------------


def test_hostile_folder_in_bounded_memory(hostile_atlas):
    """Bombs, strips, 16-bit, animations, links and loops: the pass ends within 2 GB (TensorFlow and the
    model alone take about 1 GB of it)."""
    _, proc, peak = hostile_atlas
    assert "Traceback" not in proc.stderr, proc.stderr
    assert peak <= 2 * 10**9, f"peak resident memory {peak / 1e9:.2f} GB"


def test_hostile_folder_counts_and_names_every_bad_file(hostile_atlas, hostile_images):
    out, proc, _ = hostile_atlas
    _, bad = hostile_images
    assert proc.stdout.startswith("30 images (skipped 7: 5 unreadable, 1 too many pixels, 1 extreme aspect ratio) "
                                  "through 2 layers"), proc.stdout
    images = json.loads((out / "vgg16/manifest.json").read_text())["examples"]["images"]
    assert {f["image"]: f["reason"] for f in images["skipped_files"]} == bad
    assert images["skipped"] == 7 and images["count"] == 30
    assert images["skipped_by_reason"] == {"unreadable": 5, "too many pixels": 1, "extreme aspect ratio": 1}


@pytest.fixture(scope="module")
def good_alone(hostile_images, hostile_weights, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("good-alone") / "atlas"
    proc = run_atlas("examples", "--images", str(hostile_images[0] / "good"), "--weights", str(hostile_weights),
                     *HOSTILE_EXAMPLES, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("23 images through 2 layers"), proc.stdout
    return out


def test_good_images_of_a_hostile_folder_give_what_they_give_alone(hostile_atlas, good_alone):
    """The same entries (image, value, position), histograms and crops: the bad files change nothing,
    the linked folders and the name that is not UTF-8 are all there."""
    hostile = hostile_atlas[0] / "vgg16"
    files = sorted(p.relative_to(good_alone / "vgg16") for p in (good_alone / "vgg16").rglob("*.examples.*"))
    assert len(files) == 2 * (64 + 128)
    seen = set()
    for name in files:
        alone, mixed = good_alone / "vgg16" / name, hostile / name
        if name.suffix == ".webp":
            assert alone.read_bytes() == mixed.read_bytes(), name
            continue
        a, b = json.loads(alone.read_bytes().decode("utf-8")), json.loads(mixed.read_bytes().decode("utf-8"))
        assert (a["top"], a["bottom"], a["histogram"]) == (b["top"], b["bottom"], b["histogram"]), name
        seen |= {e["image"] for e in a["top"] + a["bottom"]}
    assert {"cats/tile00.png", "dogs/more/tile08.png", "special/16bit.png", "special/animated.gif"} & seen


# --- disks and checkpoints --------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MB tmpfs (mounted as root), or the test is skipped with one line saying why."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True,
                              text=True)
        reason = proc.stderr.strip() or "needs root"
    except FileNotFoundError:
        proc, reason = None, "no mount command"
    if proc is None or proc.returncode != 0:
        pytest.skip(f"ENOSPC test skipped: cannot mount a small tmpfs here ({reason})")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_is_one_line_and_the_rerun_finishes_without_redoing_the_pass(small_disk, sample_tiles, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in sorted(os.listdir(sample_tiles))[:40]:
        shutil.copy(sample_tiles / name, images / name)
    args = ["examples", "--images", str(images), "--weights", "hed-bsds500", "--layers", "block2_conv1",
            "--top", "8", "--size", "96"]
    reference = run_atlas(*args, "--out", str(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr
    filler = small_disk / "filler"
    stats = os.statvfs(small_disk)
    filler.write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - (256 << 10)))  # 256 KB left
    out = small_disk / "atlas"
    line = error_line(run_atlas(*args, "--out", str(out)))
    assert "No space left on device" in line and str(out) in line and "rerun the same command" in line, line
    assert not list(out.rglob(".tmp-*"))  # no half-written file
    for path in out.rglob("*.examples.json"):
        json.loads(path.read_text())
    assert (out / "vgg16/.examples-state.npz").exists()  # the pass was saved before its files
    filler.unlink()
    resumed = run_atlas(*args, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert "the pass itself read from its checkpoint" in resumed.stdout
    assert _outputs(out / "vgg16") == _outputs(tmp_path / "reference/vgg16")


def _checkpointed(args: list[str], out: Path) -> None:
    """Run ``atlas examples`` and kill it at its first checkpoint."""
    state = out / "vgg16/.examples-state.npz"
    proc = subprocess.Popen([sys.executable, "-m", "generator", *args, "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 300
    while not state.exists() and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state.exists(), "the pass ended before its first checkpoint"


@pytest.mark.slow
def test_a_checkpoint_keeps_its_batch_when_batch_is_auto_and_says_when_it_is_not_used(sample_tiles, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in sorted(os.listdir(sample_tiles))[:160]:
        shutil.copy(sample_tiles / name, images / name)
    args = ["examples", "--images", str(images), "--weights", "hed-bsds500", "--layers", "block1_conv1",
            "--top", "4", "--size", "64", "--checkpoint", "8"]
    out = tmp_path / "atlas"
    _checkpointed([*args, "--batch", "8"], out)
    saved = tmp_path / "saved.npz"
    shutil.copy(out / "vgg16/.examples-state.npz", saved)
    resumed = run_atlas(*args, "--out", str(out))  # --batch auto would be 32 here
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at image" in resumed.stdout and "not used" not in resumed.stderr
    reference = run_atlas(*args, "--batch", "8", "--out", str(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr
    assert _outputs(out / "vgg16") == _outputs(tmp_path / "reference/vgg16")

    shutil.copy(saved, out / "vgg16/.examples-state.npz")
    other = run_atlas(*args, "--batch", "16", "--out", str(out))
    assert other.returncode == 0 and "resumed" not in other.stdout
    assert "was made with --batch 8 (this run: 16) and is not used" in other.stderr, other.stderr
    (out / "vgg16/.examples-state.npz").write_bytes(b"not a checkpoint")
    broken = run_atlas(*args, "--out", str(out))
    assert broken.returncode == 0 and "the checkpoint is unreadable (" in broken.stderr, broken.stderr


def test_writing_the_examples_holds_few_decoded_images_however_many_filters_and_examples(
        sample_tiles, tmp_path, monkeypatch):
    """Peak memory of writing the sprites (tracemalloc: numpy's arrays are traced) stays near the image
    cache (1 MiB here) as filters x examples grow 32-fold and the images they need to all of the set
    (measured 1.9 and 3.2 MiB; 8 MiB of decoded images before)."""
    monkeypatch.setattr(examples_files, "IMAGE_CACHE_BYTES", 1 << 20, raising=False)  # 37 images of 96 px
    image_set = list_images(sample_tiles)
    rng = np.random.default_rng(0)

    def peak(layer_name: str, top: int) -> tuple[int, int]:
        layer = find_layer(layer_name, "vgg16")
        c, width = layer.filters, layer.output_size(96)
        pick = lambda: np.stack([rng.choice(len(image_set.files), top, replace=False) for _ in range(c)], 1)  # noqa: E731
        state = {"top_val": -np.sort(-rng.random((top, c)), 0).astype(np.float32), "top_img": pick().astype(np.int32),
                 "top_pos": rng.integers(0, width * width, (top, c)).astype(np.int32),
                 "bot_val": -np.sort(-rng.random((top, c)), 0).astype(np.float32), "bot_img": pick().astype(np.int32),
                 "bot_pos": rng.integers(0, width * width, (top, c)).astype(np.int32),
                 "hist": np.zeros((c, tracker.HIST_BINS), np.int32)}
        config = ExamplesConfig(model="vgg16", weights_sha256="0" * 64, size=96, top=top, images=image_set)
        store = AtlasStore(tmp_path / f"{layer_name}-{top}", "vgg16")
        needed = len(set(state["top_img"].ravel()) | set(state["bot_img"].ravel()))
        with ThreadPoolExecutor(max_workers=2) as pool:
            tracemalloc.start()
            try:
                examples_files._write_examples(store, [layer], [state], config, pool)
                return tracemalloc.get_traced_memory()[1], needed
            finally:
                tracemalloc.stop()

    peak("block1_conv1", 2)  # imports and first-call caches, not measured
    small, needed_small = peak("block1_conv1", 2)  # 64 filters x 2 examples each way
    large, needed_large = peak("block3_conv1", 16)  # 256 filters x 16
    assert needed_large * 96 * 96 * 3 > 7 << 20  # all of them decoded at once: over 7 MiB
    # what grows besides the cache: one sprite per thread (16 crops wide) and a hundred bytes per example
    assert small < 4 << 20 and large < 4 << 20, (
        f"{small / 2**20:.1f} MiB for {needed_small} images, {large / 2**20:.1f} MiB for {needed_large}")


@pytest.mark.slow
def test_two_devices_find_the_examples_of_one(sample_tiles, tmp_path):
    """Batches go to the devices in turn and their states are merged at every checkpoint and at the end,
    by value and then image: the files are those of one device, byte for byte."""
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    args = ["examples", "--backend", "jax", "--images", str(sample_tiles), "--weights", "hed-bsds500", "--layers",
            "block1_conv2", "--top", "4", "--size", "64", "--batch", "16", "--checkpoint", "64"]
    one = run_atlas(*args, "--devices", "1", "--out", str(tmp_path / "one"), env=env)
    two = run_atlas(*args, "--out", str(tmp_path / "two"), env=env)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert two.stderr.startswith("jax on 2 devices: 2 × CPU (")
    assert len(_outputs(tmp_path / "one")) == 2 * 64 and _outputs(tmp_path / "one") == _outputs(tmp_path / "two")
