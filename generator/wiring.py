"""``atlas wiring``: each filter's strongest inputs and outputs, read off the weights (numpy, seconds).

The weight from filter c of one visualizable layer to filter f of the next is the sum of the kernel
that connects them over its spatial positions, ``K[:, :, c, f].sum()`` (Olah et al., *Zoom In*, Distill
2020, read weights the same way). The walk from a layer's pre-activation map back to the layers before
it composes every linear step on the way: a convolution by its summed kernel, a BatchNorm by its scale
``gamma / sqrt(variance + epsilon)``, a residual add by the sum of its branches (an identity shortcut
counts 1 on the same channel, a projection shortcut its 1x1 kernel); padding and pooling do not mix
channels. A first layer reads the image: its kernel is shown as colours instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from generator.layers import Layer, inbound_layers
from generator.models import LoadedModel
from generator.store import AtlasStore, atomic_write_json, weights_name

TOP = 8
RULE = ("Weights: the sum of the kernel connecting two filters over its spatial positions, times the "
        "BatchNorm scale where one follows; across a residual add the branches are summed (an identity "
        "shortcut counts 1); pooling and padding do not mix channels.")


class _Graph:
    """The Keras graph read as channel-to-channel matrices between visualizable layers."""

    def __init__(self, loaded: LoadedModel) -> None:
        config = loaded.model.get_config()
        self.loaded = loaded
        self.layers = {c["name"]: c for c in config["layers"]}
        self.inbound = {c["name"]: inbound_layers(c) for c in config["layers"]}
        self.outputs = {layer.name for layer in loaded.layers}  # post-activation tensors of the layers shown
        self.memo: dict[str, dict] = {}

    def step(self, name: str, matrix: np.ndarray | None) -> np.ndarray | None:
        """``matrix`` (source channels -> this layer's input channels; None: identity) carried through
        layer ``name`` (a conv by its summed kernel, a BatchNorm by its scale)."""
        cls = self.layers[name]["class_name"]
        if cls == "Conv2D":
            kernel = self.loaded.layer_weights(name)[0].sum(axis=(0, 1))
            return kernel if matrix is None else matrix @ kernel
        if cls == "BatchNormalization":
            scale = self.bn_scale(name)
            return np.diag(scale) if matrix is None else matrix * scale[None, :]
        return matrix

    def bn_scale(self, name: str) -> np.ndarray:
        layer = self.loaded.model.get_layer(name)
        values = dict(zip([v.path.rsplit("/", 1)[-1] for v in layer.weights], self.loaded.layer_weights(name)))
        variance = values["moving_variance"]
        gamma = values.get("gamma", np.ones_like(variance))
        return (gamma / np.sqrt(variance + self.layers[name]["config"].get("epsilon", 1e-3))).astype(np.float32)

    def reach(self, name: str) -> dict[str, np.ndarray | None]:
        """{earlier visualizable layer (or 'input'): its channels -> the channels of ``name``'s output},
        stopping at the first visualizable layer on every path."""
        if name in self.outputs:
            return {name: None}
        return self.through(name)

    def through(self, name: str) -> dict[str, np.ndarray | None]:
        """Like ``reach``, but through ``name`` itself even if it is a visualizable layer."""
        if name in self.memo:
            return self.memo[name]
        if self.layers[name]["class_name"] == "InputLayer":
            return {"input": None}
        total: dict[str, np.ndarray | None] = {}
        for source in self.inbound[name]:
            for key, matrix in self.reach(source).items():
                total[key] = matrix if key not in total else _add(total[key], matrix)
        total = {key: self.step(name, matrix) for key, matrix in total.items()}
        self.memo[name] = total
        return total

    def into(self, layer: Layer) -> dict[str, np.ndarray]:
        """The matrices from earlier layers into ``layer``'s pre-activation map."""
        found = self.through(layer.tap)
        return {key: np.eye(layer.filters, dtype=np.float32) if m is None else m for key, m in found.items()}

    def first_kernel(self, layer: Layer) -> np.ndarray:
        """The spatial kernel (kh, kw, 3, filters) of a layer that reads the image, in RGB order."""
        name, scale = layer.tap, None
        while self.layers[name]["class_name"] != "Conv2D":
            if self.layers[name]["class_name"] == "BatchNormalization":
                scale = self.bn_scale(name)
            name = self.inbound[name][0]
        kernel = self.loaded.layer_weights(name)[0]
        if scale is not None:
            kernel = kernel * scale
        if self.loaded.spec.preprocessing == "caffe":
            kernel = kernel[:, :, ::-1, :]  # caffe inputs are BGR
        return kernel


def _add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray:
    """Two branches into a residual add (None: an identity branch)."""
    size = (a if a is not None else b).shape[-1] if (a is not None or b is not None) else None
    eye = np.eye(size, dtype=np.float32) if size else None
    return (eye if a is None else a) + (eye if b is None else b)


def _ranked(named: list[tuple[str, np.ndarray]], count: int) -> list[tuple[list[dict], list[dict]]]:
    """For each of ``count`` columns: the ``TOP`` largest positive and most negative entries of the
    stacked matrices (rows labelled by layer and filter), ties in layer-then-filter order."""
    if not named:
        return [([], [])] * count
    stacked = np.concatenate([m for _, m in named], axis=0)
    labels = [(name, c) for name, m in named for c in range(m.shape[0])]
    high = np.argsort(-stacked, axis=0, kind="stable")[:TOP]
    low = np.argsort(stacked, axis=0, kind="stable")[:TOP]

    def entries(rows, f, keep):
        out = []
        for r in rows[:, f]:
            weight = float(stacked[r, f])
            if keep(weight):
                out.append({"layer": labels[r][0], "filter": labels[r][1], "weight": round(weight, 6)})
        return out

    return [(entries(high, f, lambda w: w > 0), entries(low, f, lambda w: w < 0)) for f in range(count)]


def wiring_tables(loaded: LoadedModel) -> dict[str, dict]:
    """Each visualizable layer's wiring record (what ``wiring.json`` holds)."""
    graph = _Graph(loaded)
    inputs = {layer.name: graph.into(layer) for layer in loaded.layers}
    tables = {}
    for layer in loaded.layers:
        filters: dict[str, dict] = {str(f): {} for f in range(layer.filters)}
        sources = inputs[layer.name]
        if "input" in sources:
            kernel = graph.first_kernel(layer)
            for f in range(layer.filters):
                filters[str(f)]["kernel"] = [[[round(float(v), 5) for v in px] for px in row] for row in kernel[:, :, :, f]]
        into = _ranked([(name, m) for name, m in sources.items() if name != "input"], layer.filters)
        readers = [(other.name, inputs[other.name][layer.name].T) for other in loaded.layers
                   if layer.name in inputs[other.name]]
        out_of = _ranked(readers, layer.filters)
        for f in range(layer.filters):
            entry = filters[str(f)]
            entry["excite"], entry["inhibit"] = into[f]
            entry["excites"], entry["inhibits"] = out_of[f]
        tables[layer.name] = {"model": loaded.name, "layer": layer.name, "rule": RULE,
                              "inputs": sorted(sources), "filters": filters}
    return tables


def write_wiring(loaded: LoadedModel, out: str | Path, force: bool = False) -> int:
    """Write every layer's ``wiring.json``; returns the number of layers. An atlas of other weights in
    ``out`` is refused, or replaced with ``force``."""
    store = AtlasStore(out, loaded.name)
    tables = wiring_tables(loaded)
    with store.lock():
        store.check_weights(loaded.weights_sha256, weights_name(loaded.weights), force)
        manifest = store.paths.manifest
        for name, table in tables.items():
            atomic_write_json(store.paths.wiring_json(name), table, indent=None)
        if not manifest.exists():
            store.write_manifest(None, loaded)
    return len(tables)
