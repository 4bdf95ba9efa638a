"""``atlas examples``: the real image patches that drive each filter furthest up and down.

The pass streams an image set through the examples tracker (``generator.evidence.tracker``: per filter
the top and bottom ``k`` images and a histogram, on the device); images are decoded by a pool of CPU
threads a few batches ahead of the device, and several devices take the batches in turn.

The pass is checkpointed every ``checkpoint`` images (``examples_checkpoint``); an interrupted or
killed run resumes from its last checkpoint, with the batches cut exactly as before (with ``--batch``
auto, the checkpoint's batch), so the result equals an uninterrupted run byte for byte; a checkpoint
that is not used is named with the reason. The finished pass is saved too, before each filter gets
its files (``examples_files``); a failure while writing (a full disk) does not redo the pass. A shard
streams its part of the images and keeps its tracker state for ``atlas merge``.

With ``--labels`` the same pass also counts each class, and for a network with a classifier records each
image's top predictions and each filter's votes for the classes (``generator.evidence.classes``): every filter's
``examples.json`` gains ``classes``, its entries a ``label``, and the model ``accuracy.json``.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from generator.atlas.files import atomic_write_json, read_json
from generator.atlas.store import AtlasStore, weights_name
from generator.cluster.jobs import ExamplesJob
from generator.cluster.shard_store import ShardStore
from generator.cluster.split import Shard
from generator.errors import AtlasError
from generator.evidence.imagesets import ImageSet, decode_image
from generator.evidence.tracker import Tracker, auto_examples_batch, join_states
from generator.interrupt import StopFlag
from generator.network import backend
from generator.network.layers import Layer
from generator.network.models import LoadedModel
from generator.passes.examples_checkpoint import load_checkpoint, save_checkpoint
from generator.passes.examples_config import (
    ExamplesConfig,
    count_reasons,
    skipped_files,
)
from generator.passes.examples_files import GREY, write_examples
from generator.progress import Progress


@dataclass
class ExamplesSummary:
    images: int
    skipped: int
    layers: int
    filters: int
    seconds: float
    interrupted: bool = False
    resumed_at: int = 0
    out: str = ""
    timings: dict = field(default_factory=dict)
    skipped_by_reason: dict = field(default_factory=dict)
    done_before: bool = False  # a shard whose part had finished before: nothing was streamed

    def line(self) -> str:
        rate = (self.images - self.resumed_at) / self.seconds if self.seconds > 0 else 0.0
        if self.done_before:
            resumed = ", done before: nothing redone"
        elif self.images and self.resumed_at >= self.images:
            resumed = ", the pass itself read from its checkpoint"
        else:
            resumed = f", resumed at image {self.resumed_at}" if self.resumed_at else ""
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped_by_reason.items())
        skipped = f" (skipped {self.skipped}: {reasons})" if self.skipped else ""
        return (f"{self.images} images{skipped} through {self.layers} layers in {self.seconds:.1f} s "
                f"({rate:.1f} images/s{resumed}); examples of {self.filters} filters in {self.out}")


def _decode_batch(pool: ThreadPoolExecutor, image_set: ImageSet, start: int, batch: int, size: int):
    count = len(image_set.files)
    indices = range(start, min(start + batch, count))
    return [pool.submit(decode_image, image_set.path(i), size) for i in indices]


def _collect(futures, batch: int, size: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """The batch's images, which rows hold one, and (row, reason) of each file skipped."""
    images = np.full((batch, size, size, 3), GREY, np.uint8)
    valid = np.zeros((batch,), bool)
    skips = []
    for i, future in enumerate(futures):
        image = future.result()
        if isinstance(image, str):
            skips.append((i, image))
        else:
            images[i], valid[i] = image, True
    return images, valid, skips


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _check_atlas(store: AtlasStore, loaded: LoadedModel, config: ExamplesConfig, force: bool) -> None:
    """The folder's weights must be these, and its examples from this image set and size (or --force)."""
    store.check_weights(config.weights_sha256, weights_name(loaded.weights), force)
    if not store.paths.manifest.exists():
        return
    manifest = read_json(store.paths.manifest, "manifest")
    old = manifest.get("examples", {}).get("images")
    if old and (old["list_sha256"], old["size"]) != (config.images.sha256, config.size):
        if not force:
            raise AtlasError(
                f"{store.paths.model_dir} holds examples from another image set or size ({old['count']} images of "
                f"{old['folder']}, {old['size']} px); add --force to replace them, or use another --out"
            )
        for path in store.paths.model_dir.glob("*/[0-9][0-9][0-9][0-9].examples.*"):
            path.unlink()
        if store.paths.examples_state.exists():
            _say(f"{store.paths.examples_state}: the checkpoint of the other image set is removed (--force)")
            store.paths.examples_state.unlink()
        store.paths.accuracy_json.unlink(missing_ok=True)
        manifest.pop("examples", None)
        atomic_write_json(store.paths.manifest, manifest)


