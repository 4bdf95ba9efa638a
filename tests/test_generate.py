"""`atlas generate` end to end on tiny sizes: layout, views, resume, determinism, interrupts, crash
windows, concurrent runs, precision, out of memory, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.network.layers import find_layer
from generator.render.config import RenderConfig
from generator.render.renderer import LayerRenderer
from tests.conftest import ROOT, error_line, run_atlas

TINY = ["--weights", "random", "--size", "32", "--steps", "4"]
WORK = ["--layers", "block1_conv2,block4_conv1", "--filters", "0-5", "--batch", "4"]


def pngs(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "atlas"
    proc = run_atlas("generate", *TINY, *WORK, "--out", str(out))
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
    assert {"final_loss", "activation", "dead", "coverage", "views"} <= set(layer["rows"][0])
    record = json.loads((model / "block4_conv1/0003.json").read_text())
    assert (record["model"], record["layer"], record["filter"], record["seed"]) == ("vgg16", "block4_conv1", 3, 0)
    assert record["config_hash"] == manifest["config_hash"] and len(record["loss"]) == 4
    image = Image.open(model / "block4_conv1/0003.png")
    assert image.size == (32, 32) and image.mode == "RGB"
    assert not list(model.rglob(".tmp-*"))


def test_files_are_readable_by_others_under_the_usual_umask(reference):
    mode = stat.S_IMODE((reference / "vgg16/block4_conv1/0003.png").stat().st_mode)
    assert mode == 0o644, oct(mode)  # the test process runs with umask 022
    assert stat.S_IMODE((reference / "vgg16/manifest.json").stat().st_mode) == 0o644


def test_views_are_written_per_view_and_resume_per_view(tmp_path):
    out = tmp_path / "atlas"
    args = ["generate", *TINY, "--layers", "block2_conv1", "--filters", "0-2", "--batch", "2", "--out", str(out)]
    assert run_atlas(*args).returncode == 0
    proc = run_atlas(*args[:-2], "--views", "all", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "9 filter views rendered, 3 already done" in proc.stdout  # the channel view was there
    folder = out / "vgg16/block2_conv1"
    names = sorted(p.name for p in folder.glob("0001*.png"))
    assert names == ["0001.diversity-1.png", "0001.diversity-2.png", "0001.diversity-3.png", "0001.diversity-4.png",
                     "0001.negative.png", "0001.neuron.png", "0001.png"]
    record = json.loads((folder / "0001.json").read_text())
    assert set(record["views"]) == {"neuron", "negative", "diversity"}
    assert len(record["views"]["neuron"]["loss"]) == 4 and record["views"]["diversity"]["files"][3] == "0001.diversity-4.png"
    assert json.loads((folder / "layer.json").read_text())["rows"][1]["views"] == ["channel", "neuron", "negative", "diversity"]
    again = run_atlas(*args[:-2], "--views", "all", "--out", str(out))
    assert "0 filter views rendered, 12 already done" in again.stdout


def test_the_field_view_is_written_for_early_layers_only_read_back_and_changes_no_other_picture(reference, tmp_path):
    from generator.atlas.store import AtlasStore
    from generator.network.layers import find_layer

    out = tmp_path / "atlas"
    proc = run_atlas("generate", *TINY, *WORK, "--views", "channel,field", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "18 filter views rendered, 0 already done" in proc.stdout  # block4_conv1 (60 px field) has none
    folder = out / "vgg16/block1_conv2"  # receptive field 5 px at 32 px: a 20 px canvas
    assert Image.open(folder / "0003.field.png").size == (20, 20)
    record = json.loads((folder / "0003.json").read_text())
    field = record["views"]["field"]
    assert field["files"] == ["0003.field.png"] and field["canvas"] == 20 and len(field["loss"]) == 4
    assert {"centre", "pre_relu_max", "final_loss"} <= set(field)
    assert json.loads((folder / "layer.json").read_text())["rows"][3]["views"] == ["channel", "field"]
    assert not list((out / "vgg16/block4_conv1").glob("*.field.png"))
    layers = {x["name"]: x["views"] for x in json.loads((out / "vgg16/manifest.json").read_text())["layers"]}
    assert layers["block1_conv2"]["field"] == 6 and layers["block4_conv1"]["field"] == 0
    store = AtlasStore(out, "vgg16")
    layer = find_layer("block1_conv2", "vgg16")
    assert store.done_views(layer, store.records(layer, record["config_hash"])[3]) == ["channel", "field"]
    assert {k: v for k, v in pngs(out).items() if ".field." not in k} == pngs(reference)  # the same channel bytes
    again = run_atlas("generate", *TINY, *WORK, "--views", "channel,field", "--out", str(out))
    assert again.returncode == 0 and "0 filter views rendered, 18 already done" in again.stdout


def test_rerun_skips_and_resume_is_byte_identical(reference, tmp_path):
    out = tmp_path / "atlas"
    shutil.copytree(reference, out)
    again = run_atlas("generate", *TINY, *WORK, "--out", str(out))
    assert again.returncode == 0 and "0 filter views rendered, 12 already done" in again.stdout
    # a run killed after the first batch of block4_conv1 and mid-way through its second
    for f in (1, 4, 5):
        (out / f"vgg16/block4_conv1/000{f}.json").unlink()
    (out / "vgg16/block4_conv1/0005.png").unlink()
    (out / "vgg16/block4_conv1/.tmp-abc").write_bytes(b"half")
    resumed = run_atlas("generate", *TINY, *WORK, "--out", str(out))
    assert resumed.returncode == 0 and "3 filter views rendered, 9 already done" in resumed.stdout
    assert pngs(out) == pngs(reference)
    assert not list(out.rglob(".tmp-*"))


def test_a_stale_layer_table_is_rebuilt_from_the_files(reference, tmp_path):
    """Killed after a layer's last filter files but before its layer.json: the next run fixes it."""
    out = tmp_path / "atlas"
    shutil.copytree(reference, out)
    table = out / "vgg16/block4_conv1/layer.json"
    data = json.loads(table.read_text())
    data["rows"] = data["rows"][:2]
    table.write_text(json.dumps(data))
    proc = run_atlas("generate", *TINY, *WORK, "--out", str(out))
    assert proc.returncode == 0 and "0 filter views rendered" in proc.stdout
    assert [r["filter"] for r in json.loads(table.read_text())["rows"]] == list(range(6))


