"""Shards of one job: the split, the locks that let them share one folder, the merge, and the atlas it
gives, the same as one machine's (pictures byte for byte, JSON but timings)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from generator.atlas.locks import AtlasLock, ShardLock
from generator.cluster.split import (
    Shard,
    image_range,
    parse_shard,
    picture_cost,
    split_generate,
)
from generator.evidence.tracker import merge_tracker_states
from generator.network.layers import find_layer, model_layers
from generator.paths import AtlasPaths
from generator.render.config import RenderConfig
from generator.render.views import VIEWS
from tests.conftest import ROOT, error_line, run_atlas, tree_bytes, tree_json

TINY = ["--weights", "random", "--size", "32", "--steps", "4", "--layers", "block1_conv2,block4_conv1", "--filters",
        "0-5", "--batch", "4"]
GENERATE = [sys.executable, "-m", "generator", "generate", *TINY]


# --- K/N and the split ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("3/2", "K counts from 0 to N-1"), ("0/0", "N must be 1 or more"), ("a/b", "is not K/N"), ("1", "is not K/N"),
    ("-1/4", "K counts from 0 to N-1"),
])
def test_bad_shards_are_one_line_before_any_backend(tmp_path, text, message):
    out = tmp_path / "atlas"
    code = ("import sys; from generator.cli.main import main; rc = main(sys.argv[1:]); "
            "print('backend imported' if {'tensorflow', 'jax', 'keras'} & set(sys.modules) else 'no backend'); sys.exit(rc)")
    for command in (["generate", *TINY], ["examples", "--images", str(tmp_path), "--weights", "random"]):
        proc = subprocess.run([sys.executable, "-c", code, *command, f"--shard={text}", "--out", str(out)],
                              capture_output=True, text=True, cwd=ROOT)
        line = error_line(proc)
        assert "argument --shard" in line and message in line, line
    assert not out.exists()
    assert "argument --shard" in error_line(run_atlas("generate", *TINY, "--shard", "-1/4", "--out", str(out)))
    assert parse_shard("2/3") == Shard(2, 3)


def _vgg16_all():
    return [(layer, list(range(layer.filters))) for layer in model_layers("vgg16")]


def test_the_split_is_the_whole_job_in_disjoint_contiguous_runs():
    work = _vgg16_all()
    config = RenderConfig(size=128)
    order = [(layer.name, f) for layer, filters in work for f in filters]
    for count in (1, 2, 7, 64):
        split = split_generate(work, [VIEWS["channel"]], config, count)
        parts = [[(layer.name, f) for layer, filters in share for f in filters] for share in split.shares]
        assert sum(parts, []) == order  # disjoint, complete, in the job's order: shard k follows shard k-1
        assert all(parts)
        assert split_generate(work, [VIEWS["channel"]], config, count).shares == split.shares  # settings and N only


def test_the_split_is_balanced_by_cost_not_by_count():
    vgg16 = model_layers("vgg16")
    assert picture_cost(find_layer("block5_conv3", "vgg16"), 128, vgg16) > 3 * picture_cost(find_layer("block1_conv1", "vgg16"), 128, vgg16)
    for model in ("vgg16", "resnet50"):
        work = [(layer, list(range(layer.filters))) for layer in model_layers(model)]
        for count in (2, 8, 64):
            split = split_generate(work, list(VIEWS.values()), RenderConfig(model=model, size=128), count)
            assert split.spread < 1.02, (model, count, split.spread)  # BENCHMARKS.md, shards
    split = split_generate(_vgg16_all(), [VIEWS["channel"]], RenderConfig(size=128), 2)
    counts = [sum(len(f) for _, f in share) for share in split.shares]
    assert counts[0] - counts[1] > 200 and split.spread < 1.001  # equal cost: more of the cheap, early filters


def test_more_shards_than_filters_leave_some_empty():
    work = [(find_layer("block1_conv1", "vgg16"), [0, 1])]
    split = split_generate(work, [VIEWS["channel"]], RenderConfig(size=32), 3)
    assert [sum(len(f) for _, f in share) for share in split.shares] == [1, 1, 0]


def test_image_ranges_are_contiguous_runs_at_multiples_of_64():
    for images, count in ((292, 2), (292, 3), (50_000, 64), (100, 4)):
        ranges = [image_range(images, Shard(k, count)) for k in range(count)]
        assert ranges[0][0] == 0 and ranges[-1][1] == images
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert all(lo % 64 == 0 for lo, _ in ranges)
    assert [image_range(100, Shard(k, 4)) for k in range(4)] == [(0, 0), (0, 64), (64, 64), (64, 100)]


def test_merged_tracker_states_are_one_uninterrupted_pass():
    """k best by (value descending, image ascending), histograms summed; ties across shards included."""
    rng = np.random.default_rng(0)
    k, channels, images = 5, 7, 90
    values = rng.integers(0, 6, (images, channels)).astype(np.float32)  # many ties
    positions = rng.integers(0, 50, (images, channels)).astype(np.int32)

    def state(lo, hi):
        out = {"hist": rng.integers(0, 3, (channels, 4)).astype(np.int32)}
        for side, sign in (("top", 1.0), ("bot", -1.0)):
            val = np.full((k, channels), -np.inf, np.float32)
            img = np.full((k, channels), -1, np.int32)
            pos = np.zeros((k, channels), np.int32)
            for c in range(channels):
                best = sorted(range(lo, hi), key=lambda i: (-sign * values[i, c], i))[:k]
                val[: len(best), c] = sign * values[best, c]
                img[: len(best), c], pos[: len(best), c] = best, positions[best, c]
            out.update({f"{side}_val": val, f"{side}_img": img, f"{side}_pos": pos})
        return out

    parts = [state(0, 3), state(3, 64), state(64, 90)]  # one shard holds fewer images than k
    merged = merge_tracker_states([[p] for p in parts])[0]
    whole = state(0, 90)
    for key in ("top_val", "top_img", "top_pos", "bot_val", "bot_img", "bot_pos"):
        np.testing.assert_array_equal(merged[key], whole[key], err_msg=key)
    np.testing.assert_array_equal(merged["hist"], sum(p["hist"] for p in parts))


# --- shards of atlas generate on one machine ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "atlas"
    proc = run_atlas("generate", *TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.slow
def test_two_shards_at_once_in_one_folder_merge_into_the_one_machine_atlas(one_run, tmp_path):
    out = tmp_path / "atlas"
    procs = [subprocess.Popen([*GENERATE, "--shard", f"{k}/2", "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in (0, 1)]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0 and "Traceback" not in stderr, stderr
        assert "once every shard has run: atlas merge" in stdout
    assert not (out / "vgg16/block4_conv1/layer.json").exists()  # shards leave the tables to the merge
    line = error_line(run_atlas("site", "--data", str(out), "--out", str(tmp_path / "site")))
    assert "shards of its generate job are not merged" in line and "atlas merge --out" in line
    merged = run_atlas("merge", "--out", str(out))
    assert merged.returncode == 0, merged.stderr
    assert "merged the generate job of 2 shards (12 filter views)" in merged.stdout
    assert tree_bytes(out, "*.png") == tree_bytes(one_run, "*.png")
    assert tree_json(out) == tree_json(one_run)
    assert not list(out.rglob(".tmp-*"))
    assert run_atlas("merge", "--out", str(out)).stdout.startswith("nothing to merge")
    assert run_atlas("site", "--data", str(out), "--out", str(tmp_path / "site")).returncode == 0


@pytest.mark.slow
def test_merge_names_the_missing_shards_in_one_line(tmp_path):
    out = tmp_path / "atlas"
    assert run_atlas("generate", *TINY, "--shard", "1/4", "--out", str(out)).returncode == 0
    record = out / "vgg16/.shards/generate-2-of-4.json"
    record.write_text(json.dumps({**json.loads((out / "vgg16/.shards/generate-1-of-4.json").read_text()),
                                  "shard": 2, "finished": False}))  # as a shard killed mid-way leaves it
    line = error_line(run_atlas("merge", "--out", str(out)))
    assert "the generate job split 4 ways is not complete: shard 2 started but did not finish and shards 0,3 never ran" in line
    assert "--shard K/4" in line
    line = error_line(run_atlas("site", "--data", str(out), "--out", str(tmp_path / "site")))
    assert "shard 2 started but did not finish" in line


@pytest.mark.slow
def test_a_shard_and_a_whole_run_refuse_each_other_while_shards_share(tmp_path):
    out = tmp_path / "atlas"
    paths = AtlasPaths(out, "vgg16")
    with ShardLock(paths, "generate", 0, 2):
        other = run_atlas("generate", *TINY, "--shard", "1/2", "--out", str(out))
        assert other.returncode == 0, other.stderr  # another shard of the job writes beside it
        line = error_line(run_atlas("generate", *TINY, "--out", str(out)))
        assert "is being written by another run (pid" in line  # the whole run waits for the shards
        line = error_line(run_atlas("generate", *TINY, "--shard", "0/2", "--out", str(out)))
        assert "shard 0/2 of" in line and "is being written by another run" in line
        assert "being written by another run" in error_line(run_atlas("merge", "--out", str(out)))
    with AtlasLock(paths):
        line = error_line(run_atlas("generate", *TINY, "--shard", "0/2", "--out", str(out)))
        assert "is being written by another run (pid" in line


@pytest.mark.slow
def test_a_shard_of_another_job_is_refused_until_forced(tmp_path):
    out = tmp_path / "atlas"
    assert run_atlas("generate", *TINY, "--shard", "0/2", "--out", str(out)).returncode == 0
    line = error_line(run_atlas("generate", *TINY, "--shard", "0/3", "--out", str(out)))
    assert "holds shards of another generate job (split 2 ways" in line and "--force" in line
    forced = run_atlas("generate", *TINY, "--shard", "0/3", "--force", "--out", str(out))
    assert forced.returncode == 0, forced.stderr
    assert sorted(p.name for p in (out / "vgg16/.shards").glob("*.json")) == ["generate-0-of-3.json"]


# --- shards of atlas examples ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_examples_shards_merge_into_the_one_machine_top_k(sample_tiles, tmp_path):
    args = ["examples", "--images", str(sample_tiles), "--weights", "hed-bsds500", "--layers", "block1_conv2",
            "--top", "4", "--size", "96"]
    one = tmp_path / "one"
    assert run_atlas(*args, "--out", str(one)).returncode == 0
    out = tmp_path / "atlas"
    procs = [subprocess.Popen([sys.executable, "-m", "generator", *args, "--shard", f"{k}/3", "--out", str(out)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(3)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
    assert not list(out.rglob("*.examples.json"))  # written by the merge, from every shard's state
    again = run_atlas(*args, "--shard", "1/3", "--out", str(out))
    assert again.returncode == 0 and "done before: nothing redone" in again.stdout  # a finished shard redoes nothing
    merged = run_atlas("merge", "--out", str(out))
    assert merged.returncode == 0, merged.stderr
    assert tree_bytes(out / "vgg16", "*.examples.*") == tree_bytes(one / "vgg16", "*.examples.*")
    assert tree_json(out / "vgg16")["manifest.json"] == tree_json(one / "vgg16")["manifest.json"]
    assert not list((out / "vgg16/.shards").glob("*.npz"))


@pytest.mark.slow
def test_a_model_files_shards_merge_into_its_one_machine_atlas(colour_files, tmp_path):
    """A user's network in shards: each shard records the network as the manifest describes it, and
    `atlas merge` writes the one machine's atlas from the records alone, starting no backend and reading
    no model file (pictures byte for byte, JSON but timings, examples)."""
    model = str(colour_files["keras"])
    generate = ["generate", "--model", model, "--steps", "4", "--filters", "0-2", "--batch", "2"]
    examples = ["examples", "--model", model, "--images", str(colour_files["images"]), "--top", "4"]
    one, out = tmp_path / "one", tmp_path / "atlas"
    for args in (generate, examples):
        assert run_atlas(*args, "--out", str(one)).returncode == 0
        for k in (0, 1):
            proc = run_atlas(*args, "--shard", f"{k}/2", "--out", str(out))
            assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "colours/.shards/generate-0-of-2.json").read_text())
    assert record["user_model"]["sha256"] == json.loads((one / "colours/manifest.json").read_text())["user_model"]["sha256"]
    assert str(colour_files["root"]) not in json.dumps(record["user_model"])  # the network, not where its file is
    merged = run_atlas("merge", "--out", str(out), env={"KERAS_BACKEND": "no-such-backend"})  # no backend, no file
    assert merged.returncode == 0, merged.stderr
    assert "colours: merged the generate job of 2 shards" in merged.stdout and "the examples job of 2 shards" in merged.stdout
    assert tree_bytes(out, "*.png") == tree_bytes(one, "*.png") and len(tree_bytes(one, "*.png")) >= 10
    assert tree_json(out) == tree_json(one)
    assert tree_bytes(out / "colours", "*.examples.*") == tree_bytes(one / "colours", "*.examples.*")
    assert not (out / "colours/.shards").exists() or not list((out / "colours/.shards").iterdir())


@pytest.mark.slow
def test_labelled_examples_shards_merge_into_the_one_machine_classes_and_accuracy(colour_files, tmp_path):
    """A labelled pass in shards: class counts and votes summed, each image's predictions kept at its
    row of the whole set; the merge writes one machine's accuracy and classes (votes to float rounding)."""
    from tests.usermodels import draw_images

    images = draw_images(tmp_path / "images", per_class=30, seed=2)  # 90 images: two shards of 64 and 26
    args = ["examples", "--model", str(colour_files["keras"]), "--images", str(images), "--labels", "folders",
            "--top", "4", "--batch", "8"]
    one, out = tmp_path / "one", tmp_path / "atlas"
    assert run_atlas(*args, "--out", str(one)).returncode == 0
    for k in (0, 1):
        proc = run_atlas(*args, "--shard", f"{k}/2", "--out", str(out))
        assert proc.returncode == 0, proc.stderr
    merged = run_atlas("merge", "--out", str(out))
    assert merged.returncode == 0, merged.stderr
    read = lambda root, name: json.loads((root / "colours" / name).read_text())  # noqa: E731
    assert read(out, "accuracy.json") == read(one, "accuracy.json") and read(one, "accuracy.json")["images"] == 90
    manifest = lambda root: {k: v for k, v in read(root, "manifest.json").items() if k not in ("created", "updated")}  # noqa: E731
    assert manifest(out) == manifest(one)
    files = sorted(p.relative_to(one / "colours") for p in (one / "colours").rglob("*.examples.json"))
    assert len(files) > 20
    for path in files:
        a, b = read(one, path), read(out, path)
        va, vb = a["classes"].pop("votes"), b["classes"].pop("votes")
        assert a == b, path
        assert len(va) == len(vb) and all(
            v["value"] == pytest.approx(w["value"], rel=1e-4, abs=1e-6) for v, w in zip(va, vb)), path


