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
    """Skipped browser tests are easy to miss in a long log: say it in capitals at the end."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "browser" in str(getattr(r, "keywords", {}))
               or "chromium" in str(r.longrepr)]
    if skipped:
        terminalreporter.write_sep("!", f"BROWSER TESTS SKIPPED ({len(skipped)}): Debian chromium is not installed; "
                                        "run `make browser` as root", red=True, bold=True)


@pytest.fixture(scope="session")
def colour_files(tmp_path_factory) -> dict:
    """A user's network trained here in seconds (tests/usermodels.py), saved as .keras and .h5, with its
    training images and a held-out labelled set (class subfolders)."""
    from tests.usermodels import colour_network, draw_images, train

    root = tmp_path_factory.mktemp("usermodel")
    train_set = draw_images(root / "train", per_class=16, seed=0)
    held_out = draw_images(root / "images", per_class=8, seed=1)
    model = train(colour_network(), train_set, epochs=20)
    model.save(root / "colours.keras")
    model.save(root / "colours.h5")
    return {"root": root, "keras": root / "colours.keras", "h5": root / "colours.h5", "images": held_out,
            "train": train_set, "model": model}


@pytest.fixture(scope="session")
def user_atlas(colour_files, tmp_path_factory) -> Path:
    """The whole pipeline on the model file: pictures (every view of a few filters), wiring, examples
    with labels from the class folders."""
    out = tmp_path_factory.mktemp("useratlas") / "atlas"
    model = str(colour_files["keras"])
    for args in (
        ["generate", "--model", model, "--steps", "4", "--views", "all", "--filters", "0-2"],
        ["wiring", "--model", model],
        ["examples", "--model", model, "--images", str(colour_files["images"]), "--labels", "folders", "--top", "6"],
    ):
        proc = run_atlas(*args, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
    return out
