"""`atlas trust`: each score against a direct computation on a small hand-made network whose answer is
known by construction (filters that fire for red), the geometry of a footprint, ranks and Spearman's
correlation; the command on a tiny VGG16 atlas: stored records, layer means, resume, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.evidence.trust_probe import footprint, input_patch
from generator.evidence.trust_scores import cosine, pair_share, ranks, spearman
from generator.network import inputs
from generator.network.layers import find_layer
from tests.conftest import ROOT, error_line, run_atlas

SIZE = 32
TARGETS = ("block1_conv1", "block1_conv2", "block2_conv1")


# --- the pure parts ------------------------------------------------------------------------------------


def test_ranks_average_ties_and_spearman_matches_scipy():
    assert ranks([10, 20, 20, 5, 20]).tolist() == [2.0, 4.0, 4.0, 1.0, 4.0]
    assert ranks([3.0, 3.0]).tolist() == [1.5, 1.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([0, 0, 0], [1, 2, 3]) == 0.0  # a vector that does not vary ranks nothing
    stats = pytest.importorskip("scipy.stats")  # not a dependency of ours: JAX brings it
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = np.maximum(rng.normal(size=50), 0)  # many ties at 0, as after a ReLU
        b = np.round(rng.normal(size=50), 1)
        assert ranks(a) == pytest.approx(stats.rankdata(a))
        assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


def test_pair_share_counts_pairs_and_ties():
    picture = np.array([1.0, 0.0])
    tops = np.array([[1.0, 0.1], [0.0, 1.0]])  # close, far
    bottoms = np.array([[0.5, 0.5], [0.0, 2.0]])  # middle, as far as the far top
    # close beats both; far loses to middle and ties with the other far one
    assert pair_share(picture, tops, bottoms) == pytest.approx((2 + 0 + 0.5) / 4)
    assert pair_share(picture, tops[:0], bottoms) is None
    assert cosine(np.zeros((1, 2)), picture).tolist() == [0.0]


def test_footprint_is_the_units_a_target_unit_reads():
    vgg = {name: find_layer(name, "vgg16") for name in ("block1_conv1", "block1_conv2", "block2_conv1",
                                                         "block2_conv2", "block3_conv1")}
    side = 64
    # a 3x3 convolution reads its input's 3 units around it
    assert [int(v[0]) for v in footprint(vgg["block1_conv2"], vgg["block1_conv1"], [10], [20], side)] == [9, 11, 19, 21]
    # block2_conv1 unit y reads pool units y-1..y+1, each the max of block1_conv2 units 2p, 2p+1
    assert [int(v[0]) for v in footprint(vgg["block2_conv1"], vgg["block1_conv2"], [5], [5], side)] == [8, 13, 8, 13]
    # and block1_conv1 one unit further each way
    assert [int(v[0]) for v in footprint(vgg["block2_conv1"], vgg["block1_conv1"], [5], [5], side)] == [7, 14, 7, 14]
    assert [int(v[0]) for v in footprint(vgg["block3_conv1"], vgg["block2_conv2"], [3], [3], 32)] == [4, 9, 4, 9]
    # a layer's own footprint is the unit; at the border the map ends
    assert [int(v[0]) for v in footprint(vgg["block2_conv2"], vgg["block2_conv2"], [7], [0], 32)] == [7, 7, 0, 0]
    assert [int(v[0]) for v in footprint(vgg["block2_conv1"], vgg["block1_conv1"], [0], [31], side)] == [0, 4, 59, 63]


def test_the_random_photo_is_drawn_per_filter_the_same_every_run_and_never_a_top_one():
    from generator.passes.trust import _picks, _random_image

    layer = find_layer("block3_conv3", "vgg16")
    rng = np.random.default_rng(1)
    for f in range(500):
        count = int(rng.integers(1, 300))
        tops = [int(i) for i in rng.integers(0, count, int(rng.integers(0, 16)))]
        pick = _random_image(layer, f, count, tops)
        assert pick == _random_image(layer, f, count, tops) and 0 <= pick < count
        assert pick not in tops or set(tops) >= set(range(count))
        # the same as drawing from the list of the other images, without making that list
        rest = sorted(set(range(count)) - set(tops)) or list(range(count))
        assert pick == _picks(layer, f, 0, rest, 1)[0]


# --- a hand-made network whose filters 0 fire for red -----------------------------------------------------------


def _red_network():
    """Three conv layers (the middle one followed by a 2x2 max-pool); filter 0 of the first is a red
    detector on VGG's caffe input, filter 0 of each next layer reads filter 0 before it; the other
    filters are small random ones. (Without the red detector's bias, grey turns it off, the filters
    after it get no gradient and their pictures stay grey and dead: two-image score 0.)"""
    import keras

    from generator.network.layers import discover
    from generator.network.models import LoadedModel
    from generator.network.zoo import model_spec

    inp = keras.Input((None, None, 3))
    c1 = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="block1_conv1")(inp)
    c2 = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="block1_conv2")(c1)
    pool = keras.layers.MaxPooling2D(2, name="block1_pool")(c2)
    c3 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="block2_conv1")(pool)
    model = keras.Model(inp, c3)
    rng = np.random.default_rng(7)
    k1 = rng.normal(0, 0.05, (3, 3, 3, 6)).astype(np.float32)
    k1[:, :, :, 0] = np.array([-1.0, -1.0, 1.0]) / 9  # BGR: red up, blue and green down
    k2 = rng.normal(0, 0.05, (3, 3, 6, 6)).astype(np.float32)
    k2[:, :, :, 0] = 0.0
    k2[:, :, 0, 0] = 1.0 / 9
    k3 = rng.normal(0, 0.05, (3, 3, 6, 8)).astype(np.float32)
    k3[:, :, :, 0] = 0.0
    k3[:, :, 0, 0] = 1.0 / 9
    for name, kernel in (("block1_conv1", k1), ("block1_conv2", k2), ("block2_conv1", k3)):
        bias = np.zeros(kernel.shape[-1], np.float32)
        bias[0] = 40.0 if name == "block1_conv1" else 0.0  # grey turns the red detector on a little: a gradient
        model.get_layer(name).set_weights([kernel, bias])
    spec = model_spec("vgg16")
    return LoadedModel(model, spec, "hand-made", "0" * 64, discover(model, spec)), model


def _image_set(folder: Path) -> Path:
    """Red, green, blue and grey pictures, each a colour with noise over it: 10 of each."""
    rng = np.random.default_rng(3)
    folder.mkdir()
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 210), "grey": (128, 128, 128)}
    for name, colour in colours.items():
        for i in range(10):
            shade = rng.uniform(0.6, 1.0)
            noise = rng.normal(0, 25, (SIZE, SIZE, 3))
            image = np.clip(np.asarray(colour) * shade + noise, 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"{name}-{i}.png")
    return folder


@pytest.fixture(scope="module")
def red_atlas(tmp_path_factory):
    """The hand-made network's atlas: channel and diversity pictures of 4 filters per layer (lucid),
    its dataset examples among the hand-made images, and its trust."""
    from generator.evidence.imagesets import list_images
    from generator.passes.examples import run_examples
    from generator.passes.examples_config import ExamplesConfig
    from generator.passes.generate import generate
    from generator.passes.trust import TrustConfig, run_trust
    from generator.progress import Progress
    from generator.render.config import RenderConfig
    from generator.render.views import CHANNEL, DIVERSITY

    loaded, model = _red_network()
    root = tmp_path_factory.mktemp("red")
    out = str(root / "atlas")
    images = list_images(_image_set(root / "images"))
    quiet = lambda total: Progress(total, open("/dev/null", "w"))  # noqa: E731
    config = RenderConfig(model="vgg16", weights="hand-made", weights_sha256=loaded.weights_sha256, size=SIZE, steps=48)
    work = [(layer, [0, 1, 2, 3]) for layer in loaded.layers]
    summary = generate(loaded, config, work, out, views=[CHANNEL, DIVERSITY], progress=quiet(24))
    assert summary.rendered == 24 and not summary.failed
    run_examples(loaded, list(loaded.layers), ExamplesConfig(model="vgg16", weights_sha256=loaded.weights_sha256,
                                                               size=SIZE, top=5, images=images), out,
                 progress=quiet(len(images.files)))
    trust = TrustConfig(model="vgg16", weights_sha256=loaded.weights_sha256, images=images, size=SIZE, top=5)
    summary = run_trust(loaded, list(loaded.layers), trust, out, progress=quiet(1))
    assert summary.computed == 12 and summary.layers == 3, summary
    return Path(out) / "vgg16", loaded, model, images


def _direct_maps(model, image: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's map after its ReLU, straight from the Keras model (no code of the atlas)."""
    import keras

    probe = keras.Model(model.input, [model.get_layer(name).output for name in TARGETS])
    maps = probe(inputs.from_uint8(image[None], "caffe"))
    return {name: np.asarray(m)[0] for name, m in zip(TARGETS, maps)}


