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

from generator.atlas.files import atomic_write_json
from generator.atlas.store import AtlasStore, weights_name
from generator.network import inputs
from generator.network.layers import Layer, inbound_layers
from generator.network.models import LoadedModel

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
        self.outputs = {layer.keras for layer in loaded.layers}  # post-activation tensors of the layers shown
        self.memo: dict[str, dict] = {}
        self.cut: dict[str, str] = {}  # layers the walk cannot carry a matrix through: name -> class

    def channels(self, name: str) -> int:
        return int(self.loaded.model.get_layer(name).output.shape[-1])

    def step(self, name: str, matrix: np.ndarray | None) -> np.ndarray | None:
        """``matrix`` (source channels -> this layer's input channels; None: identity) carried through
        layer ``name`` (a conv by its summed kernel, a BatchNorm by its scale)."""
        cls, cfg = self.layers[name]["class_name"], self.layers[name]["config"]
        if cls in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D"):
            kernel = self.summed_kernel(name)
            return kernel if matrix is None else matrix @ kernel
        if cls == "BatchNormalization":
            scale = self.bn_scale(name)
        elif cls == "Rescaling":
            scale = np.broadcast_to(np.asarray(cfg.get("scale", 1.0), np.float32), (self.channels(name),))
        elif cls == "Normalization":
            variance = self.loaded.layer_weights(name)[1].reshape(-1)
            scale = np.broadcast_to(1.0 / np.maximum(np.sqrt(variance), 1e-7), (self.channels(name),)).astype(np.float32)
        else:
            return matrix
        return np.diag(scale) if matrix is None else matrix * scale[None, :]

    def summed_kernel(self, name: str) -> np.ndarray:
        """(input channels, output channels): each kernel summed over its spatial positions; a depthwise
        kernel feeds each channel's own outputs, a separable one then mixes them by its 1x1 kernel, a
        grouped convolution feeds each group's outputs from its own inputs."""
        cls, cfg = self.layers[name]["class_name"], self.layers[name]["config"]
        weights = self.loaded.layer_weights(name)
        if cls == "Conv2D":
            kernel = weights[0].sum(axis=(0, 1))  # (C / groups, F)
            groups = int(cfg.get("groups") or 1)
            if groups == 1:
                return kernel
            c, f = kernel.shape
            full = np.zeros((c * groups, f), np.float32)
            for g in range(groups):
                full[g * c:(g + 1) * c, g * (f // groups):(g + 1) * (f // groups)] = kernel[:, g * (f // groups):(g + 1) * (f // groups)]
            return full
        depthwise = weights[0].sum(axis=(0, 1))  # (C, multiplier)
        c, m = depthwise.shape
        spread = np.zeros((c, c * m), np.float32)
        for j in range(m):
            spread[np.arange(c), np.arange(c) * m + j] = depthwise[:, j]
        return spread if cls == "DepthwiseConv2D" else spread @ weights[1][0, 0]

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
        """Like ``reach``, but through ``name`` itself even if it is a visualizable layer. A layer the
        rules below do not cover (a gate that multiplies, a resize, a custom layer) is a cut: nothing
        reaches past it, rather than a wrong matrix."""
        if name in self.memo:
            return self.memo[name]
        cls = self.layers[name]["class_name"]
        if cls == "InputLayer":
            return {"input": None}
        if cls not in LINEAR:
            self.cut[name] = cls
            self.memo[name] = {}
            return {}
        parts = [self.reach(source) for source in self.inbound[name]]
        if cls == "Concatenate":
            total = self._concatenated(name, parts)
        else:
            signs = [1.0, -1.0] if cls == "Subtract" else [1.0 / len(parts) if cls == "Average" else 1.0] * len(parts)
            total: dict[str, np.ndarray | None] = {}
            size = self.channels(name)
            for sign, part in zip(signs, parts):
                for key, matrix in part.items():
                    if sign != 1.0:
                        matrix = (np.eye(size, dtype=np.float32) if matrix is None else matrix) * sign
                    total[key] = matrix if key not in total else _add(total[key], matrix, size)
        total = {key: self.step(name, matrix) for key, matrix in total.items()}
        self.memo[name] = total
        return total

    def _concatenated(self, name: str, parts: list[dict]) -> dict[str, np.ndarray]:
        """Each branch's matrices placed at its channels of the joined map (summed where one source
        reaches it along several branches)."""
        width = self.channels(name)
        total: dict[str, np.ndarray] = {}
        offset = 0
        for source, part in zip(self.inbound[name], parts):
            count = self.channels(source)
            for key, matrix in part.items():
                matrix = np.eye(count, dtype=np.float32) if matrix is None else matrix
                placed = np.zeros((matrix.shape[0], width), np.float32)
                placed[:, offset:offset + count] = matrix
                total[key] = placed if key not in total else total[key] + placed
            offset += count
        return total

    def into(self, layer: Layer) -> dict[str, np.ndarray]:
        """The matrices from earlier layers into ``layer``'s pre-activation map."""
        found = self.through(layer.tap)
        return {key: np.eye(layer.filters, dtype=np.float32) if m is None else m for key, m in found.items()}

    def first_kernel(self, layer: Layer) -> np.ndarray | None:
        """The spatial kernel (kh, kw, 3, filters) of a layer that reads the image, in RGB order (a
        grayscale network's as gray); None where the first convolution is not a plain Conv2D."""
        name, scale = layer.tap, None
        while self.layers[name]["class_name"] != "Conv2D":
            if self.layers[name]["class_name"] == "BatchNormalization":
                scale = self.bn_scale(name)
            if self.layers[name]["class_name"] in ("InputLayer", "DepthwiseConv2D", "SeparableConv2D"):
                return None
            name = self.inbound[name][0]
        kernel = self.loaded.layer_weights(name)[0]
        if scale is not None:
            kernel = kernel * scale
        if kernel.shape[2] == 1:
            kernel = np.repeat(kernel, 3, axis=2)
        elif inputs.resolve(self.loaded.spec.preprocessing).mode == "caffe":
            kernel = kernel[:, :, ::-1, :]  # caffe inputs are BGR
        return kernel


# Layers the walk carries a matrix through: convolutions, scales, merges, and the ones that move or keep
# each channel (pooling, padding, cropping, dropout, activations: the walk stops at the visualizable ones)
LINEAR = {
    "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "BatchNormalization", "Rescaling", "Normalization", "Add",
    "Subtract", "Average", "Concatenate", "MaxPooling2D", "AveragePooling2D", "ZeroPadding2D", "Cropping2D",
    "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
    "Identity", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "RandomFlip", "RandomRotation", "RandomZoom",
    "RandomTranslation", "RandomContrast", "RandomBrightness",
}


def _add(a: np.ndarray | None, b: np.ndarray | None, size: int) -> np.ndarray:
    """Two branches into a residual add (None: an identity branch)."""
    eye = np.eye(size, dtype=np.float32)
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


def wiring_tables(loaded: LoadedModel, notes: list[str] | None = None) -> dict[str, dict]:
    """Each visualizable layer's wiring record (what ``wiring.json`` holds); ``notes`` gets one line for
    each layer the walk could not carry the weights through."""
    graph = _Graph(loaded)
    names = {layer.keras: layer.name for layer in loaded.layers}
    inputs = {layer.name: {names.get(key, key): m for key, m in graph.into(layer).items()} for layer in loaded.layers}
    tables = {}
    for layer in loaded.layers:
        filters: dict[str, dict] = {str(f): {} for f in range(layer.filters)}
        sources = inputs[layer.name]
        kernel = graph.first_kernel(layer) if "input" in sources else None
        if kernel is not None:
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
        if graph.cut:
            tables[layer.name]["cut"] = sorted(graph.cut)
    if notes is not None:
        notes.extend(f"wiring stops at layer {name!r} ({cls}): the weights cannot be carried through it, so no "
                     "filter shows inputs from before it" for name, cls in sorted(graph.cut.items()))
    return tables


def write_wiring(loaded: LoadedModel, out: str | Path, force: bool = False, notes: list[str] | None = None) -> int:
    """Write every layer's ``wiring.json``; returns the number of layers. An atlas of other weights in
    ``out`` is refused, or replaced with ``force``; ``notes`` collects a line for each place the walk
    cannot follow (a user's network)."""
    store = AtlasStore(out, loaded.name)
    tables = wiring_tables(loaded, notes)
    with store.lock():
        store.check_weights(loaded.weights_sha256, weights_name(loaded.weights), force)
        manifest = store.paths.manifest
        for name, table in tables.items():
            atomic_write_json(store.paths.wiring_json(name), table, indent=None)
        if not manifest.exists():
            store.write_manifest(None, loaded)
    return len(tables)
