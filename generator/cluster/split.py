"""The K/N split: one atlas job cut into N disjoint parts of about equal cost, and the cost model.

The split depends only on the settings and N, never on the machine. ``atlas generate`` cuts the
job's filters, in layer order, into N contiguous runs of about equal cost (``split_generate``): a
deep filter weighs what it costs, and a shard holds whole runs of few layers, so it renders full
batches and compiles few programs. The cost model (``picture_cost``): a filter costs its views'
pictures, each the activation values the network cut at its layer computes plus a share per image
pixel, which is what a GPU's time follows (FLOP do not: block5 has 177 times block1_conv1's FLOP and
takes 2.5 times its time on an H100); a shard that renders any filter of a layer with the contrast
term (the first layers) also pays once for that layer's reference pictures. ``atlas examples`` cuts
the image list into contiguous runs at multiples of ``EXAMPLES_GRAIN`` images (a multiple of the CPU
batch, so a shard's batches are the one-machine run's batches); every image costs the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from generator.errors import AtlasError
from generator.network.layers import Layer
from generator.render.config import RenderConfig
from generator.render.views import CHANNEL, DIVERSITY

EXAMPLES_GRAIN = 64  # images: shards of the examples pass start at multiples of this


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` (from 0)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``K/N`` -> Shard; anything else is one line saying what a shard looks like."""
    parts = text.split("/")
    try:
        index, count = (int(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        index = count = None
    if index is None:
        raise AtlasError(f"{text!r} is not K/N: part K of N parts, counted from 0 (0/4, 1/4, 2/4, 3/4)")
    if count < 1:
        raise AtlasError(f"{text!r}: N must be 1 or more")
    if not 0 <= index < count:
        raise AtlasError(f"{text!r}: K counts from 0 to N-1 (0/{count} … {count - 1}/{count})")
    return Shard(index, count)


def ranges(values) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2,5`` (the --filters syntax)."""
    out, values = [], sorted(values)
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(out)


def expand_ranges(spec: str) -> list[int]:
    """``0-2,5`` -> ``[0, 1, 2, 5]``."""
    out = []
    for part in filter(None, spec.split(",")):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


PIXEL_COST = 14.0  # activation values' worth of work per image pixel: the picture's own parameterization and transforms


def picture_cost(layer: Layer, size: int, table: tuple[Layer, ...]) -> float:
    """Cost of one picture of a filter of ``layer`` (per step), in activation values: every value of
    every map the network cut at the layer computes (``table``: the network's layers), plus
    ``PIXEL_COST`` per image pixel. On a GPU the render is bound by moving those values, not by FLOP:
    fit to the per-layer times of one H100 (BENCHMARKS.md, GPU check), it is within 12% for every
    VGG16 layer but block1_conv2 (which runs faster), where FLOP put block5 at 177 times block1_conv1
    and the H100 at 2.5 times."""
    upstream = table[: layer.index + 1]
    return float(sum(x.output_size(size) ** 2 * x.filters for x in upstream)) + PIXEL_COST * size * size


def filter_view_cost(layer: Layer, size: int, views, table: tuple[Layer, ...], cost=picture_cost) -> float:
    """Cost of one filter of ``layer`` with all of ``views``: its pictures (the field view's at its own
    canvas; none for a view that does not apply to the layer)."""
    sides = [(view, view.canvas(layer, size)) for view in views]
    whole = cost(layer, size, table) * sum(view.images for view, side in sides if side == size)
    return whole + sum(cost(layer, side, table) * view.images for view, side in sides if side not in (None, size))


def reference_cost(layer: Layer, views, config: RenderConfig, table: tuple[Layer, ...], cost=picture_cost) -> float:
    """What a shard pays once for a layer whose pictures carry the contrast term: the reference
    pictures it renders first (see ``render.LayerRenderer.reference``)."""
    from generator.render.renderer import REFERENCE_FILTERS

    contrasted = (config.contrast > 0 and config.first_layer(layer)
                  and any(view in (CHANNEL, DIVERSITY) for view in views))
    return cost(layer, config.size, table) * min(REFERENCE_FILTERS, layer.filters) if contrasted else 0.0


@dataclass
class Split:
    """The parts of a job: ``shares[k]`` is shard k's (layer, filters) in layer order; ``loads[k]`` its cost."""

    shares: list[list[tuple[Layer, list[int]]]]
    loads: list[float]

    @property
    def spread(self) -> float:
        """The slowest shard against the mean (1.0: perfectly even)."""
        mean = sum(self.loads) / len(self.loads)
        return max(self.loads) / mean if mean else 1.0


def split_generate(work: list[tuple[Layer, list[int]]], views, config: RenderConfig, count: int,
                   table: tuple[Layer, ...] | None = None, cost=picture_cost) -> Split:
    """Cut ``work``'s filters, in layer order, into ``count`` contiguous runs: the cuts that make the
    slowest run cheapest (a binary search on its cost, each try dealt greedily), every shard holding
    at least one filter when there are enough. Contiguous runs keep each shard to few layers, so it
    renders full batches and compiles few programs. ``table``: the network's layers (a network of the
    zoo: its shipped table when left out); ``cost(layer, size, table)``: one picture's (the bench
    compares others)."""
    if table is None:
        from generator.network.layers import model_layers

        table = model_layers(config.model)
    items = [(layer, f) for layer, filters in work for f in filters]
    unit = {layer.name: filter_view_cost(layer, config.size, views, table, cost) for layer, _ in work}
    overhead = {layer.name: reference_cost(layer, views, config, table, cost) for layer, _ in work}

    def deal(cap: float) -> tuple[list[list[int]], list[float]]:
        parts, loads, held = [[]], [0.0], set()
        for i, (layer, _) in enumerate(items):
            cost = unit[layer.name] + (0.0 if layer.name in held else overhead[layer.name])
            one_each = len(items) - i <= count - len(parts)  # as many filters left as shards still empty
            if parts[-1] and (loads[-1] + cost > cap or one_each):
                parts.append([])
                loads.append(0.0)
                held = set()
                cost = unit[layer.name] + overhead[layer.name]
            parts[-1].append(i)
            loads[-1] += cost
            held.add(layer.name)
        return parts, loads

    if not items:
        return Split([[] for _ in range(count)], [0.0] * count)
    lo = max(unit[name] + overhead[name] for name in unit)  # no cap below the dearest single filter
    hi = sum(unit[layer.name] for layer, _ in items) + sum(overhead.values())
    for _ in range(64):  # the same float steps everywhere: the split does not depend on the machine
        mid = (lo + hi) / 2
        if len(deal(mid)[0]) <= count:
            hi = mid
        else:
            lo = mid
    parts, loads = deal(hi)
    parts += [[] for _ in range(count - len(parts))]
    loads += [0.0] * (count - len(loads))
    shares = []
    for part in parts:
        held: dict[str, list[int]] = {}
        for i in part:
            held.setdefault(items[i][0].name, []).append(items[i][1])
        shares.append([(layer, held[layer.name]) for layer, _ in work if layer.name in held])
    return Split(shares, loads)


def image_range(images: int, shard: Shard) -> tuple[int, int]:
    """The contiguous images [lo, hi) of ``shard``, cut at multiples of ``EXAMPLES_GRAIN``."""
    units = math.ceil(images / EXAMPLES_GRAIN)
    lo = units * shard.index // shard.count * EXAMPLES_GRAIN
    hi = units * (shard.index + 1) // shard.count * EXAMPLES_GRAIN
    return min(lo, images), min(hi, images)