def _pre_relu(loaded, layer_name: str, image: np.ndarray, f: int) -> np.ndarray:
    net = loaded.tap_net([_layer(loaded, layer_name)])
    return np.asarray(net(inputs.from_uint8(image[None], "caffe"), net.variables)[0])[0, :, :, f]


def _layer(loaded, name):
    return next(layer for layer in loaded.layers if layer.name == name)


# the units each target unit (y, x) reads, by hand: a 3x3 convolution reads y-1..y+1; block2_conv1 reads
# block1_conv2 units 2y-2..2y+3 (through the 2x2 max-pool) and block1_conv1 units 2y-3..2y+4
HAND = {
    ("block1_conv1", "block1_conv1"): lambda y: (y, y),
    ("block1_conv2", "block1_conv1"): lambda y: (y - 1, y + 1),
    ("block1_conv2", "block1_conv2"): lambda y: (y, y),
    ("block2_conv1", "block1_conv1"): lambda y: (2 * y - 3, 2 * y + 4),
    ("block2_conv1", "block1_conv2"): lambda y: (2 * y - 2, 2 * y + 3),
    ("block2_conv1", "block2_conv1"): lambda y: (y, y),
}


def _hand_vector(maps: dict, target: str, layer: str, y: int, x: int) -> np.ndarray:
    m = maps[layer]
    y0, y1 = HAND[(target, layer)](y)
    x0, x1 = HAND[(target, layer)](x)
    y0, x0, y1, x1 = max(0, y0), max(0, x0), min(m.shape[0] - 1, y1), min(m.shape[1] - 1, x1)
    return m[y0:y1 + 1, x0:x1 + 1].mean(axis=(0, 1))


