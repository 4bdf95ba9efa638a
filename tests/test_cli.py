"""The command line as documented: every option of every command appears in the README."""

import re

from generator.cli import build_parser
from tests.conftest import ROOT, run_atlas


def test_every_generate_option_is_documented():
    readme = (ROOT / "README.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("generate", "site"):
        for action in sub.choices[name]._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert re.search(re.escape(flag) + r"\b", readme), f"atlas {name} {flag} is not in README.md"


def test_help_and_unknown_command():
    proc = run_atlas("--help")
    assert proc.returncode == 0 and "generate" in proc.stdout
    proc = run_atlas("paint")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
