"""The command line as documented: every option of every command appears in the README; quiet; a file
system's refusal is one line."""

import errno
import re

import pytest

from generator.cli import main as cli
from generator.cli.parser import build_parser
from tests.conftest import ROOT, error_line, run_atlas


def test_every_option_is_documented():
    readme = (ROOT / "README.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = list(sub.choices.items())
    for name, command in commands:
        assert re.search(rf"atlas {re.escape(name)}\b", readme), f"atlas {name} is not in README.md"
        nested = [a for a in command._actions if isinstance(a, type(sub))]  # atlas slurm generate|examples
        commands += [(f"{name} {n}", c) for a in nested for n, c in a.choices.items()]
        for action in command._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert re.search(re.escape(flag) + r"\b", readme), f"atlas {name} {flag} is not in README.md"


def test_help_and_unknown_command():
    proc = run_atlas("--help")
    assert proc.returncode == 0 and "generate" in proc.stdout
    proc = run_atlas("paint")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_a_run_says_its_device_and_nothing_else_on_stderr(tmp_path):
    proc = run_atlas("generate", "--weights", "random", "--layers", "block1_conv1", "--filters", "0", "--size", "32",
                     "--steps", "2", "--out", str(tmp_path / "a"), fresh=True)  # TensorFlow's import too
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "tensorflow on CPU (" + lines[0].split("(", 1)[1] and lines[0].endswith(", float32")
    assert all(line.startswith("block1_conv1 channel") for line in lines[1:]), lines


@pytest.mark.parametrize("error, hint", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/atlas/vgg16/block1_conv1/0003.examples.webp"),
     "free some space and rerun the same command"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/atlas/vgg16/manifest.json"), "make it writable"),
    (OSError(errno.EROFS, "Read-only file system", "/data/atlas/vgg16/.lock"), "make it writable"),
    (OSError(errno.EIO, "Input/output error"), "rerun the same command once that is fixed"),
])
def test_a_file_system_error_is_one_line_naming_the_file(monkeypatch, capsys, error, hint):
    def fail(args):
        raise error

    monkeypatch.setitem(cli.COMMANDS, "site", fail)
    assert cli.main(["site", "--out", "x"]) == cli.EXIT_ERROR
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atlas site: error: ")
    assert (error.filename or "a file") in lines[0] and error.strerror in lines[0] and hint in lines[0]


def test_site_out_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    line = error_line(run_atlas("site", "--data", str(tmp_path), "--out", str(tmp_path / "file")))
    assert "--out" in line and "not a writable folder" in line