def test_same_seed_same_bytes_other_seed_other_pictures(reference, tmp_path):
    out = tmp_path / "atlas"
    proc = run_atlas("generate", *TINY, "--layers", "block4_conv1", "--filters", "2-3", "--batch", "4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    same = pngs(out)  # filters 2 and 3 in another batch composition: each filter's randomness is its own
    assert same == {k: v for k, v in pngs(reference).items() if k in same}
    other = tmp_path / "seed1"
    assert run_atlas("generate", *TINY, "--layers", "block4_conv1", "--filters", "2", "--seed", "1",
                     "--out", str(other)).returncode == 0
    assert (other / "vgg16/block4_conv1/0002.png").read_bytes() != same["vgg16/block4_conv1/0002.png"]


def test_other_config_refused_then_forced(reference, tmp_path):
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


def test_two_models_share_one_out(reference, tmp_path):
    out = tmp_path / "atlas"
    shutil.copytree(reference, out)
    proc = run_atlas("generate", "--model", "resnet50", "--weights", "random", "--layers", "conv3_block1_out",
                     "--filters", "0-3", "--size", "64", "--steps", "8", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.glob("resnet50/conv3_block1_out/000[0-3].png"))) == 4
    assert pngs(out / "vgg16") == pngs(reference / "vgg16")


