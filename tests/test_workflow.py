"""The GitHub Pages workflow: valid against GitHub's workflow schema, and built the way README says."""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT

WORKFLOW = ROOT / ".github/workflows/pages.yml"


def test_workflow_matches_githubs_schema():
    checker = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    proc = subprocess.run([checker, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_deploys_safely_without_tensorflow():
    flow = yaml.safe_load(WORKFLOW.read_text())
    assert flow["concurrency"]["cancel-in-progress"] is False  # a deploy is never cut half-way
    steps = flow["jobs"]["build"]["steps"]
    text = WORKFLOW.read_text()
    pages = next(s for s in steps if s.get("uses", "").startswith("actions/configure-pages"))
    assert pages["id"] == "pages" and "steps.pages.outputs.base_url" in text  # user, org and custom domains
    build = next(s for s in steps if s.get("name") == "Build the site")
    assert "pip install -q ." in build["run"] and "tensorflow" not in build["run"]
    assert "--compare atlas-naive" in build["run"]
    assert "python -m generator.site.publish site" in build["run"]  # over 1 GB: it says which way and stops before uploading
