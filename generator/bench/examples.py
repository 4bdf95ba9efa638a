"""``atlas bench examples``: images per second of the dataset-examples pass, split into decoding (CPU
threads) and the device's forward pass with its streaming top-k, and the two overlapped. With
``--labels`` and a network with a classifier, also the labelled pass (predictions and each filter's
votes: one backward pass per batch), timed alternately with the plain one in the same process."""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def _device_seconds(trackers: dict, stack: np.ndarray, batch: int, size: int, count: int,
                    rounds: int) -> dict[str, float]:
    """Per tracker, the best of ``rounds`` passes of the decoded images (``stack``) through it, the
    trackers taking turns, after one batch each to compile."""
    from generator.network import backend

    valid = np.ones(batch, bool)
    first = np.resize(stack, (batch, size, size, 3))
    times: dict[str, float] = {}
    for tracker in trackers.values():
        backend.to_numpy(tracker.update(tracker.initial_state(), first, valid, 0)[0]["hist"])  # compile
    for _ in range(rounds):  # alternately, the best of two each
        for kind, tracker in trackers.items():
            state = tracker.initial_state()
            t0 = time.perf_counter()
            for start in range(0, count, batch):
                chunk = np.resize(stack[start:start + batch], (batch, size, size, 3))
                state = tracker.update(state, chunk, valid, start)
            backend.to_numpy(state[0]["hist"])
            times[kind] = min(times.get(kind, np.inf), time.perf_counter() - t0)
    return times


def run(args, network) -> tuple[str, str]:
    from generator.bench import default_weights, load, machine
    from generator.network import backend

    backend.select(args.backend)
    from generator.evidence.imagesets import list_images, load_image, write_sample_tiles
    from generator.evidence.tracker import Tracker, auto_examples_batch
    from generator.network.selection import parse_layers
    from generator.passes.examples import run_examples
    from generator.passes.examples_config import ExamplesConfig
    from generator.progress import Progress

    size = args.size or 224
    weights = default_weights(args, network)
    facts = backend.device_facts()
    precision = args.precision or backend.resolve_precision("auto", facts)
    loaded = load(network, weights)
    layers = parse_layers(args.layers, network.spec)
    with tempfile.TemporaryDirectory(prefix="atlas-examples-bench-") as tmp:
        folder = Path(args.images) if args.images else Path(tmp) / "tiles"
        if not args.images:
            write_sample_tiles(folder, 96)
        images = list_images(folder)
        count = len(images.files)
        batch = args.batch or auto_examples_batch(layers, loaded.layers, size, facts)
        workers = min(16, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            t0 = time.perf_counter()
            decoded = list(pool.map(lambda i: load_image(images.path(i), size), range(count)))
            t_decode = time.perf_counter() - t0
        stack = np.stack([d for d in decoded if d is not None])
        labels = None
        if args.labels and loaded.spec.head:
            from generator.evidence.labels import read_labels

            labels = read_labels(args.labels, images, loaded.spec)
        trackers = {"plain": Tracker(loaded, layers, 16, precision, loaded.spec.preprocessing)}
        if labels is not None:
            trackers["labels"] = Tracker(loaded, layers, 16, precision, loaded.spec.preprocessing, labels, batch, count)
        times = _device_seconds(trackers, stack, batch, size, count, 2 if labels is not None else 1)
        t_device = times["plain"]
        config = ExamplesConfig(model=network.name, weights_sha256=loaded.weights_sha256, size=size, top=16,
                                images=images, precision=precision, backend=backend.name(), labels=labels)
        t0 = time.perf_counter()
        summary = run_examples(loaded, layers, config, str(Path(tmp) / "atlas"), batch=batch, facts=facts,
                               progress=Progress(count, open(os.devnull, "w"), unit="images"))
        t_total = time.perf_counter() - t0
    filters = sum(layer.filters for layer in layers)
    text = (
        f"### Dataset examples of {network.name}: {count} images at {size} px through {len(layers)} layers "
        f"({filters:,} filters), top 16 each way\n\n"
        f"Machine: {machine()}. Backend {backend.name()}, {precision}, batch {batch}, {workers} decode threads. "
        f"Command: `atlas bench examples --model {Path(network.name).name}"
        f"{' --preprocess ' + args.preprocess if getattr(args, 'preprocess', None) else ''}"
        f"{' --images ' + args.images if args.images else ''}{' --labels ' + args.labels if labels else ''}`"
        f"{'' if args.images else ' (the sample-images tiles, 96 px, resized to ' + str(size) + ')'}.\n\n"
        "| part | seconds | images/s |\n| --- | ---: | ---: |\n"
        f"| decode and resize (threads, alone) | {t_decode:.1f} | {count / t_decode:.0f} |\n"
        f"| device: one forward pass for all layers + streaming top-k and histograms (alone) | {t_device:.1f} | {count / t_device:.1f} |\n"
        + (f"| device, labelled: the same + predictions + each filter's class votes (one backward pass per batch, "
           f"{len(labels.classes)} classes) | {times['labels']:.1f} | {count / times['labels']:.1f} |\n" if labels else "")
        +
        f"| the whole command: both overlapped, checkpoints, then {filters * 2:,} files written "
        f"| {t_total:.1f} | {count / t_total:.1f} |\n\n"
        f"The pass itself (decode and device overlapped) took {summary.timings['pass']:.1f} s of that; the rest "
        "was cutting the crops and writing each filter's JSON and sprite."
    )
    return f"examples-{network.name}", text
