"""``atlas generate``: plan the work, skip what is done, render batch by batch, store each batch.

Resume is exact: each picture's randomness is its own (seed, layer, filter, view), so the filters
still missing are rendered in whatever batches and land on the same bytes. Ctrl-C finishes the batch
in flight, saves it and stops; a second Ctrl-C stops at once (files are written atomically, so nothing
is left half-written either way). Out of memory halves the batch for the rest of the layer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from generator import backend
from generator.config import RenderConfig
from generator.interrupt import StopFlag
from generator.layers import Layer
from generator.models import LoadedModel
from generator.progress import Progress
from generator.render import LayerRenderer, auto_batch
from generator.shards import GenerateJob, Shard, ShardStore
from generator.store import AtlasStore, layer_row
from generator.views import CHANNEL, View


@dataclass
class GenerateSummary:
    rendered: int  # filter views written
    skipped: int  # filter views already done
    interrupted: bool
    dead: int
    retried: int
    seconds: float
    failed: list[str] = field(default_factory=list)  # layer:filter (view) non-finite even in float32


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
    shard: Shard | None = None,
) -> GenerateSummary:
    """Render every view of every (layer, filters) of ``work`` into ``out`` under ``config``; with
    ``shard``, only that part of the work, beside the other shards (``generator.shards``)."""
    start = time.monotonic()
    for layer, _ in work:
        config.check_layer(layer)
    facts = facts or backend.device_facts()
    if shard is None:
        store = AtlasStore(out, config.model)
    else:
        job = GenerateJob(tuple((layer, tuple(f)) for layer, f in work), tuple(views), config, shard.count)
        work = job.share(shard.index)
        store = ShardStore(out, config.model, job, shard)
    summary = GenerateSummary(0, 0, False, 0, 0, 0.0)
    with store.lock():
        store.prepare(config, loaded, force)
        records = {layer.name: store.records(layer, config.hash) for layer, _ in work}
        rows = {layer.name: store.refresh_layer(layer, config) for layer, _ in work}  # a crash can leave it stale

        def missing(layer: Layer, filters: list[int], view: View) -> list[int]:
            have = records[layer.name]
            return [f for f in filters if f not in have or view.name not in store.done_views(layer, have[f])]

        plan = [(layer, view, missing(layer, filters, view)) for layer, filters in work for view in views]
        summary.skipped = sum(len(filters) for _, filters in work) * len(views) - sum(len(m) for *_, m in plan)
        progress = progress or Progress(sum(len(m) for *_, m in plan))
        renderers: dict[str, LayerRenderer] = {}
        with StopFlag() as flag:
            for layer, view, queue in plan:
                if not queue or flag.stop:
                    continue
                renderer = renderers.setdefault(layer.name, LayerRenderer(loaded, layer, config))
                size = batch or auto_batch(layer, loaded.layers, config.size, len(queue), facts, view.images)
                while queue and not flag.stop:
                    chunk = queue[:size]
                    try:
                        results = renderer.render_batch(chunk, size, view)
                    except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled here
                        if not backend.is_out_of_memory(exc) or size == 1:
                            raise
                        size //= 2  # the rest of the layer goes at the new size: one more compile, not one per batch
                        continue
                    queue = queue[len(chunk):]
                    for result in results:
                        if result.failed:
                            summary.failed.append(f"{layer.name}:{result.filter} ({view.name})")
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
                    progress.update(len(chunk), f"{layer.name} {view.name}")
            summary.interrupted = flag.stop
        if shard is None:
            store.write_manifest(config, loaded)
        elif not (summary.interrupted or summary.failed):
            store.write_record(finished=True, result={"rendered": summary.rendered, "skipped": summary.skipped,
                                                      "dead": summary.dead, "retried": summary.retried})
    progress.close()
    summary.seconds = time.monotonic() - start
    return summary