def _hand_patch(image: np.ndarray, y: int, x: int) -> np.ndarray:
    padded = np.pad(inputs.from_uint8(image, "caffe"), ((1, 1), (1, 1), (0, 0)))
    return padded[y:y + 3, x:x + 3].ravel()


def _load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("target", TARGETS)
def test_each_score_is_the_direct_computation(red_atlas, target):
    folder, loaded, model, images = red_atlas
    f = 0
    trust = json.loads((folder / target / "0000.json").read_text())["trust"]
    examples = json.loads((folder / target / "0000.examples.json").read_text())
    depth = TARGETS.index(target) + 1
    layers = TARGETS[:depth]

    picture = _load(folder / target / "0000.png")
    pre = _pre_relu(loaded, target, picture, f)
    py, px = np.unravel_index(np.argmax(pre), pre.shape)
    maps = _direct_maps(model, picture)
    picture_vectors = [_hand_vector(maps, target, name, py, px) for name in layers]

    # beyond nature: the picture's highest unit before the ReLU over the best photo's
    assert trust["beyond_nature"]["ratio"] == pytest.approx(pre.max() / examples["top"][0]["value"], rel=1e-3)

    def natural(entry):
        image = _load(images.root / entry["image"])
        return image, _direct_maps(model, image)

    tops = [natural(e) + (e,) for e in examples["top"]]
    bottoms = [natural(e) + (e,) for e in examples["bottom"]]
    top_mean = [np.mean([_hand_vector(m, target, name, e["y"], e["x"]) for _, m, e in tops], axis=0) for name in layers]
    stats = pytest.importorskip("scipy.stats")
    path = [stats.spearmanr(p, t).statistic for p, t in zip(picture_vectors, top_mean)]
    assert trust["path_similarity"]["layers"] == list(layers)
    assert trust["path_similarity"]["picture"] == pytest.approx(path, abs=2e-3)

    random_image = _load(images.root / trust["path_similarity"]["random_image_file"])
    pre_random = _pre_relu(loaded, target, random_image, f)
    ry, rx = np.unravel_index(np.argmax(pre_random), pre_random.shape)
    random_maps = _direct_maps(model, random_image)
    baseline = [stats.spearmanr(_hand_vector(random_maps, target, name, ry, rx), t).statistic
                for name, t in zip(layers, top_mean)]
    assert trust["path_similarity"]["random_image"] == pytest.approx(baseline, abs=2e-3)

    # two-image prediction at the layer before the target (the input's patch for the first layer)
    if depth == 1:
        assert trust["two_image"]["layer"] == "input"
        closeness = lambda image, m, y, x: _hand_patch(image, y, x)  # noqa: E731
    else:
        assert trust["two_image"]["layer"] == layers[-2]
        closeness = lambda image, m, y, x: _hand_vector(m, target, layers[-2], y, x)  # noqa: E731
    pv = closeness(picture, maps, py, px)
    cos = lambda a, b: float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))  # noqa: E731
    up = [cos(pv, closeness(i, m, e["y"], e["x"])) for i, m, e in tops]
    down = [cos(pv, closeness(i, m, e["y"], e["x"])) for i, m, e in bottoms]
    share = np.mean([1.0 if u > d else 0.5 if u == d else 0.0 for u in up for d in down])
    assert trust["two_image"]["score"] == pytest.approx(share, abs=1e-3)
    assert trust["two_image"]["pairs"] == len(up) * len(down) == 25

    # the natural reference: the strongest top example held out as the "picture", against the other tops
    (_, held_maps, held), rest = tops[0], tops[1:]
    held_vectors = [_hand_vector(held_maps, target, name, held["y"], held["x"]) for name in layers]
    rest_mean = [np.mean([_hand_vector(m, target, name, e["y"], e["x"]) for _, m, e in rest], axis=0) for name in layers]
    reference = trust["natural_reference"]
    assert reference["path"] == pytest.approx(np.mean([stats.spearmanr(h, t).statistic
                                                       for h, t in zip(held_vectors, rest_mean)]), abs=2e-3)
    hv = closeness(tops[0][0], held_maps, held["y"], held["x"])
    up = [cos(hv, closeness(i, m, e["y"], e["x"])) for i, m, e in rest]
    down = [cos(hv, closeness(i, m, e["y"], e["x"])) for i, m, e in bottoms]
    assert reference["two_image"] == pytest.approx(np.mean([1.0 if u > d else 0.5 if u == d else 0.0
                                                            for u in up for d in down]), abs=1e-3)
    assert trust["summary"]["natural_two_image"] == reference["two_image"]

    # seed agreement: the four diversity pictures against four other filters' channel pictures
    def mean_map(path):
        return _direct_maps(model, _load(path))[target].mean(axis=(0, 1))

    def agreement(vectors):
        return np.mean([cos(a, b) for i, a in enumerate(vectors) for b in vectors[i + 1:]])

    seed = trust["seed_agreement"]
    diversity = [mean_map(folder / target / f"0000.diversity-{i}.png") for i in range(1, 5)]
    others = [mean_map(folder / target / f"{g:04d}.png") for g in seed["filters"]]
    assert seed["filters"] == [1, 2, 3]
    assert seed["diversity"] == pytest.approx(agreement(diversity), abs=1e-3)
    assert seed["random_filters"] == pytest.approx(agreement(others), abs=1e-3)


