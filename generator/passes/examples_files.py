"""The files of ``atlas examples``: once the pass is over the whole image set (or ``atlas merge`` has
joined the shards), every filter's ``NNNN.examples.json`` and one WebP sprite of its crops (the
receptive field around each position; where it reaches past the image, grey), the class evidence and
``accuracy.json`` where there are labels, then the manifest's record of the examples.

The sprites are written a chunk of filters at a time with a bounded cache of decoded images, so memory
stays near the cache whatever the number of filters and examples.
"""

from __future__ import annotations

import functools
import io
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from generator.atlas.files import atomic_write_bytes, atomic_write_json, read_json
from generator.atlas.store import AtlasStore
from generator.evidence import classes
from generator.evidence.imagesets import display_name, load_image
from generator.evidence.tracker import HISTOGRAM_EDGES
from generator.network import inputs
from generator.network.layers import Layer
from generator.network.models import LoadedModel
from generator.passes.examples_config import ExamplesConfig

CELL = 64  # side of one crop in the sprites
GREY = 128  # where a crop reaches past its image, and the rows of a batch without one
# Decoded images the writing of the sprites holds at once (about 1,700 at 224 px), whatever the number
# of filters and examples: the crops of a layer are written a chunk of filters at a time.
IMAGE_CACHE_BYTES = 256 << 20


def write_examples(store: AtlasStore, loaded: LoadedModel, layers: list[Layer], state: list[dict],
                   config: ExamplesConfig, skips: list[tuple[int, str]], pool: ThreadPoolExecutor,
                   classify: bool = False) -> None:
    """The end of a pass over the whole image set (or of ``atlas merge``): every filter's examples
    and sprite, the class evidence and ``accuracy.json`` where there are labels, then the manifest."""
    evidence = _class_evidence(store, layers, state, config, classify)
    _write_examples(store, layers, state, config, pool, evidence, loaded.spec.preprocessing)
    if not classify:
        store.paths.accuracy_json.unlink(missing_ok=True)  # of an earlier pass: its examples are replaced
    labels = config.labels.summary() if config.labels is not None else None
    store.write_manifest(None, loaded, extra={"labels": labels, "examples": {
        "images": config.image_set(skips), "top": config.top,
        "layers": sorted(set(_manifest_layers(store)) | {layer.name for layer in layers},
                         key=lambda name: [x.name for x in loaded.layers].index(name)),
        "precision": config.precision, "backend": config.backend,
        "of": "the spatial maximum (top) and minimum (bottom) of each filter's map before its activation",
        **({"classifier": {**loaded.classifier, "of": "the classifier's weights that accuracy.json measures: "
                                                      "Keras's full-top file, or random"}}
           if classify and loaded.classifier else {}),
    }})


def _class_evidence(store: AtlasStore, layers: list[Layer], state: list[dict], config: ExamplesConfig,
                    classify: bool) -> classes.ClassEvidence | None:
    """The class counts and votes of the pass, and ``accuracy.json`` for a network with a classifier."""
    if config.labels is None:
        return None
    extra = state[len(layers)]
    votes = {layer.name: s["votes"] for layer, s in zip(layers, state) if "votes" in s}
    if classify:
        predictions = extra["pred"][: len(config.images.files)]
        valid = predictions[:, 0] >= 0  # unreadable images got no prediction
        atomic_write_json(store.paths.accuracy_json, classes.accuracy(config.labels, predictions, valid, config.model),
                          indent=None)
    return classes.ClassEvidence(config.labels, extra["count"], votes)


def _manifest_layers(store: AtlasStore) -> list[str]:
    manifest = read_json(store.paths.manifest, "manifest") if store.paths.manifest.exists() else {}
    return manifest.get("examples", {}).get("layers", [])