def _resnet50_full_top(path: Path) -> None:
    """A ResNet50 full-top weights file of the right shapes (about 100 MB, the smallest of the zoo's), in
    the legacy HDF5 layout of Keras's own ``resnet50_weights_tf_dim_ordering_tf_kernels.h5``."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(1)
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, keras.applications.ResNet50(include_top=True, weights=None))


@pytest.mark.slow
def test_a_zoo_networks_labelled_shards_merge_into_its_one_machine_accuracy(tmp_path):
    """ResNet50 with ImageNet labels and a full-top file, in two shards: each records the classifier it
    ran (the file's name and sha256), and the merge, which reads no file, writes the one machine's
    accuracy.json, votes and manifest, the manifest naming the classifier's weights."""
    import hashlib

    from PIL import Image

    weights = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    _resnet50_full_top(weights)
    rng = np.random.default_rng(0)
    for i in range(4):  # shard 0 takes them all (a shard's images start at multiples of 64), shard 1 none
        folder = tmp_path / "val" / ("n01440764", "n01443537")[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    args = ["examples", "--model", "resnet50", "--weights", str(weights), "--images", str(tmp_path / "val"),
            "--labels", "folders", "--layers", "conv1_relu", "--top", "2", "--batch", "8"]
    one, out = tmp_path / "one", tmp_path / "atlas"
    proc = run_atlas(*args, "--out", str(one))
    assert proc.returncode == 0, proc.stderr
    for k in (0, 1):
        proc = run_atlas(*args, "--shard", f"{k}/2", "--out", str(out))
        assert proc.returncode == 0, proc.stderr
    classifier = {"file": weights.name, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    path = out / "resnet50/.shards/examples-0-of-2.json"
    record = json.loads(path.read_text())
    assert record["classifier"] == classifier and str(tmp_path) not in json.dumps(record["classifier"])
    for changed, message in (({**record, "classifier": {**classifier, "file": str(weights)}}, "names a file"),
                             ({k: v for k, v in record.items() if k != "classifier"}, "do not name the classifier")):
        path.write_text(json.dumps(changed))  # a record naming a path, or one of a release that did not record it
        assert message in error_line(run_atlas("merge", "--out", str(out)))
    path.write_text(json.dumps(record))
    merged = run_atlas("merge", "--out", str(out), env={"KERAS_BACKEND": "no-such-backend"})  # no backend, no file
    assert merged.returncode == 0, merged.stderr
    read = lambda root, name: json.loads((root / "resnet50" / name).read_text())  # noqa: E731
    accuracy = read(out, "accuracy.json")
    assert accuracy == read(one, "accuracy.json") and accuracy["images"] == 4 and len(accuracy["classes"]) == 1000
    manifest = lambda root: {k: v for k, v in read(root, "manifest.json").items() if k not in ("created", "updated")}  # noqa: E731
    assert manifest(out) == manifest(one)
    assert {k: v for k, v in manifest(out)["examples"]["classifier"].items() if k != "of"} == classifier
    files = sorted(p.relative_to(one / "resnet50") for p in (one / "resnet50").rglob("*.examples.json"))
    assert len(files) == 64
    for name in files:  # votes summed over the shards: equal to float rounding
        a, b = read(one, name), read(out, name)
        va, vb = a["classes"].pop("votes"), b["classes"].pop("votes")
        assert a == b and {v["class"] for v in va} <= {"n01440764", "n01443537"} and va, name
        assert len(va) == len(vb) and all(
            v["value"] == pytest.approx(w["value"], rel=1e-4, abs=1e-6) for v, w in zip(va, vb)), name


# --- what the merge trusts, and jobs given up ------------------------------------------------------------------------


@pytest.mark.slow
def test_merge_runs_nothing_the_atlas_folder_names(tmp_path):
    """Anyone who can write to a shared atlas folder could name their own code in a shard record: a
    record naming a file (custom objects, a model file, a path) is refused in one line, and nothing in
    .shards/ is ever imported or run."""
    out, marker = tmp_path / "atlas", tmp_path / "PWNED"
    assert run_atlas("generate", *TINY, "--shard", "0/1", "--out", str(out)).returncode == 0
    shards = out / "vgg16/.shards"
    evil = shards / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    path = shards / "generate-0-of-1.json"
    record = json.loads(path.read_text())
    for key, value in (("custom_objects", str(evil)), ("model_file", "/elsewhere/net.keras"),
                       ("user_model", {"file": str(evil)})):
        path.write_text(json.dumps({**record, key: value}))
        proc = run_atlas("merge", "--out", str(out))
        shown = f"user_model.file {str(evil)!r}" if key == "user_model" else f"{key} {value!r}"
        assert proc.returncode != 0 and f"names a file ({shown}) that atlas merge was not given" in error_line(proc)
    path.write_text(json.dumps(record))
    merged = run_atlas("merge", "--out", str(out))
    assert merged.returncode == 0, merged.stderr
    assert not marker.exists()


def _share(out: Path, name: str) -> dict[str, list[int]]:
    from generator.cluster.split import expand_ranges

    record = json.loads((out / "vgg16/.shards" / name).read_text())
    return {layer: expand_ranges(spec) for layer, spec in record["share"]["work"].items()}


@pytest.mark.slow
def test_an_abandoned_job_is_given_up_with_forget_shards(tmp_path):
    out = tmp_path / "atlas"
    assert run_atlas("generate", *TINY, "--shard", "1/3", "--out", str(out)).returncode == 0
    share = _share(out, "generate-1-of-3.json")
    way_out = f"`atlas merge --out {out} --forget-shards`"
    assert way_out in error_line(run_atlas("merge", "--out", str(out)))
    assert way_out in error_line(run_atlas("site", "--data", str(out), "--out", str(tmp_path / "site")))
    forgot = run_atlas("merge", "--out", str(out), "--forget-shards")
    assert forgot.returncode == 0, forgot.stderr
    assert "forgot the unfinished generate job split 3 ways; the filters of shards 1 are kept" in forgot.stdout
    assert not list((out / "vgg16/.shards").iterdir())
    for layer, filters in share.items():  # what the shard rendered is listed, as an interrupted whole run leaves it
        rows = json.loads((out / "vgg16" / layer / "layer.json").read_text())["rows"]
        assert [r["filter"] for r in rows] == filters
    assert run_atlas("site", "--data", str(out), "--out", str(tmp_path / "site")).returncode == 0


@pytest.mark.slow
def test_a_finished_whole_run_supersedes_the_job_whose_work_it_did(one_run, tmp_path):
    out = tmp_path / "atlas"
    assert run_atlas("generate", *TINY, "--shard", "1/3", "--out", str(out)).returncode == 0
    part = run_atlas("generate", *TINY[:-4], "--filters", "0-1", "--batch", "4", "--out", str(out))
    assert part.returncode == 0 and "were dropped" not in part.stdout  # a smaller run did not do the job's work
    assert "--forget-shards" in error_line(run_atlas("merge", "--out", str(out)))
    whole = run_atlas("generate", *TINY, "--out", str(out))
    assert whole.returncode == 0, whole.stderr
    assert "the records of an earlier generate job split 3 ways were dropped: this run did its work" in whole.stdout
    assert run_atlas("merge", "--out", str(out)).stdout.startswith("nothing to merge")
    assert tree_bytes(out, "*.png") == tree_bytes(one_run, "*.png") and tree_json(out) == tree_json(one_run)
    assert run_atlas("site", "--data", str(out), "--out", str(tmp_path / "site")).returncode == 0


@pytest.mark.slow
def test_a_shard_of_other_settings_names_the_option_not_force(tmp_path):
    out = tmp_path / "atlas"
    assert run_atlas("generate", *TINY, "--shard", "0/2", "--precision", "float32", "--out", str(out)).returncode == 0
    proc = run_atlas("generate", *TINY, "--shard", "1/2", "--steps", "5", "--out", str(out))
    line = error_line(proc)
    assert proc.returncode != 0 and "holds shards that ran with --steps 4 (this shard: 5)" in line, line
    assert "run this one with theirs" in line


def _suggested_commands(line: str) -> list[list[str]]:
    """The `atlas ...` commands a message suggests, each checked by the real parser (a flag the command
    does not have, or a value it refuses, ends the test)."""
    import shlex

    from generator.cli.parser import build_parser

    commands = [shlex.split(text)[1:] for text in re.findall(r"`(atlas [^`]+)`", line)]
    for args in commands:
        build_parser().parse_args(args)
    return commands


@pytest.mark.slow
def test_messages_suggest_commands_their_parser_takes(colour_files, tmp_path):
    """Every command a message suggests parses: `atlas trust` on an empty atlas of a model file names the
    file (a model's folder name is no --model value), and the merge's way out is a merge option."""
    empty = tmp_path / "empty"
    line = error_line(run_atlas("trust", "--images", str(colour_files["images"]), "--model", str(colour_files["keras"]),
                                "--out", str(empty)))
    (generate,) = _suggested_commands(line)
    assert generate[:3] == ["generate", "--model", str(colour_files["keras"])], line
    out = tmp_path / "atlas"
    assert run_atlas("generate", *TINY, "--shard", "1/2", "--out", str(out)).returncode == 0
    merge = _suggested_commands(error_line(run_atlas("merge", "--out", str(out))))
    assert ["merge", "--out", str(out), "--forget-shards"] in merge


def test_a_whole_run_covers_a_job_only_if_it_did_all_its_work():
    from generator.cluster.forget import _covers

    job = {"command": "generate", "count": 3, "config_hash": "c1", "views": ["channel"],
           "work": {"block1_conv2": "0-5", "block4_conv1": "0-5"}}
    whole = {**job, "count": 1, "views": ["channel", "neuron"], "work": {"block1_conv2": "0-63", "block4_conv1": "0-5"}}
    assert _covers(whole, job)
    assert not _covers({**whole, "work": {"block1_conv2": "0-63", "block4_conv1": "0-4"}}, job)  # one filter short
    assert not _covers({**whole, "work": {"block1_conv2": "0-63"}}, job)  # a layer short
    assert not _covers({**whole, "config_hash": "c2"}, job) and not _covers({**whole, "views": ["neuron"]}, job)
    examples = {"command": "examples", "count": 4, "model": "vgg16", "weights_sha256": "w", "list_sha256": "l",
                "images": 292, "size": 224, "top": 16, "layers": ["block1_conv2"], "precision": "float32",
                "backend": "jax"}
    assert _covers({**examples, "count": 1, "layers": ["block1_conv2", "block3_conv1"]}, examples)
    assert not _covers({**examples, "count": 1, "top": 8}, examples)  # other settings: the job's merge would differ
    assert not _covers({**examples, "count": 1, "layers": ["block3_conv1"]}, examples)
    assert not _covers({**examples, "command": "generate"}, examples)


@pytest.mark.slow
def test_a_finished_whole_examples_pass_supersedes_an_abandoned_examples_job(sample_tiles, tmp_path):
    args = ["examples", "--images", str(sample_tiles), "--weights", "hed-bsds500", "--layers", "block1_conv2",
            "--top", "4", "--size", "64"]
    out = tmp_path / "atlas"
    assert run_atlas(*args, "--shard", "0/2", "--out", str(out)).returncode == 0
    assert "--forget-shards" in error_line(run_atlas("merge", "--out", str(out)))
    whole = run_atlas(*args, "--out", str(out))
    assert whole.returncode == 0, whole.stderr
    assert "the records of an earlier examples job split 2 ways were dropped: this run did its work" in whole.stdout
    assert not list((out / "vgg16/.shards").glob("*.json")) and not list((out / "vgg16/.shards").glob("*.npz"))
    assert run_atlas("merge", "--out", str(out)).stdout.startswith("nothing to merge")