@pytest.mark.parametrize("target", TARGETS)
def test_a_red_filters_picture_predicts_red_images(red_atlas, target):
    """Known by construction: the top examples are red, the bottom ones green or blue, and the picture
    is red, so it must pick the top image of nearly every pair."""
    folder = red_atlas[0]
    examples = json.loads((folder / target / "0000.examples.json").read_text())
    assert all(e["image"].startswith("red") for e in examples["top"])
    assert all(e["image"].split("-")[0] in ("green", "blue") for e in examples["bottom"])
    trust = json.loads((folder / target / "0000.json").read_text())["trust"]
    assert trust["two_image"]["score"] >= 0.9
    assert trust["beyond_nature"]["ratio"] > 0
    summary = trust["summary"]
    assert summary["two_image"] == trust["two_image"]["score"]
    assert summary["path"] == pytest.approx(np.mean(trust["path_similarity"]["picture"]), abs=1e-3)


def test_the_layer_table_carries_each_filters_summary_and_the_means(red_atlas):
    folder = red_atlas[0]
    table = json.loads((folder / "block1_conv2" / "layer.json").read_text())
    assert [r["filter"] for r in table["rows"]] == [0, 1, 2, 3]
    for row in table["rows"]:
        record = json.loads((folder / "block1_conv2" / f"{row['filter']:04d}.json").read_text())
        assert row["trust"] == record["trust"]["summary"]
    means = table["trust"]
    assert means["filters"] == 4
    assert means["two_image"] == pytest.approx(np.mean([r["trust"]["two_image"] for r in table["rows"]]), abs=1e-3)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["trust"]["top"] == 5 and manifest["trust"]["examples"] == red_atlas[3].sha256


