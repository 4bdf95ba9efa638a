"""`make bench-gpu` runs on a CPU too (reduced, JAX): the GPU check's smoke test; `atlas bench site` on one layer."""

import os
import subprocess
from pathlib import Path

import pytest

from generator.errors import AtlasError
from tests.conftest import ROOT


@pytest.mark.slow
def test_bench_gpu_reduced_runs_on_the_cpu(tmp_path):
    out = tmp_path / "BENCH.md"
    python = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin/python"
    proc = subprocess.run(["make", "-s", "bench-gpu", f"GPU_PYTHON={python}",
                           f"BENCH_GPU_ARGS=--reduced --weights random --out {out}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = out.read_text()
    assert "<!-- bench:gpu:start -->" in text
    for heading in ("Where the time goes", "ms / step", "pool keras", "input 8 channels", "diversity view",
                    "What the deterministic ops cost: step time on / off", "filters/s", "TFLOP/s", "fixed s a batch",
                    "Projected full atlas", "auto batch", "Quality", "the promise is kept"):
        assert heading in text, heading
    assert "| block1_conv2 | shipped | off |" in text  # the child without deterministic ops ran
    assert "| block1_conv2 | pool reshape | on |" in text and "| block1_conv2 | pool keras |" not in text  # CPU: Keras' pool shipped
    assert "not measured" not in text, text  # every part ran
    from generator.render.config import METHOD_VERSION

    assert f"method version {METHOD_VERSION}._" in text  # which pictures the figures belong to
    assert "tensorflow" not in proc.stderr.lower()


def test_bench_site_builds_a_synthetic_atlas_and_reuses_a_kept_one(tmp_path, monkeypatch):
    import dataclasses
    from argparse import Namespace

    from generator.bench import site as bench_site

    loaded = bench_site._loaded
    monkeypatch.setattr(bench_site, "_loaded", lambda model: dataclasses.replace(
        loaded(model), layers=tuple(x for x in loaded(model).layers if x.name == "block1_conv1")))
    from generator.cli.prepare import Network
    from generator.network.zoo import model_spec

    args = Namespace(backend=None, size=32, steps=4, model="vgg16", keep=str(tmp_path / "kept"))
    network = Network(model_spec("vgg16"), None)
    name, text = bench_site.run(args, network)
    assert name == "site-vgg16" and "64 filters" in text and "write the synthetic atlas" in text
    assert "within the 500 MB budget" in text and "of which the other views (AVIF)" in text
    _, again = bench_site.run(args, network)  # the kept atlas is complete: not written again
    assert "write the synthetic atlas" not in again and "reused from `--keep`" in again
    (tmp_path / "other" / "vgg16").mkdir(parents=True)
    (tmp_path / "other" / "vgg16" / "manifest.json").write_text('{"config": {"weights": "hed-bsds500"}}')
    with pytest.raises(AtlasError, match="holds a real atlas"):
        bench_site.run(Namespace(**{**vars(args), "keep": str(tmp_path / "other")}), network)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(AtlasError, match="a file, not a folder"):
        bench_site.run(Namespace(**{**vars(args), "keep": str(tmp_path / "a-file")}), network)


def test_quality_samples_held_out_filters_with_an_offset():
    from types import SimpleNamespace

    from generator.network.selection import sample_filters

    layer = SimpleNamespace(filters=64)
    samples = [sample_filters(layer, 16, offset) for offset in range(4)]
    assert samples[0][0] == 0 and samples[0][-1] == 63
    assert all(len(s) == 16 and s == sorted(s) and 0 <= s[0] and s[-1] <= 63 for s in samples)
    assert all(set(a) & set(b) == {63} for i, a in enumerate(samples) for b in samples[i + 1:])  # held out but the last
    assert sample_filters(layer, 16, 1000) == list(range(48, 64))  # packed at the end, never out of range
    assert sample_filters(SimpleNamespace(filters=3), 16) == [0, 1, 2]


def test_a_negative_offset_is_one_line():
    from tests.conftest import run_atlas

    proc = run_atlas("bench", "quality", "--offset", "-1")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "atlas bench: error: argument --offset: '-1' must be 0 or more (see atlas bench --help)"


def test_bench_shards_writes_the_splits_spread_without_rendering(tmp_path):
    from tests.conftest import run_atlas

    out = tmp_path / "BENCH.md"
    proc = run_atlas("bench", "shards", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "<!-- bench:shards:start -->" in text and "| N = 2 | N = 8 | N = 64 |" in text
    for row in ("| vgg16 (4,224 filters) | channel |", "| resnet50 (22,720 filters) | all 4 views |",
                "| this cost model |", "| FLOP of the truncated network |"):
        assert row in text, row


@pytest.mark.slow
def test_bench_trust_reports_each_score_for_both_methods(tmp_path):
    from tests.conftest import run_atlas

    out = tmp_path / "BENCH.md"
    proc = run_atlas("bench", "trust", "--weights", "random", "--layers", "block1_conv1,block3_conv3", "--sample", "3",
                     "--size", "32", "--steps", "4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "<!-- bench:trust-vgg16:start -->" in text and "`--layers block1_conv1,block3_conv3`" not in text
    assert "| block1_conv1 |" in text and "| block3_conv3 |" in text and "**all sampled**" in text
    assert "two-image: naive" in text and "seeds: lucid" in text and "among the n least trusted" in text
    row = next(line for line in text.splitlines() if line.startswith("| block3_conv3 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # every score measured (two-image and path: naive, lucid, the natural reference); seeds for lucid; the
    # accentuation view's two-image, path and beyond nature
    assert len(cells) == 20 and all(cells[1:7]) and cells[10] != "–"
    assert all(c not in ("", "–") for c in cells[14:17]) and cells[17:20] == ["–"] * 3, row  # no field view there
    first = next(line for line in text.splitlines() if line.startswith("| block1_conv1 |"))
    assert all(c.strip() not in ("", "–") for c in first.strip("|").split("|")[17:20]), first  # the field view, scored


def test_the_gpu_check_makes_a_layers_contrast_reference_once_per_configuration(monkeypatch):
    """Every setting of a lever layer (another precision, pool or input padding) shares one reference;
    another configuration (here other steps) makes its own."""
    import dataclasses
    from types import SimpleNamespace

    import numpy as np

    from generator.bench import steps
    from generator.render.config import RenderConfig

    class Renderer:
        def __init__(self):
            self.layer, self.made, self.given = SimpleNamespace(name="block1_conv1"), 0, None

        def needs_reference(self, view):
            return True

        def reference(self, batch):
            self.made += 1
            return np.full(3, float(self.made))

        def share_reference(self, reference):
            self.given = reference

    monkeypatch.setattr(steps, "_REFERENCES", {})
    config = RenderConfig(weights="random", size=32, steps=4)
    first, second, other = Renderer(), Renderer(), Renderer()
    steps.share_reference(first, config, 16)
    steps.share_reference(second, dataclasses.replace(config, precision="mixed_bfloat16"), 16)
    steps.share_reference(other, dataclasses.replace(config, steps=8), 16)
    assert (first.made, second.made, other.made) == (1, 0, 1)
    assert second.given is first.given and other.given is not first.given
