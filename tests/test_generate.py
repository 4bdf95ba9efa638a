"""`atlas generate` end to end on tiny sizes: layout, resume, determinism, interrupts, precision, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.config import RenderConfig
from generator.models import find_layer, load_model
from generator.render import LayerRenderer
from tests.conftest import ROOT, error_line, run_atlas

TINY = ["--weights", "random", "--size", "32", "--steps", "4"]


def pngs(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "atlas"
    proc = run_atlas("generate", *TINY, "--layers", "block1_conv2,block4_conv1", "--filters", "0-5",
                     "--batch", "4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_layout(reference):
    model = reference / "vgg16"
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["model"] == "vgg16" and manifest["weights"]["name"] == "random"
    assert len(manifest["weights"]["sha256"]) == 64 and manifest["config"]["steps"] == 4
    assert manifest["config_hash"] == RenderConfig(**manifest["config"]).hash
    assert {"python", "keras", "numpy"} <= set(manifest["versions"])
    assert [x["rendered"] for x in manifest["layers"] if x["rendered"]] == [6, 6]
    layer = json.loads((model / "block4_conv1/layer.json").read_text())
    assert [r["filter"] for r in layer["rows"]] == list(range(6))
    assert {"final_loss", "activation", "dead"} <= set(layer["rows"][0])
    record = json.loads((model / "block4_conv1/0003.json").read_text())
    assert (record["model"], record["layer"], record["filter"], record["seed"]) == ("vgg16", "block4_conv1", 3, 0)
    assert record["config_hash"] == manifest["config_hash"] and len(record["loss"]) == 4
    image = Image.open(model / "block4_conv1/0003.png")
    assert image.size == (32, 32) and image.mode == "RGB"
    assert not list(model.rglob(".tmp-*"))


def test_rerun_skips_and_resume_is_byte_identical(reference, tmp_path):
    import shutil

    out = tmp_path / "atlas"
    shutil.copytree(reference, out)
    again = run_atlas("generate", *TINY, "--layers", "block1_conv2,block4_conv1", "--filters", "0-5",
                      "--batch", "4", "--out", str(out))
    assert again.returncode == 0 and "0 filters rendered, 12 already done" in again.stdout
    # a run killed after the first batch of block4_conv1 and mid-way through its second
    for f in (1, 4, 5):
        (out / f"vgg16/block4_conv1/000{f}.json").unlink()
    (out / "vgg16/block4_conv1/0005.png").unlink()
    (out / "vgg16/block4_conv1/.tmp-abc").write_bytes(b"half")
    resumed = run_atlas("generate", *TINY, "--layers", "block1_conv2,block4_conv1", "--filters", "0-5",
                        "--batch", "4", "--out", str(out))
    assert resumed.returncode == 0 and "3 filters rendered, 9 already done" in resumed.stdout
    assert pngs(out) == pngs(reference)
    assert not list(out.rglob(".tmp-*"))


def test_same_seed_same_bytes_other_seed_other_pictures(reference, tmp_path):
    out = tmp_path / "atlas"
    proc = run_atlas("generate", *TINY, "--layers", "block4_conv1", "--filters", "2-3", "--batch", "4",
                     "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    # filters 2 and 3 in another batch composition: each filter's randomness is its own
    same = pngs(out)
    assert same == {k: v for k, v in pngs(reference).items() if k in same}
    other = tmp_path / "seed1"
    assert run_atlas("generate", *TINY, "--layers", "block4_conv1", "--filters", "2", "--seed", "1",
                     "--out", str(other)).returncode == 0
    assert (other / "vgg16/block4_conv1/0002.png").read_bytes() != same["vgg16/block4_conv1/0002.png"]


def test_other_config_refused_then_forced(reference, tmp_path):
    import shutil

    out = tmp_path / "atlas"
    shutil.copytree(reference, out)
    before = pngs(out)
    line = error_line(run_atlas("generate", "--weights", "random", "--size", "32", "--steps", "5",
                                "--layers", "block1_conv2", "--filters", "0", "--out", str(out)))
    assert "holds an atlas made with other settings" in line and "--force" in line
    assert pngs(out) == before
    forced = run_atlas("generate", "--weights", "random", "--size", "32", "--steps", "5", "--layers",
                       "block1_conv2", "--filters", "0", "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert list(pngs(out)) == ["vgg16/block1_conv2/0000.png"]


def _wait_for(predicate, timeout=300.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_ctrl_c_saves_the_batch_and_says_how_to_resume(tmp_path):
    out = tmp_path / "atlas"
    args = [sys.executable, "-m", "generator", "generate", "--weights", "random", "--size", "32", "--steps",
            "40", "--layers", "block3_conv1", "--filters", "0-63", "--batch", "2", "--out", str(out)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: len(list(out.rglob("*.json"))) >= 2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    done = sorted(out.glob("vgg16/block3_conv1/0*.json"))
    assert 2 <= len(done) < 64 and len(done) % 2 == 0  # whole batches only
    for path in done:
        assert json.loads(path.read_text())["filter"] >= 0
        assert Image.open(path.with_suffix(".png")).size == (32, 32)


@pytest.mark.slow
def test_kill_9_leaves_whole_files_only(tmp_path):
    out = tmp_path / "atlas"
    args = [sys.executable, "-m", "generator", "generate", "--weights", "random", "--size", "32", "--steps",
            "20", "--layers", "block2_conv1", "--filters", "0-63", "--batch", "1", "--out", str(out)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _wait_for(lambda: len(list(out.rglob("*.png"))) >= 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for path in out.rglob("0*.json"):
        assert json.loads(path.read_text())["layer"] == "block2_conv1"
        Image.open(path.with_suffix(".png")).load()
    for path in out.rglob("0*.png"):
        Image.open(path).load()  # every image that exists is whole


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layers", "block9_conv1"], "unknown layer 'block9_conv1'"),
        (["--model", "alexnet"], "unknown model 'alexnet'"),
        (["--layers", "block1_conv1", "--filters", "60-70"], "has filters 0-63; 60-70 is out of range"),
        (["--layers", "block5_conv1", "--size", "16"], "--size 16 is too small for block5_conv1"),
        (["--steps", "0"], "argument --steps: '0' must be positive"),
        (["--lr", "nan"], "argument --lr: 'nan' must be positive and finite"),
        (["--lr", "-0.1"], "argument --lr: '-0.1' must be positive and finite"),
        (["--precision", "fp8"], "argument --precision: invalid choice: 'fp8'"),
        (["--weights", "nothing.h5"], "nothing.h5: no such weights file"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "atlas"
    proc = run_atlas("generate", "--weights", "random", "--size", "32", "--steps", "2", *args, "--out", str(out))
    assert message in error_line(proc)
    assert not out.exists()


def test_unwritable_out_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    line = error_line(run_atlas("generate", *TINY, "--layers", "block1_conv1", "--filters", "0",
                                "--out", str(blocker / "atlas")))
    assert "--out" in line and "cannot write there" in line


@pytest.fixture(scope="module")
def random_model():
    return load_model(weights="random")


def test_mixed_precision_and_float32_fallback(random_model):
    layer = find_layer("block2_conv1")
    for precision in ("mixed_bfloat16", "mixed_float16"):
        cfg = RenderConfig(weights="random", size=32, steps=3, precision=precision)
        result = LayerRenderer(random_model, layer, cfg).render_batch([0, 1])
        assert not result[0].retried and result[0].precision == precision
        assert np.isfinite(result[0].loss).all()
    # a loss scale that overflows float16: the batch is redone in float32 and says so
    cfg = RenderConfig(weights="random", size=32, steps=3, precision="mixed_float16", loss_scale=1e30)
    result = LayerRenderer(random_model, layer, cfg).render_batch([0, 1])
    assert result[0].retried and result[0].precision == "float32"
    reference = LayerRenderer(random_model, layer, RenderConfig(weights="random", size=32, steps=3)).render_batch([0, 1])
    np.testing.assert_array_equal(result[0].image, reference[0].image)


def test_naive_method_is_the_original_script(random_model):
    cfg = RenderConfig(weights="random", method="naive", lr=10.0, size=32, steps=3)
    result = LayerRenderer(random_model, find_layer("block1_conv1"), cfg).render_batch([5])
    assert result[0].image.dtype == np.uint8 and len(result[0].loss) == 3
    assert result[0].loss[-1] <= result[0].loss[0]  # ascent: minus the activation goes down


@pytest.mark.slow
def test_jax_backend_matches_tensorflow(reference, tmp_path):
    out = tmp_path / "jax"
    proc = run_atlas("generate", *TINY, "--layers", "block1_conv2,block4_conv1", "--filters", "0-5", "--batch",
                     "4", "--backend", "jax", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "jax" in proc.stdout
    for layer in ("block1_conv2", "block4_conv1"):
        for f in range(6):
            a = np.asarray(Image.open(reference / f"vgg16/{layer}/{f:04d}.png"), np.int16)
            b = np.asarray(Image.open(out / f"vgg16/{layer}/{f:04d}.png"), np.int16)
            # Adam divides each gradient by its own magnitude, so float-level differences between the
            # backends' convolutions show up in the pixels: measured here up to 2.9 of 255 on average
            assert np.abs(a - b).mean() < 4.0, (layer, f)
            assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.8, (layer, f)
            la = json.loads((reference / f"vgg16/{layer}/{f:04d}.json").read_text())["loss"]
            lb = json.loads((out / f"vgg16/{layer}/{f:04d}.json").read_text())["loss"]
            np.testing.assert_allclose(la, lb, rtol=1e-2, atol=1e-2)


def test_progress_lines_when_not_a_terminal(reference):
    import io

    from generator.progress import Progress

    stream = io.StringIO()
    progress = Progress(10, 2, stream)
    progress.update(4, "block1_conv1", 1)
    progress.close()
    line = stream.getvalue().strip()
    assert line.startswith("layer 1/2 block1_conv1  filters 4/10") and "filters/s  ETA" in line


def test_out_of_memory_halves_the_batch_and_goes_on(tmp_path, random_model, monkeypatch):
    from generator import generate as gen_module
    from generator.selection import parse_filters

    real = LayerRenderer.render_batch
    seen = []

    def fake(self, filters, batch=None):
        seen.append(batch)
        if batch > 2:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")
        return real(self, filters, batch)

    monkeypatch.setattr(LayerRenderer, "render_batch", fake)
    layer = find_layer("block1_conv1")
    cfg = RenderConfig(weights="random", weights_sha256=random_model.weights_sha256, size=32, steps=2)
    summary = gen_module.generate(random_model, cfg, [(layer, parse_filters("0-7", layer))], str(tmp_path),
                                  batch=8, progress=gen_module.Progress(8, 1, open(os.devnull, "w")))
    assert summary.rendered == 8 and seen[:3] == [8, 4, 2]
    manifest = json.loads((tmp_path / "vgg16/manifest.json").read_text())
    assert manifest["layers"][0]["rendered"] == 8 and "retried_float32" in manifest["layers"][0]
