"""The store: one network's weights per atlas, whichever command writes first; a corrupt filter file
is rendered again; the manifest names a weights file, never its local path."""

from __future__ import annotations

import json

import pytest

from generator.atlas.store import AtlasStore
from generator.errors import AtlasError
from tests.conftest import error_line, run_atlas

TINY = ["--layers", "block1_conv1", "--filters", "0-1", "--size", "32", "--steps", "3"]


def test_other_weights_are_refused_by_every_command_then_replaced_with_force(tmp_path, sample_tiles):
    """`wiring` with one network, then `generate` with another: refused (a manifest that `wiring` or
    `examples` wrote has no config hash, which the check used to need), and --force removes what came
    from the first weights."""
    out = str(tmp_path / "atlas")
    assert run_atlas("wiring", "--weights", "hed-bsds500", "--out", out).returncode == 0
    line = error_line(run_atlas("generate", "--weights", "random", *TINY, "--out", out))
    assert "holds an atlas of other weights (hed-bsds500" in line and "this run: random" in line and "--force" in line
    line = error_line(run_atlas("examples", "--images", str(sample_tiles), "--weights", "random", "--layers",
                                "block1_conv1", "--size", "32", "--out", out))
    assert "holds an atlas of other weights" in line and "--force" in line
    assert (tmp_path / "atlas/vgg16/block3_conv3/wiring.json").exists()

    forced = run_atlas("generate", "--weights", "random", *TINY, "--force", "--out", out)
    assert forced.returncode == 0, forced.stderr
    assert "--force: the atlas of other weights (hed-bsds500" in forced.stderr
    assert not list((tmp_path / "atlas/vgg16").rglob("wiring.json"))  # the other network's wiring is gone
    manifest = json.loads((tmp_path / "atlas/vgg16/manifest.json").read_text())
    assert manifest["weights"]["name"] == "random" and manifest["config"]["weights"] == "random"

    line = error_line(run_atlas("wiring", "--weights", "hed-bsds500", "--out", out))
    assert "holds an atlas of other weights (random" in line and "--force" in line
    assert run_atlas("wiring", "--weights", "hed-bsds500", "--force", "--out", out).returncode == 0
    assert not list((tmp_path / "atlas/vgg16").rglob("*.png")) and "config_hash" not in json.loads(
        (tmp_path / "atlas/vgg16/manifest.json").read_text())


def test_check_weights_is_the_one_rule(tmp_path):
    store = AtlasStore(tmp_path, "vgg16")
    store.check_weights("a" * 64, "x.h5", force=False)  # no atlas yet: nothing to compare
    store.paths.model_dir.mkdir(parents=True)
    store.paths.manifest.write_text(json.dumps({"model": "vgg16", "weights": {"name": "/home/alice/w.h5",
                                                                              "sha256": "b" * 64}}))
    (store.paths.model_dir / "block1_conv1").mkdir()
    (store.paths.model_dir / "block1_conv1/0000.png").write_bytes(b"png")
    store.check_weights("b" * 64, "w.h5", force=False)  # the same weights, another name: fine
    with pytest.raises(AtlasError, match=r"other weights \(w\.h5, sha256 bbbbbbbbbbbbbbbb; this run: x\.h5"):
        store.check_weights("a" * 64, "x.h5", force=False)
    with store.lock():
        store.check_weights("a" * 64, "x.h5", force=True)
    assert [p.name for p in store.paths.model_dir.iterdir()] == [".lock"]


def test_a_corrupt_filter_json_is_rendered_again(tmp_path):
    out = tmp_path / "atlas"
    assert run_atlas("generate", "--weights", "random", *TINY, "--out", str(out)).returncode == 0
    record = out / "vgg16/block1_conv1/0000.json"
    picture = (out / "vgg16/block1_conv1/0000.png").read_bytes()
    good = json.loads(record.read_text())
    for broken in ('{"model": "vgg16", "loss": [1.0, ', "[]"):  # a cut copy; valid JSON but no record
        record.write_text(broken)
        proc = run_atlas("generate", "--weights", "random", *TINY, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        assert "1 filter views rendered, 1 already done" in proc.stdout
        assert json.loads(record.read_text()) == good
        assert (out / "vgg16/block1_conv1/0000.png").read_bytes() == picture


def test_the_manifest_names_the_weights_file_not_its_path(hostile_atlas, hostile_weights):
    from tests.hostile import HOSTILE_WEIGHTS

    out = hostile_atlas[0]
    text = (out / "vgg16/manifest.json").read_text()
    manifest = json.loads(text)
    assert manifest["weights"]["name"] == HOSTILE_WEIGHTS and manifest["config"]["weights"] == HOSTILE_WEIGHTS
    assert str(hostile_weights.parent) not in text
    for path in out.rglob("*.json"):
        assert str(hostile_weights.parent) not in path.read_text(), path