@dataclass
class _Stream:
    """The images going through the trackers (one a device: batch i to device i mod n), how far they
    got and the files skipped; the devices' states are merged (at every checkpoint and at the end) by
    value, then image: the one-device result, byte for byte."""

    store: AtlasStore
    config: ExamplesConfig
    trackers: list[Tracker]
    states: list[list[dict]]
    batch: int
    every: int  # images between checkpoints
    fingerprint: dict
    position: int = 0
    skips: list[tuple[int, str]] = field(default_factory=list)

    def run(self, pool: ThreadPoolExecutor, flag: StopFlag, progress: Progress) -> list[dict]:
        """Every image from ``position`` on, until the end or Ctrl-C; the joined state."""
        config, batch, trackers = self.config, self.batch, self.trackers
        count = len(config.images.files)
        ahead = [_decode_batch(pool, config.images, s, batch, config.size)
                 for s in range(self.position, min(count, self.position + 3 * batch), batch)]
        while self.position < count and not flag.stop:
            futures = ahead.pop(0)
            following = self.position + len(ahead) * batch + batch
            if following < count:
                ahead.append(_decode_batch(pool, config.images, following, batch, config.size))
            images, valid, batch_skips = _collect(futures, batch, config.size)
            turn = self.position // batch % len(trackers)
            self.states[turn] = trackers[turn].update(self.states[turn], images, valid, self.position)
            self.skips += [(self.position + i, reason) for i, reason in batch_skips]
            self.position += len(futures)
            progress.update(len(futures), "examples")
            if self.position % self.every == 0 and self.position < count:
                self.states = [join_states(self.states)] + [t.initial_state() for t in trackers[1:]]
                self.save(self.states[0])
        return join_states(self.states)

    def save(self, state: list[dict]) -> None:
        save_checkpoint(self.store, state, self.fingerprint, self.position, self.skips)


def _start(loaded: LoadedModel, layers: list[Layer], config: ExamplesConfig, store: AtlasStore, batch: int,
           auto: bool, checkpoint: int, devices: list[backend.Device] | None) -> _Stream:
    """The stream from the checkpoint there (with its batch, ``auto``) or from image 0."""
    resumed, note = load_checkpoint(store, config, layers, batch, auto)
    if note:
        _say(note)
    state, position, skips = None, 0, []
    if resumed:
        state, position, skips, batch = resumed
    count = len(config.images.files)
    trackers = [Tracker(loaded, layers, config.top, config.precision, loaded.spec.preprocessing, config.labels,
                        batch, count, device) for device in devices or [None]]
    states = [state or trackers[0].initial_state()] + [t.initial_state() for t in trackers[1:]]
    return _Stream(store, config, trackers, states, batch, max(batch, checkpoint // batch * batch),
                   config.fingerprint(layers, batch), position, skips)


def _open(out: str, config: ExamplesConfig, layers: list[Layer], loaded: LoadedModel,
          shard: Shard | None) -> tuple[AtlasStore, ExamplesConfig, ExamplesJob | None]:
    """The store the pass writes to, its share of the settings and its job: the atlas itself, or a
    shard's store with its part of the images."""
    if shard is None:
        return AtlasStore(out, config.model), config, None
    job = ExamplesJob(config, tuple(layers), shard.count, weights=loaded.weights, classifier=loaded.classifier)
    return ShardStore(out, config.model, job, shard, loaded.spec), job.share(shard.index), job


def _batch_size(layers: list[Layer], loaded: LoadedModel, config: ExamplesConfig, facts: backend.DeviceFacts) -> int:
    batch = auto_examples_batch(layers, loaded.layers, config.size, facts)
    if config.labels is not None and loaded.spec.head and facts.kind == "gpu":
        batch = max(8, batch // 2)  # the votes' backward pass keeps every map for its gradient
    return batch


def run_examples(loaded: LoadedModel, layers: list[Layer], config: ExamplesConfig, out: str,
                 batch: int | None = None, force: bool = False, facts: backend.DeviceFacts | None = None,
                 checkpoint: int = 1024, progress: Progress | None = None, shard: Shard | None = None,
                 devices: list[backend.Device] | None = None) -> ExamplesSummary:
    """The whole pass: resume or start, stream every image through, write the examples. A ``shard``
    streams its part of the images and keeps its tracker state for ``atlas merge``; several
    ``devices`` take the batches in turn."""
    start_time = time.monotonic()
    if facts is None:  # batches sized by the device with the least free memory
        known = [d.facts for d in devices or [] if d is not None]
        facts = min(known, key=lambda f: f.free_bytes or 0) if known else backend.device_facts()
    auto = batch is None
    whole = config
    store, config, job = _open(out, config, layers, loaded, shard)
    batch = batch or _batch_size(layers, loaded, config, facts)
    count = len(config.images.files)
    summary = ExamplesSummary(count, 0, len(layers), sum(layer.filters for layer in layers), 0.0,
                              out=f"{out}/{config.model}")
    with store.lock():
        store.remove_stale_temporaries()
        with store.manifest_lock():
            _check_atlas(store, loaded, whole, force)
            finished = job is not None and store.begin(force)
        if finished:  # this shard's part was done before: nothing to redo
            summary.resumed_at, summary.done_before = count, True
            return summary
        stream = _start(loaded, layers, config, store, batch, auto, checkpoint, devices)
        summary.resumed_at = stream.position
        progress = progress or Progress(count - stream.position, unit="images")
        with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool, StopFlag() as flag:
            state = stream.run(pool, flag, progress)
            skipped = skipped_files(config.images, stream.skips)
            summary.skipped, summary.skipped_by_reason = len(skipped), count_reasons(skipped)
            if flag.stop and stream.position < count:
                stream.save(state)
                summary.interrupted = True
                progress.close()
                summary.seconds = time.monotonic() - start_time
                return summary
            progress.close()
            summary.timings["pass"] = time.monotonic() - start_time
            if job is not None:
                store.finish_examples(state, stream.skips)
            else:
                if summary.resumed_at < count:  # saved before the files: a failure there (a full disk) keeps the pass
                    stream.save(state)
                write_examples(store, loaded, layers, state, config, stream.skips, pool, stream.trackers[0].classify)
        store.paths.examples_state.unlink(missing_ok=True)
    summary.seconds = time.monotonic() - start_time
    return summary