def test_the_probe_reads_footprints_at_the_border_and_the_strongest_unit(red_atlas):
    from generator.evidence.trust_probe import LayerProbe

    _, loaded, model, images = red_atlas
    image = _load(images.root / "red-0.png")
    maps = _direct_maps(model, image)
    probe = LayerProbe(loaded, _layer(loaded, "block2_conv1"), chunk=4)  # requests split over chunks
    units = [(0, 0), (15, 15), (0, 9), (7, 3), (-1, -1)]
    readout = probe.read(np.stack([image, image]), [1] * len(units), [0, 1, 2, 3, 0],
                         [u[0] for u in units], [u[1] for u in units])
    pre = _pre_relu(loaded, "block2_conv1", image, 0)
    assert (readout.y[-1], readout.x[-1]) == np.unravel_index(np.argmax(pre), pre.shape)
    assert readout.value[-1] == pytest.approx(pre.max(), rel=1e-5)
    for n, (y, x) in enumerate(zip(readout.y, readout.x)):
        for i, name in enumerate(TARGETS):
            assert readout.vectors[i][n] == pytest.approx(_hand_vector(maps, "block2_conv1", name, y, x), rel=1e-4, abs=1e-3)
    first = LayerProbe(loaded, _layer(loaded, "block1_conv1")).read(image[None], [0, 0], [0, 0], [0, 31], [5, 31])
    assert first.patches[0] == pytest.approx(_hand_patch(image, 0, 5))
    assert first.patches[1] == pytest.approx(input_patch(inputs.from_uint8(image, "caffe"), _layer(loaded, "block1_conv1"), 31, 31))
    assert first.patches[1] == pytest.approx(_hand_patch(image, 31, 31))


# --- the command on a tiny VGG16 atlas ------------------------------------------------------------------


LAYERS = "block1_conv1,block3_conv3"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, sample_tiles) -> Path:
    """Random VGG16, 3 filters of two layers at 32 px (channel view only), dataset examples among the
    sample tiles; no trust yet."""
    out = tmp_path_factory.mktemp("trust") / "atlas"
    for args in (["generate", "--weights", "random", "--layers", LAYERS, "--filters", "0-2", "--size", "32",
                  "--steps", "3"],
                 ["examples", "--weights", "random", "--images", str(sample_tiles), "--layers", LAYERS,
                  "--top", "4", "--size", "48"]):
        proc = run_atlas(*args, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
    return out


def _trust_of(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("[0-9][0-9][0-9][0-9].json"))}


