"""``atlas generate``: plan the work, skip what is done, render batch by batch, store each batch.

Resume is exact: a layer's filters are cut into batches the same way on every run, a batch with any
filter missing is rendered again whole (same rows, same pictures) and only the missing files are
written. Ctrl-C finishes the batch in flight, saves it and stops; a second Ctrl-C stops at once (files
are written atomically, so nothing is left half-written either way).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from generator import backend
from generator.config import RenderConfig
from generator.models import ConvLayer, LoadedModel
from generator.progress import Progress
from generator.render import LayerRenderer, auto_batch
from generator.store import AtlasStore


@dataclass
class GenerateSummary:
    rendered: int
    skipped: int
    interrupted: bool
    dead: int
    retried: int
    seconds: float


class _StopFlag:
    """First SIGINT: stop after the current batch. Second: the default (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.stop = False
        self._old = None

    def __enter__(self) -> "_StopFlag":
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, signum, frame) -> None:
        self.stop = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def plan_batches(filters: list[int], batch: int) -> list[list[int]]:
    return [filters[i : i + batch] for i in range(0, len(filters), batch)]


def generate(
    loaded: LoadedModel,
    config: RenderConfig,
    work: list[tuple[ConvLayer, list[int]]],
    out: str,
    batch: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> GenerateSummary:
    """Render every (layer, filters) of ``work`` into ``out`` under ``config``."""
    import time

    start = time.monotonic()
    for layer, _ in work:
        config.check_layer(layer)
    store = AtlasStore(out, config.model)
    store.prepare(config, loaded, force)
    done_rows = {layer.name: store.done(layer, config.hash) for layer, _ in work}
    todo = sum(len([f for f in fs if f not in done_rows[layer.name]]) for layer, fs in work)
    skipped = sum(len(fs) for _, fs in work) - todo
    progress = progress or Progress(todo, len(work))
    rendered = dead = retried = 0
    with _StopFlag() as flag:
        for number, (layer, filters) in enumerate(work, start=1):
            rows = done_rows[layer.name]
            size = batch or auto_batch(layer, config.size, len(filters))
            queue = [c for c in plan_batches(filters, size) if any(f not in rows for f in c)]
            if not queue:
                continue
            renderer = LayerRenderer(loaded, layer, config)
            while queue and not flag.stop:
                chunk = queue.pop(0)
                try:
                    results = renderer.render_batch(chunk, size)
                except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled here
                    if not backend.is_out_of_memory(exc) or size == 1:
                        raise
                    size //= 2
                    queue = plan_batches(chunk, size) + queue
                    continue
                added = 0
                for result in results:
                    if result.filter in rows:
                        continue
                    rows[result.filter] = store.write_filter(layer, result, config)
                    added += 1
                    dead += result.dead
                    retried += result.retried
                store.write_layer(layer, rows, config)
                rendered += added
                progress.update(added, layer.name, number)
            if flag.stop:
                break
        store.write_manifest(config, loaded)
    progress.close()
    return GenerateSummary(rendered, skipped, flag.stop, dead, retried, time.monotonic() - start)
