"""``atlas generate``: plan the work, skip what is done, render batch by batch, store each batch.

Resume is exact: each picture's randomness is its own (seed, layer, filter, view), so the filters
still missing are rendered in whatever batches and land on the same bytes. Ctrl-C finishes the batches
in flight, saves them and stops; a second Ctrl-C stops at once (files are written atomically, so
nothing is left half-written either way). On one device, out of memory halves the batch for the rest
of the layer.

Several devices (every GPU the backend sees, or ``--devices N``): the batches are cut exactly as for
one device, and each device's thread takes the next batch of the whole plan as soon as it is free
(so a device is never idle while another still has a layer's last batch); the main thread writes
every result. The same batches run the same compiled program, so the pictures are byte-identical to a
one-device run. A device that runs out of memory or fails ends the run with one line naming it, once
the other devices' batches in flight are written; a rerun resumes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from generator.atlas.records import layer_row
from generator.atlas.store import AtlasStore
from generator.cluster.jobs import GenerateJob
from generator.cluster.shard_store import ShardStore
from generator.cluster.split import Shard
from generator.errors import AtlasError
from generator.evidence.imagesets import ImageSet
from generator.interrupt import StopFlag
from generator.network import backend
from generator.network.layers import Layer
from generator.network.models import LoadedModel
from generator.passes.accentuation_starts import (
    is_current,
    load_starts,
    strongest_examples,
)
from generator.progress import Progress
from generator.render.config import RenderConfig
from generator.render.renderer import LayerRenderer, RenderedView, auto_batch
from generator.render.views import CHANNEL, View, views_of


@dataclass
class GenerateSummary:
    rendered: int  # filter views written
    skipped: int  # filter views already done
    interrupted: bool
    dead: int
    retried: int
    seconds: float
    failed: list[str] = field(default_factory=list)  # layer:filter (view) non-finite even in float32
    no_start: int = 0  # accentuation: filters whose strongest example could not be read


@dataclass(frozen=True)
class Batch:
    """One batch of the plan: ``filters`` of ``layer`` (at most ``size``), rendered as ``size`` rows."""

    layer: Layer
    view: View
    filters: tuple[int, ...]
    size: int


def generate(
    loaded: LoadedModel,
    config: RenderConfig,
    work: list[tuple[Layer, list[int]]],
    out: str,
    views: list[View] = (CHANNEL,),
    batch: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
    facts: backend.DeviceFacts | None = None,
    devices: list[backend.Device] | None = None,
    shard: Shard | None = None,
    images: ImageSet | None = None,
) -> GenerateSummary:
    """Render every view of every (layer, filters) of ``work`` into ``out`` under ``config``, on
    ``devices`` (default: the backend's default device alone); with ``shard``, only that part of the
    work, beside the other shards (``generator.cluster.shard_store``). The accentuation view is made
    for the filters with dataset examples, from ``images`` (the folder they came from)."""
    start = time.monotonic()
    for layer, _ in work:
        config.check_layer(layer)
    devices = devices or [None]
    if facts is None:  # batches sized by the device with the least free memory
        known = [d.facts for d in devices if d is not None]
        facts = min(known, key=lambda f: f.free_bytes or 0) if known else backend.device_facts()
    store, work = _open_store(loaded, config, work, out, views, shard)
    summary = GenerateSummary(0, 0, False, 0, 0, 0.0)
    with store.lock():
        store.prepare(config, loaded, force)
        records = {layer.name: store.records(layer, config.hash) for layer, _ in work}
        rows = {layer.name: store.refresh_layer(layer, config) for layer, _ in work}  # a crash can leave it stale
        fixed = loaded.spec.input_size
        photos = AtlasStore(out, config.model).paths  # the examples are the atlas's own, whatever the shard
        tops = {layer.name: strongest_examples(photos, layer, filters) if images is not None and any(v.from_photo for v in views)
                else {} for layer, filters in work}
        plan = _plan(store, work, views, records, config.size, fixed, tops)
        summary.skipped = (sum(len(tops[layer.name]) if view.from_photo else len(filters)
                               for layer, filters in work for view in views_of(views, layer, config.size, fixed))
                           - sum(len(q) for *_, q in plan))
        renderers = LayerRenderers(loaded, config, devices)
        plan, summary.no_start = _give_starts(plan, renderers, images, tops, config.size)
        progress = progress or Progress(sum(len(q) for *_, q in plan))
        write = _writer(store, config, records, rows, summary, progress)

        def size_of(layer: Layer, view: View, queue: list[int]) -> int:
            side = view.canvas(layer, config.size, loaded.spec.input_size)
            return batch or auto_batch(layer, loaded.layers, side, len(queue), facts, view.images)

        with StopFlag() as flag:
            _render(plan, size_of, renderers, flag, write)
            summary.interrupted = flag.stop
        if shard is None:
            store.write_manifest(config, loaded)
        elif not (summary.interrupted or summary.failed):
            store.write_record(finished=True, result={"rendered": summary.rendered, "skipped": summary.skipped,
                                                      "dead": summary.dead, "retried": summary.retried})
    progress.close()
    summary.seconds = time.monotonic() - start
    return summary


def _open_store(loaded: LoadedModel, config: RenderConfig, work: list[tuple[Layer, list[int]]], out: str,
                views: list[View], shard: Shard | None) -> tuple[AtlasStore, list[tuple[Layer, list[int]]]]:
    """The store a run writes through and the work that is its own: all of it, or a shard's part."""
    if shard is None:
        return AtlasStore(out, config.model), work
    job = GenerateJob(tuple((layer, tuple(f)) for layer, f in work), tuple(views), config, shard.count,
                      weights=loaded.weights, table=loaded.layers)
    return ShardStore(out, config.model, job, shard, loaded.spec), job.share(shard.index)


def _plan(store: AtlasStore, work: list[tuple[Layer, list[int]]], views: list[View],
          records: dict[str, dict[int, dict]], size: int, fixed: int | None,
          tops: dict[str, dict[int, tuple[str, float]]]) -> list[tuple[Layer, View, list[int]]]:
    """(layer, view, filters still missing) in the order of ``work`` then ``views``; nothing done twice;
    a view that does not apply to a layer (the field view of a wide receptive field) is not planned, the
    accentuation view only for filters with dataset examples (``tops``), again where those changed."""

    def missing(layer: Layer, filters: list[int], view: View) -> list[int]:
        have, top = records[layer.name], tops[layer.name]
        if view.from_photo:
            return [f for f in filters if f in top and not (f in have and view.name in store.done_views(layer, have[f])
                                                            and is_current(have[f], top[f]))]
        return [f for f in filters if f not in have or view.name not in store.done_views(layer, have[f])]

    plan = [(layer, view, missing(layer, filters, view)) for layer, filters in work
            for view in views_of(views, layer, size, fixed)]
    return [(layer, view, queue) for layer, view, queue in plan if queue]


def _give_starts(plan, renderers: LayerRenderers, images: ImageSet | None,
                 tops: dict[str, dict[int, tuple[str, float]]], size: int) -> tuple[list, int]:
    """The plan less the accentuation filters whose start photograph cannot be read, and how many those
    are; each layer's renderers are given the start photographs of the rest."""
    out, unread = [], 0
    for layer, view, pending in plan:
        if view.from_photo:
            starts = load_starts(images, tops[layer.name], pending, size)
            unread += len(pending) - len(starts)
            renderers.starts[layer.name] = starts
            pending = [f for f in pending if f in starts]
        if pending:
            out.append((layer, view, pending))
    return out, unread


def _writer(store: AtlasStore, config: RenderConfig, records: dict[str, dict[int, dict]],
            rows: dict[str, dict[int, dict]], summary: GenerateSummary,
            progress: Progress) -> Callable[[Batch, list[RenderedView]], None]:
    """What the calling thread does with each finished batch: write its views, keep ``records``, ``rows``
    and ``summary`` up to date, rewrite the layer's table and tick ``progress``."""

    def write(item: Batch, results: list[RenderedView]) -> None:
        layer = item.layer
        for result in results:
            if result.failed:
                summary.failed.append(f"{layer.name}:{result.filter} ({item.view.name})")
                continue
            record = store.write_view(layer, result, config)
            records[layer.name][result.filter] = record
            done = store.done_views(layer, record)
            if "channel" in done:
                rows[layer.name][result.filter] = layer_row(record, done)
            summary.rendered += 1
            summary.dead += result.dead
            summary.retried += result.retried
        store.write_layer(layer, rows[layer.name], config)
        progress.update(len(item.filters), f"{layer.name} {item.view.name}")

    return write


def _render(plan, size_of: Callable, renderers: LayerRenderers, flag: StopFlag, write: Callable) -> None:
    """The plan on one device batch after batch, or on several, each taking the next batch as it frees."""
    if len(renderers.devices) == 1:
        _render_serial(plan, size_of, renderers, flag, write)
    else:
        batches = [Batch(layer, view, tuple(queue[i:i + size]), size)
                   for layer, view, queue in plan for size in [size_of(layer, view, queue)]
                   for i in range(0, len(queue), size)]
        _render_parallel(batches, renderers, flag, write)


class LayerRenderers:
    """One ``LayerRenderer`` per layer and device, made in the calling thread (building the cut network
    touches Keras' global state), with the contrast term's reference rendered once per layer and
    shared by the devices."""

    def __init__(self, loaded: LoadedModel, config: RenderConfig, devices: list[backend.Device | None]) -> None:
        self.loaded, self.config, self.devices = loaded, config, devices
        self._made: dict[tuple[str, int], LayerRenderer] = {}
        self.starts: dict[str, dict] = {}  # per layer: the accentuation view's start photographs

    def get(self, layer: Layer, device_index: int = 0) -> LayerRenderer:
        key = (layer.name, device_index)
        if key not in self._made:
            self._made[key] = LayerRenderer(self.loaded, layer, self.config, self.devices[device_index])
            self._made[key].give_starts(self.starts.get(layer.name, {}))
        return self._made[key]

    def prepare(self, item: Batch) -> None:
        """Everything a worker thread will need for ``item``, made here: every device's renderer of its
        layer with its networks, and the layer's contrast reference."""
        first = self.get(item.layer)
        for index in range(len(self.devices)):
            renderer = self.get(item.layer, index)
            for precision in {self.config.precision, "float32"}:
                renderer.net(precision, item.view)
            if renderer.needs_reference(item.view):
                renderer.share_reference(first.reference(item.size))


def _render_serial(plan, size_of: Callable, renderers: LayerRenderers, flag: StopFlag, write: Callable) -> None:
    """One device: batch after batch; out of memory halves the batch for the rest of the layer."""
    device = renderers.devices[0]
    for layer, view, pending in plan:
        if flag.stop:
            break
        renderer = renderers.get(layer)
        size = size_of(layer, view, pending)
        while pending and not flag.stop:
            chunk = pending[:size]
            try:
                results = renderer.render_batch(chunk, size, view)
            except Exception as exc:  # noqa: BLE001 - only out of memory is handled here
                if not backend.is_out_of_memory(exc):
                    raise
                if size == 1:
                    raise AtlasError(f"{_name(device)}: out of memory rendering {layer.name} one filter at a time; "
                                     "finished batches are saved; use a smaller --size or a device with more memory") from None
                size //= 2  # the rest of the layer goes at the new size: one more compile, not one per batch
                continue
            pending = pending[len(chunk):]
            write(Batch(layer, view, tuple(chunk), size), results)


def _render_parallel(batches: list[Batch], renderers: LayerRenderers, flag: StopFlag, write: Callable) -> None:
    """Several devices: a thread per device takes the next batch of the plan; the calling thread writes
    each result as it comes. The first failure stops the hand-out; batches in flight still land."""
    for item in batches:
        renderers.prepare(item)
    pending = deque(batches)
    lock = threading.Lock()
    results: queue.Queue = queue.Queue()
    failures: list[tuple[backend.Device, Batch, BaseException]] = []
    done = object()

    def work(index: int) -> None:
        try:
            while True:
                with lock:
                    if flag.stop or failures or not pending:
                        return
                    item = pending.popleft()
                try:
                    out = renderers.get(item.layer, index).render_batch(list(item.filters), item.size, item.view)
                except BaseException as exc:  # noqa: BLE001 - reported by the calling thread
                    with lock:
                        failures.append((renderers.devices[index], item, exc))
                    return
                results.put((item, out))
        finally:
            results.put(done)

    threads = [threading.Thread(target=work, args=(i,), daemon=True, name=f"device-{i}")
               for i in range(len(renderers.devices))]
    for thread in threads:
        thread.start()
    running = len(threads)
    while running:
        try:
            message = results.get(timeout=0.5)
        except queue.Empty:
            continue
        if message is done:
            running -= 1
        else:
            write(*message)
    if failures:
        device, item, exc = failures[0]
        if backend.is_out_of_memory(exc):
            why = f"out of memory rendering {item.layer.name} {item.view.name} at batch {item.size}"
            fix = f"rerun with --batch {max(1, item.size // 2)} to resume"
        else:
            text = str(exc).strip().splitlines()
            why = f"failed rendering {item.layer.name} {item.view.name} ({type(exc).__name__}: {text[-1][:160] if text else ''})"
            fix = "rerun to resume, or leave it out with --devices"
        raise AtlasError(f"{_name(device)}: {why}; the other devices' batches are saved; {fix}")


def _name(device: backend.Device | None) -> str:
    return device.label() if device is not None else "the device"
