"""Shared fixtures. Keras runs on TensorFlow in this process; JAX runs in subprocesses.

The suite runs on both cores (pytest-xdist, one module per worker: ``make test``). The costly session
fixtures (a trained network, atlases made by the CLI) are built once for the whole run: the first worker
to ask builds them into a folder both workers see, under a file lock, and the other reads them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from tests import forkrun

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]


def run_atlas(*args: str, env: dict | None = None, timeout: float = 600, cwd: Path | None = None,
              fresh: bool = False):
    """Run the CLI as a user does; returns the CompletedProcess (text mode). A fresh process forked from
    one that has imported TensorFlow already (``tests/forkrun.py``), or with ``fresh`` (a test of the
    start-up itself) or settings read at import, a new interpreter."""
    full_env = {**os.environ, **(env or {})}
    if not fresh and not forkrun.needs_new_interpreter(args, env):
        return forkrun.run(args, full_env, str(cwd or ROOT), timeout)
    return subprocess.run(
        [sys.executable, "-m", "generator", *args], capture_output=True, text=True,
        env=full_env, timeout=timeout, cwd=cwd or ROOT,
    )


# Runs a command and reports its peak resident memory (the largest child's, on Linux in KiB) as the last
# line of stderr: a fresh process, so no earlier test's child counts.
_MEASURE = ("import resource, subprocess, sys\n"
            "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "sys.stdout.write(proc.stdout)\n"
            "sys.stderr.write(proc.stderr)\n"
            "sys.stderr.write(f'peak {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n')\n"
            "sys.exit(proc.returncode)\n")


def run_atlas_measured(*args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, int]:
    """``run_atlas``, and the command's peak resident memory in bytes (``ru_maxrss`` of the child)."""
    proc = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "generator", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    lines = proc.stderr.rstrip("\n").split("\n")
    peak = int(lines[-1].split()[1]) * 1024
    proc.stderr = "\n".join(lines[:-1]) + "\n"
    return proc, peak


def tree_bytes(root: Path, pattern: str) -> dict[str, bytes]:
    """{path under root: bytes} of the files matching ``pattern``: two atlases compared file for file."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob(pattern))}


def tree_json(root: Path) -> dict[str, dict]:
    """{path under root: content} of every JSON file, without its timings (``created``, ``updated``)."""
    out = {}
    for path in sorted(root.rglob("*.json")):
        data = json.loads(path.read_text())
        for key in ("created", "updated"):
            data.pop(key, None)
        out[path.relative_to(root).as_posix()] = data
    return out


def error_line(proc) -> str:
    """The one line a failing command prints; fails the test on a traceback or several lines."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) >= 1, proc.stderr
    return lines[-1]