def _entries(values, images, positions, width: int, sign: float) -> list[tuple[float, int, int, int]]:
    out = []
    for value, image, pos in zip(values, images, positions):
        if image < 0 or not np.isfinite(value):
            continue
        out.append((float(sign * value), int(image), int(pos) // width, int(pos) % width))
    return out


def crop(image: np.ndarray, layer: Layer, y: int, x: int, cell: int = CELL) -> np.ndarray:
    """The receptive field of unit (y, x) in ``image``, grey where it reaches past the image, as a
    ``cell`` x ``cell`` picture (small fields enlarged with visible pixels, large ones reduced)."""
    from PIL import Image

    rf = layer.receptive_field
    cy, cx = layer.centre(y, x)
    top, left = int(round(cy - (rf - 1) / 2)), int(round(cx - (rf - 1) / 2))
    patch = np.full((rf, rf, 3), GREY, np.uint8)
    h, w = image.shape[:2]
    y0, x0, y1, x1 = max(0, top), max(0, left), min(h, top + rf), min(w, left + rf)
    if y1 > y0 and x1 > x0:
        patch[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    resample = Image.NEAREST if rf <= cell else Image.LANCZOS
    return np.asarray(Image.fromarray(patch).resize((cell, cell), resample))


class _DecodedImages:
    """Decoded images of the set, at most ``capacity`` held at once, the least recently used dropped
    first (one layer's strongest images are often the next one's too)."""

    def __init__(self, config: ExamplesConfig, pool: ThreadPoolExecutor, capacity: int) -> None:
        self.config, self.pool, self.capacity = config, pool, capacity
        self.held: OrderedDict[int, np.ndarray | None] = OrderedDict()

    def fetch(self, needed: list[int]) -> dict[int, np.ndarray | None]:
        """``needed`` (at most ``capacity`` of them), decoding those not held, in parallel."""
        missing = [i for i in needed if i not in self.held]
        wanted = set(needed)
        for i in [i for i in self.held if i not in wanted]:
            if len(self.held) + len(missing) <= self.capacity:
                break
            del self.held[i]
        decode = lambda i: load_image(self.config.images.path(i), self.config.size)  # noqa: E731
        for i, image in zip(missing, self.pool.map(decode, missing)):
            self.held[i] = image
        for i in needed:
            self.held.move_to_end(i)
        return {i: self.held[i] for i in needed}


def _filter_chunks(images_of: list[set[int]], capacity: int):
    """Consecutive filters whose examples together need at most ``capacity`` images (a filter that
    needs more alone)."""
    chunk, images = [], set()
    for f, needed in enumerate(images_of):
        if chunk and len(images | needed) > capacity:
            yield chunk, sorted(images)
            chunk, images = [], set()
        chunk.append(f)
        images |= needed
    if chunk:
        yield chunk, sorted(images)


def _write_examples(store: AtlasStore, layers: list[Layer], state: list[dict], config: ExamplesConfig,
                    pool: ThreadPoolExecutor, evidence: classes.ClassEvidence | None = None,
                    mode: object = "caffe") -> None:
    capacity = max(2 * config.top, IMAGE_CACHE_BYTES // (config.size * config.size * 3))
    cache = _DecodedImages(config, pool, capacity)
    for layer, s in zip(layers, state):
        width = layer.output_size(config.size)
        tops = [_entries(s["top_val"][:, f], s["top_img"][:, f], s["top_pos"][:, f], width, 1.0) for f in range(layer.filters)]
        bots = [_entries(s["bot_val"][:, f], s["bot_img"][:, f], s["bot_pos"][:, f], width, -1.0) for f in range(layer.filters)]
        images_of = [{e[1] for e in tops[f] + bots[f]} for f in range(layer.filters)]
        for chunk, needed in _filter_chunks(images_of, capacity):
            decoded = cache.fetch(needed)
            if inputs.resolve(mode).channels == 1:  # a grayscale network's crops as it sees them
                decoded = {i: None if image is None else inputs.as_seen(image, mode) for i, image in decoded.items()}
            crops = _Crops(layer, decoded)
            write = functools.partial(_write_filter, store, layer, config, crops, tops, bots, s["hist"], evidence)
            list(pool.map(write, chunk))  # image encoding releases the GIL: one filter per thread


class _Crops:
    """The crops of one chunk of a layer's filters, each cut once: the filters of a layer share many of
    their strongest positions (in a deep layer of a small input, a few positions hold every maximum),
    and a large receptive field costs a resampling of its whole square."""

    LIMIT = 8192  # crops held at once (12 KB each at 64 px)

    def __init__(self, layer: Layer, decoded: dict) -> None:
        self.layer, self.decoded, self.held = layer, decoded, {}

    def get(self, image: int, y: int, x: int) -> np.ndarray | None:
        if self.decoded.get(image) is None:
            return None
        key = (image, y, x)
        found = self.held.get(key)
        if found is None:
            if len(self.held) >= self.LIMIT:
                self.held.clear()
            found = self.held[key] = crop(self.decoded[image], self.layer, y, x)
        return found


def _write_filter(store: AtlasStore, layer: Layer, config: ExamplesConfig, crops: _Crops, tops: list, bots: list,
                  hist: np.ndarray, evidence: classes.ClassEvidence | None, f: int) -> None:
    """One filter's sprite (top row, then bottom row) and its ``examples.json``."""
    from PIL import Image

    k = config.top
    sprite = np.full((2 * CELL, k * CELL, 3), GREY, np.uint8)
    for row, entries in enumerate((tops[f], bots[f])):
        for i, (_, image, y, x) in enumerate(entries):
            cut = crops.get(image, y, x)
            if cut is not None:
                sprite[row * CELL:(row + 1) * CELL, i * CELL:(i + 1) * CELL] = cut
    buffer = io.BytesIO()
    Image.fromarray(sprite).save(buffer, format="WEBP", quality=80, method=3)
    atomic_write_bytes(store.paths.examples_sprite(layer.name, f), buffer.getvalue())
    record = {
        "model": config.model, "layer": layer.name, "filter": f,
        "images": config.image_set(),
        "of": "the filter's map before its activation: its maximum over each image (top) and minimum (bottom)",
        "top": [_entry_json(config, e) for e in tops[f]],
        "bottom": [_entry_json(config, e) for e in bots[f]],
        "histogram": {"of": "per-image maximum", "edges": HISTOGRAM_EDGES, "counts": [int(c) for c in hist[f]]},
        "sprite": {"file": store.paths.examples_sprite(layer.name, f).name, "cell": CELL,
                   "rows": ["top", "bottom"], "columns": k},
    }
    if evidence is not None:
        for entries, kind in ((tops[f], "top"), (bots[f], "bottom")):
            for entry, (_, image, _, _) in zip(record[kind], entries):
                entry["label"] = evidence.label(image)
        record["classes"] = evidence.record(layer, f, [image for _, image, _, _ in tops[f]])
    atomic_write_json(store.paths.examples_json(layer.name, f), record, indent=None)


def _entry_json(config: ExamplesConfig, entry: tuple[float, int, int, int]) -> dict:
    value, image, y, x = entry
    return {"image": display_name(config.images.files[image]), "value": float(f"{value:.6g}"), "y": y, "x": x}
