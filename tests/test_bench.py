"""`make bench-gpu` runs on a CPU too (reduced, JAX): the GPU check's smoke test."""

import os
import subprocess
from pathlib import Path

import pytest

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
    for heading in ("filters/s", "TFLOP/s", "Projected full atlas", "auto batch", "Quality", "reproducible"):
        assert heading in text, heading
    assert "not measured" not in text, text  # every part ran
    assert "tensorflow" not in proc.stderr.lower()