def test_trust_command_stores_resumes_and_recomputes_what_changed(tiny, sample_tiles):
    proc = run_atlas("trust", "--weights", "random", "--images", str(sample_tiles), "--out", str(tiny))
    assert proc.returncode == 0, proc.stderr
    assert "trust of 6 filters in 2 layers computed" in proc.stdout and "0 already done" in proc.stdout
    record = json.loads((tiny / "vgg16/block3_conv3/0002.json").read_text())
    trust = record["trust"]
    assert trust["against"]["top"] == 4 and trust["against"]["size"] == 48
    assert len(trust["path_similarity"]["picture"]) == 7 and trust["two_image"]["layer"] == "block3_conv2"
    assert trust["seed_agreement"] is None  # no diversity view in this atlas
    assert "loss" in record and record["config_hash"]  # merged into the record, nothing lost
    table = json.loads((tiny / "vgg16/block3_conv3/layer.json").read_text())
    assert all("trust" in row for row in table["rows"]) and table["trust"]["filters"] == 3
    first = _trust_of(tiny)

    again = run_atlas("trust", "--weights", "random", "--images", str(sample_tiles), "--out", str(tiny))
    assert again.returncode == 0 and "trust of 0 filters in 0 layers" in again.stdout and "6 already done" in again.stdout
    assert _trust_of(tiny) == first

    # one filter's trust gone: only it is computed again, to the same numbers
    path = tiny / "vgg16/block1_conv1/0001.json"
    record = json.loads(path.read_text())
    del record["trust"]
    path.write_text(json.dumps(record))
    proc = run_atlas("trust", "--weights", "random", "--images", str(sample_tiles), "--out", str(tiny))
    assert "trust of 1 filters in 1 layers" in proc.stdout, proc.stdout
    assert json.loads(path.read_text())["trust"] == json.loads(first["vgg16/block1_conv1/0001.json"])["trust"]

    # the diversity view added later (same settings): the record keeps its trust, and the next run adds
    # the seed agreement to the filters that now have it
    proc = run_atlas("generate", "--weights", "random", "--layers", "block3_conv3", "--filters", "0", "--size", "32",
                     "--steps", "3", "--views", "diversity", "--out", str(tiny))
    assert proc.returncode == 0, proc.stderr
    assert "trust" in json.loads((tiny / "vgg16/block3_conv3/0000.json").read_text())
    proc = run_atlas("trust", "--weights", "random", "--images", str(sample_tiles), "--out", str(tiny))
    assert "trust of 1 filters in 1 layers" in proc.stdout, proc.stdout
    seed = json.loads((tiny / "vgg16/block3_conv3/0000.json").read_text())["trust"]["seed_agreement"]
    assert seed["filters"] == [1, 2] and -1 <= seed["diversity"] <= 1 and -1 <= seed["random_filters"] <= 1


def test_trust_refuses_with_one_line(tiny, sample_tiles, tmp_path):
    bare = tmp_path / "bare"
    proc = run_atlas("generate", "--weights", "random", "--layers", "block1_conv1", "--filters", "0", "--size", "32",
                     "--steps", "2", "--out", str(bare))
    assert proc.returncode == 0, proc.stderr
    line = error_line(run_atlas("trust", "--weights", "random", "--images", str(sample_tiles), "--out", str(bare)))
    assert "no dataset examples" in line and "atlas examples --images DIR" in line
    line = error_line(run_atlas("trust", "--weights", "random", "--images", str(sample_tiles), "--out", str(tmp_path / "none")))
    assert "no atlas here" in line
    other = tmp_path / "other"
    other.mkdir()
    for name in sorted(p.name for p in sample_tiles.iterdir())[:5]:
        (other / name).write_bytes((sample_tiles / name).read_bytes())
    line = error_line(run_atlas("trust", "--weights", "random", "--images", str(other), "--out", str(tiny)))
    assert f"--images {other}: not the image set the dataset examples came from" in line
    line = error_line(run_atlas("trust", "--weights", "hed-bsds500", "--images", str(sample_tiles), "--out", str(tiny)))
    assert "other weights" in line and "--weights" in line
    line = error_line(run_atlas("trust", "--images", str(tmp_path / "missing"), "--out", str(tiny)))
    assert "no such folder" in line
    line = error_line(run_atlas("trust", "--weights", "random", "--images", str(sample_tiles), "--layers",
                                "block1_conv1,block5_conv3", "--out", str(tiny)))
    assert "no dataset examples of block5_conv3" in line and "atlas examples --layers block5_conv3" in line