def _wait_for(predicate, timeout=300.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


LONG = [sys.executable, "-m", "generator", "generate", "--weights", "random", "--size", "32", "--steps", "40",
        "--layers", "block3_conv1", "--filters", "0-63", "--batch", "2"]


@pytest.mark.slow
def test_ctrl_c_saves_the_batch_and_says_how_to_resume(tmp_path):
    out = tmp_path / "atlas"
    proc = subprocess.Popen([*LONG, "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: len(list(out.rglob("0*.json"))) >= 2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    done = sorted(out.glob("vgg16/block3_conv1/0*.json"))
    assert 2 <= len(done) < 64 and len(done) % 2 == 0  # whole batches only
    for path in done:
        assert Image.open(path.with_suffix(".png")).size == (32, 32)


@pytest.mark.slow
def test_kill_9_leaves_whole_files_and_a_second_run_is_refused_meanwhile(tmp_path):
    out = tmp_path / "atlas"
    proc = subprocess.Popen([*LONG, "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _wait_for(lambda: len(list(out.rglob("0*.png"))) >= 2)
    line = error_line(run_atlas("generate", *TINY, "--layers", "block1_conv1", "--filters", "0", "--out", str(out)))
    assert "is being written by another run (pid" in line and "atlas generate" in line
    assert not (out / "vgg16/block1_conv1").exists()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for path in out.rglob("0*.json"):
        assert json.loads(path.read_text())["layer"] == "block3_conv1"
        Image.open(path.with_suffix(".png")).load()
    for path in out.rglob("0*.png"):
        Image.open(path).load()  # every image that exists is whole
    # the lock died with its process: the next run goes on where it stopped
    resumed = run_atlas("generate", "--weights", "random", "--size", "32", "--steps", "40", "--layers", "block3_conv1",
                        "--filters", "0-3", "--batch", "2", "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr


def test_a_live_runs_temporary_files_are_not_touched(tmp_path):
    """Temporaries are removed only under the lock: a refused run deletes nothing."""
    from generator.atlas.locks import AtlasLock
    from generator.paths import AtlasPaths

    out = tmp_path / "atlas"
    paths = AtlasPaths(out, "vgg16")
    with AtlasLock(paths):
        live = paths.model_dir / "block1_conv1" / ".tmp-live"
        live.parent.mkdir(parents=True)
        live.write_bytes(b"being written")
        proc = run_atlas("generate", *TINY, "--layers", "block1_conv1", "--filters", "0", "--out", str(out))
        assert "being written by another run" in error_line(proc)
        assert live.read_bytes() == b"being written"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layers", "block9_conv1"], "unknown layer 'block9_conv1'"),
        (["--model", "alexnet"], "argument --model: invalid choice: 'alexnet'"),
        (["--layers", "block1_conv1", "--filters", "60-70"], "has filters 0-63; 60-70 is out of range"),
        (["--layers", "block5_conv1", "--size", "16"], "--size 16 is too small for block5_conv1"),
        (["--size", "8"], "--size 8: give an image side of at least 16 pixels"),
        (["--steps", "0"], "argument --steps: '0' must be positive"),
        (["--seed", "-1"], "argument --seed: '-1' must be from 0 to 4294967295"),
        (["--lr", "nan"], "argument --lr: 'nan' must be positive and finite"),
        (["--precision", "fp8"], "argument --precision: invalid choice: 'fp8'"),
        (["--views", "side"], "--views 'side': choose from channel, neuron, negative, diversity"),
        (["--method", "naive", "--views", "neuron"], "the naive method renders the channel view only"),
        (["--weights", "nothing.h5"], "nothing.h5: no such weights file"),
        (["--model", "vgg19", "--weights", "hed-bsds500"], "hed-bsds500 is a VGG16 backbone, not vgg19"),
    ],
)
def test_bad_input_is_one_line_writes_nothing_and_imports_no_backend(tmp_path, args, message):
    out = tmp_path / "atlas"
    code = ("import sys; from generator.cli.main import main; rc = main(sys.argv[1:]); "
            "print('backend imported' if {'tensorflow', 'jax', 'keras'} & set(sys.modules) else 'no backend'); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "generate", "--weights", "random", "--size", "32",
                           "--steps", "2", *args, "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert message in error_line(proc)
    assert "no backend" in proc.stdout or proc.stdout == ""  # argparse errors exit before the print
    assert not out.exists()


def test_a_full_atlas_on_a_cpu_asks_first(tmp_path):
    line = error_line(run_atlas("generate", "--weights", "random", "--out", str(tmp_path / "atlas")))
    assert "no GPU found" in line and "hours" in line and "--device cpu" in line
    assert not (tmp_path / "atlas").exists()


def test_unwritable_out_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    line = error_line(run_atlas("generate", *TINY, "--layers", "block1_conv1", "--filters", "0",
                                "--out", str(blocker / "atlas")))
    assert "--out" in line and "cannot write there" in line


@pytest.mark.slow
def test_jax_backend_matches_tensorflow(reference, tmp_path):
    out = tmp_path / "jax"
    proc = run_atlas("generate", *TINY, *WORK, "--backend", "jax", "--out", str(out))
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


def test_progress_lines_when_not_a_terminal():
    import io

    from generator.progress import Progress

    stream = io.StringIO()
    progress = Progress(10, stream)
    progress.update(4, "block1_conv1 channel")
    progress.close()
    line = stream.getvalue().strip()
    assert line.startswith("block1_conv1 channel  filters 4/10") and "filters/s  ETA" in line


def test_out_of_memory_halves_the_batch_for_the_rest_of_the_layer(tmp_path, random_model, monkeypatch):
    from generator.network.backend import DeviceFacts
    from generator.network.selection import parse_filters
    from generator.passes import generate as gen_module

    real = LayerRenderer.render_batch
    seen = []

    def fake(self, filters, batch=None, view=None):
        seen.append((batch, len(filters)))
        if batch > 2:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")
        return real(self, filters, batch, view)

    monkeypatch.setattr(LayerRenderer, "render_batch", fake)
    layer = find_layer("block1_conv1", "vgg16")
    cfg = RenderConfig(weights="random", weights_sha256=random_model.weights_sha256, size=32, steps=2)
    summary = gen_module.generate(random_model, cfg, [(layer, parse_filters("0-9", layer))], str(tmp_path),
                                  batch=8, progress=gen_module.Progress(10, open(os.devnull, "w")),
                                  facts=DeviceFacts("cpu", "test"))
    assert summary.rendered == 10
    # 8 fails, 4 fails, then every batch of the layer at 2: no more failures, one compiled shape
    assert seen == [(8, 8), (4, 4), (2, 2), (2, 2), (2, 2), (2, 2), (2, 2)]
    manifest = json.loads((tmp_path / "vgg16/manifest.json").read_text())
    assert manifest["layers"][0]["rendered"] == 10 and "retried_float32" in manifest["layers"][0]


def test_a_filter_non_finite_in_float32_is_reported_not_written(tmp_path, random_model, monkeypatch):
    from generator.network.backend import DeviceFacts
    from generator.passes import generate as gen_module
    from generator.render.renderer import RenderedView

    def fake(self, filters, batch=None, view=None):
        return [RenderedView(f, view, [], np.zeros(2, np.float32), failed=True) if f == 1 else
                RenderedView(f, view, [np.zeros((32, 32, 3), np.uint8)], np.zeros(2, np.float32),
                             {"activation": 1.0, "pre_relu_mean": 0.0, "pre_relu_max": 1.0, "centre": 0.0, "coverage": 1.0})
                for f in filters]

    monkeypatch.setattr(LayerRenderer, "render_batch", fake)
    layer = find_layer("block1_conv1", "vgg16")
    cfg = RenderConfig(weights="random", weights_sha256=random_model.weights_sha256, size=32, steps=2)
    summary = gen_module.generate(random_model, cfg, [(layer, [0, 1, 2])], str(tmp_path),
                                  progress=gen_module.Progress(3, open(os.devnull, "w")), facts=DeviceFacts("cpu", "test"))
    assert summary.failed == ["block1_conv1:1 (channel)"] and summary.rendered == 2
    assert not (tmp_path / "vgg16/block1_conv1/0001.png").exists()
    assert [r["filter"] for r in json.loads((tmp_path / "vgg16/block1_conv1/layer.json").read_text())["rows"]] == [0, 2]


@pytest.mark.slow
def test_two_devices_write_the_bytes_of_one(tmp_path):
    """JAX's host split gives a 2-core CPU two devices: every batch is cut as for one device and runs
    the same program, so the atlas is the same file for file (the manifest's timestamps aside)."""
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    args = ["generate", "--backend", "jax", *TINY, "--layers", "block1_conv1", "--filters", "0-4",
            "--views", "channel,neuron", "--batch", "2"]  # the contrast reference: made once, shared
    one = run_atlas(*args, "--devices", "1", "--out", str(tmp_path / "one"), env=env)
    two = run_atlas(*args, "--out", str(tmp_path / "two"), env=env)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert one.stderr.startswith("jax on CPU (") and two.stderr.startswith("jax on 2 devices: 2 × CPU (")
    files = lambda root: {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))  # noqa: E731
                          if p.is_file() and p.name not in ("manifest.json", ".lock")}
    assert len(files(tmp_path / "one")) == 5 * 3 + 1 and files(tmp_path / "one") == files(tmp_path / "two")


def test_a_device_out_of_memory_ends_the_run_in_one_line_and_a_rerun_resumes(tmp_path, random_model, monkeypatch):
    from generator.errors import AtlasError
    from generator.network.backend import Device, DeviceFacts
    from generator.network.selection import parse_filters
    from generator.passes import generate as gen_module

    facts = DeviceFacts("gpu", "Test GPU", 9.0, 2**34)
    devices = [Device(0, "/CPU:0", facts), Device(1, "/CPU:0", facts)]  # two names for the one CPU
    real = LayerRenderer.render_batch

    def second_device_runs_out(self, filters, batch=None, view=None):
        if self.device.index == 1:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9.1GiB")
        return real(self, filters, batch, view)

    monkeypatch.setattr(LayerRenderer, "render_batch", second_device_runs_out)
    layer = find_layer("block1_conv2", "vgg16")
    cfg = RenderConfig(weights="random", weights_sha256=random_model.weights_sha256, size=32, steps=2)
    quiet = lambda total: gen_module.Progress(total, open(os.devnull, "w"))  # noqa: E731
    with pytest.raises(AtlasError) as failure:
        gen_module.generate(random_model, cfg, [(layer, parse_filters("0-9", layer))], str(tmp_path), batch=2,
                            progress=quiet(10), devices=devices)
    line = str(failure.value)
    assert line.startswith("GPU 1 (Test GPU): out of memory rendering block1_conv2 channel at batch 2")
    assert "rerun with --batch 1" in line and "\n" not in line
    saved = sorted(p.name for p in (tmp_path / "vgg16/block1_conv2").glob("0*.png"))
    assert saved and len(saved) % 2 == 0 and len(saved) < 10  # device 0's whole batches, nothing half-written
    monkeypatch.setattr(LayerRenderer, "render_batch", real)
    summary = gen_module.generate(random_model, cfg, [(layer, parse_filters("0-9", layer))], str(tmp_path), batch=2,
                                  progress=quiet(10), devices=devices)
    assert summary.rendered == 10 - len(saved) and summary.skipped == len(saved)


def test_more_devices_than_there_are_is_one_line(tmp_path):
    line = error_line(run_atlas("generate", *TINY, "--layers", "block1_conv1", "--filters", "0", "--devices", "3",
                                "--out", str(tmp_path / "a")))
    assert line.endswith("--devices 3: tensorflow sees 1 device here; give at most 1")
