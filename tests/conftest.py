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


@pytest.fixture(scope="session")
def hed_model():
    from generator.models import load_model

    return load_model("vgg16", "hed-bsds500")