def test_a_users_model_file_gets_its_trust(user_atlas, colour_files, tmp_path):
    """`atlas trust --model PATH.keras` on a user's network: every rendered filter scored, and its
    red detector's picture (4 steps, still) tells its red top images from the others."""
    import shutil

    out = tmp_path / "atlas"
    shutil.copytree(user_atlas, out)
    proc = run_atlas("trust", "--model", str(colour_files["keras"]), "--images", str(colour_files["images"]),
                     "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("trust of 10 filters in 4 layers"), proc.stdout
    for layer in ("conv1", "conv2_relu", "red_detector", "sep3"):
        rows = json.loads((out / f"colours/{layer}/layer.json").read_text())
        assert "trust" in rows, layer
    red = json.loads((out / "colours/red_detector/0000.json").read_text())["trust"]
    assert red["two_image"]["score"] >= 0.9 and red["two_image"]["pairs"] == 36
    # a layer of one filter ranks nothing and its pictures are alike by nature: no path, no seed score
    assert red["path_similarity"]["layers"] == [] and red["summary"]["path"] is None
    assert red["seed_agreement"]["diversity"] is None and red["summary"]["seed"] is None
    conv1 = json.loads((out / "colours/conv1/0000.json").read_text())["trust"]
    assert conv1["path_similarity"]["layers"] == ["conv1"] and conv1["summary"]["seed"] is not None


def test_where_no_photo_turns_the_filter_on_the_record_says_so_with_both_values():
    from generator.evidence.trust_scores import FilterEvidence, filter_trust

    def record(strongest):
        e = FilterEvidence(picture=[np.arange(4.0)], picture_value=3.5, picture_before=np.ones(3),
                           top_mean=[np.arange(4.0)], top_before=np.ones((2, 3)), bottom_before=np.zeros((2, 3)),
                           random=None, strongest_photo=strongest)
        return filter_trust(e, ["a"], "input", {})

    off = record(-2.0)
    assert off["beyond_nature"]["ratio"] is None and off["beyond_nature"]["no_photo_on"] is True
    assert (off["summary"]["picture_value"], off["summary"]["strongest_photo"]) == (3.5, -2.0)
    on = record(7.0)
    assert on["summary"]["beyond_nature"] == 0.5 and on["summary"]["no_photo_on"] is False
    assert on["natural_reference"] is None  # no held-out example was read


def test_the_field_view_is_scored_as_the_channel_picture_and_its_absence_makes_a_record_stale():
    """The field picture goes through the channel picture's checks (against every top and bottom example
    at its unit); a record made before the view existed is computed again once it does."""
    from generator.evidence.trust_scores import FilterEvidence, filter_trust, is_current

    rng = np.random.default_rng(0)
    picture, before = [rng.normal(size=5), rng.normal(size=8)], rng.normal(size=8)
    e = FilterEvidence(picture=picture, picture_value=6.0, picture_before=before, top_mean=[rng.normal(size=5), rng.normal(size=8)],
                       top_before=rng.normal(size=(4, 8)), bottom_before=rng.normal(size=(4, 8)), random=None,
                       strongest_photo=4.0, field=picture, field_value=6.0, field_before=before)
    record = filter_trust(e, ["a", "b"], "a", {"k": 1})
    field, summary = record["field"], record["summary"]
    assert (field["path"], field["two_image"], field["beyond_nature"]) == (summary["path"], summary["two_image"], 1.5)
    assert summary["field_path"] == field["path"] and summary["field_two_image"] == field["two_image"]
    e.field_value, e.field = -1.0, [-p for p in picture]  # a field picture that never turned its unit on
    other = filter_trust(e, ["a", "b"], "a", {"k": 1})["field"]
    assert other["beyond_nature"] == -0.25 and other["path"] == pytest.approx(-summary["path"], abs=1e-3)
    assert is_current({"trust": record}, {"k": 1}, False, has_field=True)
    del record["field"]
    assert is_current({"trust": record}, {"k": 1}, False) and not is_current({"trust": record}, {"k": 1}, False, has_field=True)


def test_the_first_layers_closed_form_maximum_is_the_maximum(hed_model):
    """Each pixel at 0 or 255 by the sign of its effect: the picture built that way reaches it through
    the network, and no random 8-bit patch goes past it."""
    from generator.bench.trust import linear_maximum
    from generator.render.config import RenderConfig
    from generator.render.renderer import LayerRenderer

    layer = find_layer("block1_conv1", "vgg16")
    top = linear_maximum(hed_model, layer)
    renderer = LayerRenderer(hed_model, layer, RenderConfig(weights="hed-bsds500", size=32, steps=1))
    kernel = hed_model.layer_weights(layer.tap)[0]
    best = np.stack([np.tile(np.where(kernel[:, :, ::-1, f] > 0, 255, 0).astype(np.uint8), (11, 11, 1))[:32, :32]
                     for f in range(4)])  # caffe: the kernel reads BGR
    judged = renderer.judge(best).pre_max
    assert [judged[f, f] for f in range(4)] == pytest.approx(top[:4], rel=1e-4)
    noise = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype(np.uint8)
    assert np.all(renderer.judge(noise).pre_max <= top[None, :] + 1e-3)


def test_trust_reads_the_atlass_own_model_weights_and_image_folder(tiny, sample_tiles, tmp_path):
    """Made with --weights random and the tiles: a bare `atlas trust --out` finds both (the folder by its
    recorded name, from where it sits), and the scores are those of the full command."""
    proc = run_atlas("trust", "--weights", "random", "--images", str(sample_tiles), "--out", str(tiny))
    assert proc.returncode == 0, proc.stderr
    full = _trust_of(tiny)
    here = {"PYTHONPATH": str(ROOT)}  # run from the tiles' parent folder, with this checkout's code
    proc = run_atlas("trust", "--out", str(tiny), cwd=sample_tiles.parent, env=here)
    assert proc.returncode == 0, proc.stderr
    assert "trust of 0 filters" in proc.stdout and _trust_of(tiny) == full  # the same weights and images: nothing stale
    line = error_line(run_atlas("trust", "--out", str(tiny), cwd=tmp_path, env=here))
    assert f"a folder named {sample_tiles.name!r} was not found" in line and "--images DIR" in line


def test_a_filter_no_photo_turns_on_shows_both_values():
    """Where the strongest photo is at or below 0 the ratio means nothing: the filter page, the layer table
    and the reading give the picture's value and the strongest photo's instead of a dash."""
    from generator.site import trust_pages

    def record(picture: float, photo: float) -> dict:
        ratio = picture / photo if photo > 0 else None
        summary = {"beyond_nature": ratio, "picture_value": picture, "strongest_photo": photo, "two_image": 0.8,
                   "path": 0.6, "path_random": 0.5}
        return {"summary": summary, "path_similarity": {"layers": ["a", "b"], "picture": None},
                "two_image": {"score": 0.8, "pairs": 4, "layer": "a"}, "seed_agreement": None,
                "beyond_nature": {"ratio": ratio, "picture": picture, "strongest_photo": photo}}

    lit = trust_pages.filter_row(record(724.3, -54.7))
    assert lit["rows"][0][1:] == ("724.3 where no photo turns it on (the strongest photo: -54.7)",
                                  "no photo turns the filter on; the picture does what none of them does")
    assert "no photo turns the filter on (the strongest: -54.7), while the picture drives it to 724.3" in lit["reading"]
    dark = trust_pages.filter_row(record(-6.73, -30.47))
    assert dark["rows"][0][2] == "neither the photos nor the picture turn the filter on"
    cells = trust_pages.table_row(50, "50/", "t.avif", record(724.3, -54.7)["summary"])["cells"]
    assert cells[3]["text"] == "724.3 where no photo turns it on (the strongest photo: -54.7)" and cells[3]["sort"] == ""
    on = trust_pages.filter_row(record(30.0, 10.0))
    assert on["rows"][0][1:] == ("×3 the strongest photo", "×1: as strong as the strongest photo")
