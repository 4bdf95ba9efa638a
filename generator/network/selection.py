"""Parsing which layers and filters a run covers: ``all``, ``0-15``, ``3,7``, ``0-3,8``."""

from __future__ import annotations

import numpy as np

from generator.errors import AtlasError
from generator.network.layers import Layer, find_layer, model_layers
from generator.paths import safe_name


def parse_layers(spec: str, model: str) -> list[Layer]:
    if spec.strip() == "all":
        return list(model_layers(model))
    names = [part.strip() for part in spec.split(",") if part.strip()]
    if not names:
        example = ",".join(layer.name for layer in model_layers(model)[-2:])
        raise AtlasError(f"--layers {spec!r}: name layers like {example} or say all")
    out = []
    for name in names:
        safe_name("layer", name)
        layer = find_layer(name, model)
        if layer not in out:
            out.append(layer)
    return sorted(out, key=lambda layer: layer.index)


def parse_filters(spec: str, layer: Layer, clip: bool = False) -> list[int]:
    """Filter indices of ``layer`` named by ``spec``, sorted, each once. ``clip``: a range past the
    layer's last filter stops there (``0-7`` over layers of any size: the first 8 each has)."""
    if spec.strip() == "all":
        return list(range(layer.filters))
    chosen: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
            else:
                lo = hi = int(part)
        except ValueError:
            raise AtlasError(f"--filters {spec!r}: use all, a range like 0-15 or a list like 3,7") from None
        if clip and 0 <= lo <= hi:
            hi = min(hi, layer.filters - 1)
            if lo > hi:
                continue
        if lo > hi or lo < 0 or hi >= layer.filters:
            raise AtlasError(
                f"--filters {spec!r}: {layer.name} has filters 0-{layer.filters - 1}; {part} is out of range"
            )
        chosen.update(range(lo, hi + 1))
    return sorted(chosen)


def sample_filters(layer, count: int, offset: int = 0) -> list[int]:
    """``count`` filters spread evenly over the layer, each moved ``offset`` along: offsets 0, 1, 2 ...
    below the spacing give held-out samples of the same size, so a figure can be checked on filters
    that did not choose the method. Moved filters are packed against the layer's last one, so a sample
    keeps its size and the samples share that last filter only."""
    count = min(count, layer.filters)
    spread = np.linspace(0, layer.filters - 1, count).astype(int)
    packed = layer.filters - count + np.arange(count)  # the last ``count`` filters
    return sorted(set(np.minimum(spread + offset, packed).tolist()))