def shared_folder(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """``name``, a folder built once per test run by ``build(folder)``, whichever worker asks first."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder, built = root / f"shared-{name}", root / f"shared-{name}.built"
    with _locked(root / f"shared-{name}.lock"):
        if not built.exists():
            if folder.exists():
                import shutil

                shutil.rmtree(folder)  # a build that failed half-way
            folder.mkdir()
            build(folder)
            built.touch()
    return folder


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _save_proc(path: Path, proc: subprocess.CompletedProcess, peak: int) -> None:
    path.write_text(json.dumps({"args": [str(a) for a in proc.args], "returncode": proc.returncode,
                                "stdout": proc.stdout, "stderr": proc.stderr, "peak": peak}))


def _load_proc(path: Path) -> tuple[subprocess.CompletedProcess, int]:
    data = json.loads(path.read_text())
    return subprocess.CompletedProcess(data["args"], data["returncode"], data["stdout"], data["stderr"]), data["peak"]


@pytest.fixture(scope="session", autouse=True)
def keras_backend():
    """The backend imported as the CLI imports it (quietly), once per test process."""
    from generator.network import backend

    backend.select("tensorflow")


@pytest.fixture(scope="session")
def hed_model():
    from generator.network.models import load_model

    return load_model("vgg16", "hed-bsds500")


@pytest.fixture(scope="session")
def random_model():
    from generator.network.models import load_model

    return load_model("vgg16", "random")


@pytest.fixture(scope="session")
def sample_tiles(tmp_path_factory) -> Path:
    """The offline image set of `atlas sample-images` (96 px tiles of scikit-image's photographs)."""
    from generator.evidence.imagesets import write_sample_tiles

    return shared_folder(tmp_path_factory, "tiles", lambda folder: write_sample_tiles(folder, 96))


# What makes a test slow on a 2-core CPU: it runs the atlas command (a fresh process importing
# TensorFlow), trains or loads a network, renders pictures or builds a site, itself or through a fixture.
SLOW_SIGNS = ("run_atlas(", "run_atlas_measured(", "main([", "train(", "load_model(", "LayerRenderer(",
              "build_site(", "run_examples(", "run_trust(", "generate(", "hed_model", "random_model",
              "OneNodeSlurm(", "build_keras_model(", "keras.applications")


def _is_slow(item) -> bool:
    import inspect

    sources = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for name in getattr(info, "names_closure", ()):
        for definition in info.name2fixturedefs.get(name, ()):
            sources.append(definition.func)
    for source in sources:
        try:
            text = inspect.getsource(source)
        except (OSError, TypeError):
            continue
        if any(sign in text for sign in SLOW_SIGNS):
            return True
    return False


def pytest_collection_modifyitems(config, items):
    """Mark slow every test that shows a sign of being slow (``SLOW_SIGNS``), so `make test-fast`
    (``-m "not slow"``) stays a loop of seconds without anyone keeping the marks by hand."""
    for item in items:
        if item.get_closest_marker("slow") is None and _is_slow(item):
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture(scope="session")
def hostile_images(sample_tiles, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """``base/hostile`` (every kind of bad file, symlinked and looping folders, names that are not UTF-8
    or that mean something to Markdown) and ``base/good`` (its good images alone, same names); and
    {bad file: the reason it is skipped}."""
    from tests.hostile import make_hostile_folder

    def build(folder: Path) -> None:
        bad = make_hostile_folder(folder / "base", sorted(sample_tiles.iterdir()))
        (folder / "bad.json").write_text(json.dumps(bad))

    folder = shared_folder(tmp_path_factory, "hostile", build)
    return folder / "base", json.loads((folder / "bad.json").read_text())


@pytest.fixture(scope="session")
def hostile_weights(tmp_path_factory) -> Path:
    """The offline VGG16 weights under a file name that means something to Markdown, HTML and Jinja."""
    from generator.network.weights import hed_weights_path
    from tests.hostile import HOSTILE_WEIGHTS

    folder = shared_folder(tmp_path_factory, "weights",
                           lambda folder: (folder / HOSTILE_WEIGHTS).symlink_to(hed_weights_path()))
    return folder / HOSTILE_WEIGHTS


HOSTILE_EXAMPLES = ["--layers", "block1_conv1,block2_conv1", "--top", "6", "--size", "96", "--batch", "8"]


@pytest.fixture(scope="session")
def hostile_atlas(hostile_images, hostile_weights, tmp_path_factory):
    """An atlas made from the hostile folder with hostile names everywhere a user gives one: pictures
    and wiring from the weights file of a hostile name, then `atlas examples` on the hostile folder,
    its peak memory measured. Returns (atlas folder, the examples run, its peak memory in bytes)."""
    from tests.hostile import HOSTILE_LICENSE, HOSTILE_NAME

    def build(folder: Path) -> None:
        out = folder / "atlas"
        weights = str(hostile_weights)
        for args in (["generate", "--weights", weights, "--layers", "block1_conv1,block2_conv1", "--filters", "0-7",
                      "--size", "32", "--steps", "3"],
                     ["wiring", "--weights", weights]):
            proc = run_atlas(*args, "--out", str(out))
            assert proc.returncode == 0, proc.stderr
        proc, peak = run_atlas_measured("examples", "--images", str(hostile_images[0] / "hostile"), "--weights",
                                        weights, *HOSTILE_EXAMPLES, "--images-name", HOSTILE_NAME, "--images-license",
                                        HOSTILE_LICENSE, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        _save_proc(folder / "examples-run.json", proc, peak)

    folder = shared_folder(tmp_path_factory, "hostile-atlas", build)
    return (folder / "atlas", *_load_proc(folder / "examples-run.json"))


@pytest.fixture(scope="session")
def colour_files(tmp_path_factory) -> dict:
    """A user's network trained here in seconds (tests/usermodels.py), saved as .keras and .h5, with its
    training images and a held-out labelled set (class subfolders)."""
    import keras

    from tests.usermodels import colour_network, draw_images, train

    def build(root: Path) -> None:
        train_set = draw_images(root / "train", per_class=16, seed=0)
        draw_images(root / "images", per_class=8, seed=1)
        model = train(colour_network(), train_set, epochs=20)
        model.save(root / "colours.keras")
        model.save(root / "colours.h5")

    root = shared_folder(tmp_path_factory, "usermodel", build)
    model = keras.saving.load_model(root / "colours.keras")  # the trained network, in every worker alike
    return {"root": root, "keras": root / "colours.keras", "h5": root / "colours.h5", "images": root / "images",
            "train": root / "train", "model": model}


@pytest.fixture(scope="session")
def user_atlas(colour_files, tmp_path_factory) -> Path:
    """The whole pipeline on the model file: pictures (every view of a few filters), wiring, examples
    with labels from the class folders."""
    def build(folder: Path) -> None:
        model = str(colour_files["keras"])
        for args in (
            ["generate", "--model", model, "--steps", "4", "--views", "all", "--filters", "0-2"],
            ["wiring", "--model", model],
            ["examples", "--model", model, "--images", str(colour_files["images"]), "--labels", "folders", "--top", "6"],
        ):
            proc = run_atlas(*args, "--out", str(folder / "atlas"))
            assert proc.returncode == 0, proc.stderr

    return shared_folder(tmp_path_factory, "useratlas", build) / "atlas"


# --- the small atlas and its site that the site, browser, accessibility and publishing tests share ---

LAYERS = ["block1_conv1", "block3_conv3", "block5_conv3"]


@pytest.fixture(scope="session")
def tiny_atlas(tmp_path_factory, sample_tiles, user_atlas) -> Path:
    """VGG16: three filters of three layers with every view (the accentuation view where there are
    dataset examples), wiring, dataset examples and their trust;
    ResNet50: one layer; the original method beside VGG16. Random weights, 32-64 px, 3 steps: plumbing,
    not pictures. Beside them a user's own network (tests/usermodels.py) with labelled examples and its
    accuracy."""
    def build(folder: Path) -> None:
        _tiny_atlas(folder / "atlas", sample_tiles, user_atlas)

    return shared_folder(tmp_path_factory, "tiny-atlas", build) / "atlas"


def _tiny_atlas(out: Path, sample_tiles: Path, user_atlas: Path) -> None:
    shutil.copytree(user_atlas / "colours", out / "colours")
    for args in (
        ["generate", "--weights", "random", "--layers", ",".join(LAYERS), "--filters", "0-2", "--size", "32",
         "--steps", "3", "--views", "all"],
        ["wiring", "--weights", "random"],
        ["examples", "--weights", "random", "--images", str(sample_tiles), "--layers", ",".join(LAYERS[:2]),
         "--top", "4", "--size", "96", "--images-name", "tiles", "--images-license", "CC0"],
        ["generate", "--weights", "random", "--layers", ",".join(LAYERS[:2]), "--filters", "0-2", "--size", "32",
         "--steps", "3", "--views", "accentuation", "--images", str(sample_tiles)],
        ["trust", "--weights", "random", "--images", str(sample_tiles)],
        ["generate", "--model", "resnet50", "--weights", "random", "--layers", "conv2_block1_out,conv3_block1_out",
         "--filters", "0-1", "--size", "64", "--steps", "3"],
    ):
        proc = run_atlas(*args, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
    naive = out.parent / "atlas-naive"
    proc = run_atlas("generate", "--weights", "random", "--layers", ",".join(LAYERS), "--filters", "0-1",
                     "--size", "32", "--steps", "2", "--method", "naive", "--out", str(naive))
    assert proc.returncode == 0, proc.stderr


def mkdocs_build(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=project, capture_output=True, text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent),
             "PYTHONPATH": str(ROOT)},  # the nav plugin of this checkout, not of the installed one
    )


@pytest.fixture(scope="session")
def built_site(tiny_atlas, tmp_path_factory) -> Path:
    from generator.site import build_site, stage_project

    def build(folder: Path) -> None:
        project = stage_project(folder)
        build_site(tiny_atlas, project / "site_src", compare=tiny_atlas.parent / "atlas-naive")
        proc = mkdocs_build(project)
        assert proc.returncode == 0, proc.stderr
        assert "WARNING" not in proc.stderr, proc.stderr

    return shared_folder(tmp_path_factory, "site", build) / "project" / "site"
