"""Shared fixtures. Keras runs on TensorFlow in this process; JAX runs in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]


def run_atlas(*args: str, env: dict | None = None, timeout: float = 600, cwd: Path | None = None):
    """Run the CLI as a user does; returns the CompletedProcess (text mode)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "generator", *args], capture_output=True, text=True,
        env=full_env, timeout=timeout, cwd=cwd or ROOT,
    )


def error_line(proc) -> str:
    """The one line a failing command prints; fails the test on a traceback or several lines."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) >= 1, proc.stderr
    return lines[-1]


@pytest.fixture(scope="session", autouse=True)
def keras_backend():
    """The backend imported as the CLI imports it (quietly), once per test process."""
    from generator import backend

    backend.select("tensorflow")


@pytest.fixture(scope="session")
def hed_model():
    from generator.models import load_model

    return load_model("vgg16", "hed-bsds500")


@pytest.fixture(scope="session")
def random_model():
    from generator.models import load_model

    return load_model("vgg16", "random")


@pytest.fixture(scope="session")
def sample_tiles(tmp_path_factory) -> Path:
    """The offline image set of `atlas sample-images` (96 px tiles of scikit-image's photographs)."""
    from generator.imagesets import write_sample_tiles

    folder = tmp_path_factory.mktemp("tiles")
    write_sample_tiles(folder, 96)
    return folder


def pytest_terminal_summary(terminalreporter):
    """Skipped browser and Slurm tests are easy to miss in a long log: say it in capitals at the end."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "browser" in str(getattr(r, "keywords", {}))
               or "chromium" in str(r.longrepr)]
    if skipped:
        terminalreporter.write_sep("!", f"BROWSER TESTS SKIPPED ({len(skipped)}): Debian chromium is not installed; "
                                        "run `make browser` as root", red=True, bold=True)
    slurm = [r for r in terminalreporter.stats.get("skipped", []) if "Slurm tests:" in str(r.longrepr)]
    if slurm:
        reason = str(slurm[0].longrepr).split("Slurm tests:", 1)[1].strip(" ')\"")
        terminalreporter.write_sep("!", f"SLURM TESTS SKIPPED ({len(slurm)}): {reason}", red=True, bold=True)
