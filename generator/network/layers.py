"""The layers of a network that the atlas shows, and their geometry.

A *visualizable layer* is a spatial layer followed by a nonlinearity: a convolution with a fused
activation (VGG's ``Conv2D(activation="relu")``), or an ``Activation``/``ReLU`` layer (ResNet's
``conv2_block1_1_relu`` after its BatchNorm, ``conv2_block1_out`` after the residual add). It is named
by the Keras layer whose output is the activated map, and its *tap* is the tensor before the
nonlinearity: the renderer maximizes the pre-activation value, since a unit that is off everywhere
still has a gradient there.

The tables are discovered from the Keras graph (``discover``) and shipped as JSON beside this module,
so listing layers and checking a ``--layers`` argument needs no Keras import (a test keeps the tables
equal to what the graph says).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from generator.errors import AtlasError
from generator.network.input_ops import input_side, is_elementwise_op
from generator.network.zoo import ModelSpec, model_spec

TABLES = Path(__file__).resolve().parent / "layer_tables"
CONVOLUTIONS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")
POINTWISE = ("Dense",)  # a Dense layer on a map is a 1x1 convolution (ConvNeXt's blocks)
KERNELS = CONVOLUTIONS + POINTWISE
ACTIVATIONS = ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU")
# Layers that keep the map's geometry and each channel where it is (at inference): the walk goes through
SPATIAL_PASSTHROUGH = {
    "BatchNormalization", "Activation", "ReLU", "Add", "Dropout", "LeakyReLU", "PReLU", "ELU", "SpatialDropout2D",
    "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity", "Rescaling",
    "Normalization", "LayerNormalization", "GroupNormalization", "Subtract", "Average", "RandomFlip",
    "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast", "RandomBrightness",
    "LayerScale", "StochasticDepth",  # keras.applications' ConvNeXt: a per-channel scale, an identity at inference
}
# CustomScaleLayer: keras.applications' InceptionResNetV2, the shortcut plus a scaled residual
MERGES = {"Add", "Subtract", "Average", "Concatenate", "Multiply", "Maximum", "Minimum", "CustomScaleLayer"}
GATES = {"Multiply"}  # a map times a per-channel gate (squeeze-and-excitation) keeps the map's geometry
# Layers after which the map is no longer spatial: the walk ends there without a word
ENDS = {"Flatten", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Reshape", "Softmax"}


@dataclass(frozen=True)
class Layer:
    """One visualizable layer and the geometry a renderer, the examples pass and the site need."""

    name: str  # block3_conv3, conv4_block3_out: the Keras layer whose output is the activated map
    group: str  # block3, conv4: the block or stage (a URL segment)
    index: int  # position among the model's visualizable layers
    tap: str  # the Keras layer whose output is the pre-activation map (itself when the activation is fused)
    fused: bool  # the activation is part of the tap layer (VGG's Conv2D(activation="relu"))
    activation: str  # relu
    filters: int
    in_channels: int  # channels of the tensor the tap's last convolution reads
    receptive_field: int  # pixels of the input one unit sees
    stride: int  # input pixels per map pixel
    start: float  # input pixel at the centre of unit (0, 0)'s receptive field
    size_ops: tuple = field(default=(), compare=True)  # how the map side follows the input side
    gflop_224: float = 0.0  # forward multiply-adds x 2 of the model cut here, one 224 px image
    keras_name: str = ""  # the Keras layer's own name where ``name`` (a URL segment) had to differ from it

    @property
    def keras(self) -> str:
        """The Keras layer whose output is the activated map."""
        return self.keras_name or self.name

    def forward_flop(self, size: int) -> float:
        """Forward FLOP of the truncated model for one ``size`` px image (convolutions only)."""
        return self.gflop_224 * 1e9 * (size / 224.0) ** 2

    def output_size(self, size: int) -> int:
        """Side of this layer's map for a ``size`` x ``size`` input."""
        n = size
        for op in self.size_ops:
            if op[0] == "pad":
                n += op[1]
            elif op[0] == "same":
                n = math.ceil(n / op[1])
            else:  # valid
                n = (n - op[1]) // op[2] + 1
        return n

    def centre(self, y: int, x: int) -> tuple[float, float]:
        """Input pixel coordinates at the centre of unit (``y``, ``x``)'s receptive field."""
        return self.start + y * self.stride, self.start + x * self.stride

    def to_dict(self) -> dict:
        out = asdict(self)
        out["size_ops"] = [list(op) for op in self.size_ops]
        if not self.keras_name:
            out.pop("keras_name")
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Layer":
        return cls(**{**data, "size_ops": tuple(tuple(op) for op in data["size_ops"])})


def model_layers(model: ModelSpec | str) -> tuple[Layer, ...]:
    """The visualizable layers of ``model``, in forward order: a user's network carries its table, a
    network of the zoo (its spec, or its name) reads the table shipped beside this module."""
    if isinstance(model, ModelSpec):
        if model.layers or not model.zoo:
            return model.layers
        model = model.name
    return _shipped_table(model)


@lru_cache(maxsize=None)
def _shipped_table(model: str) -> tuple[Layer, ...]:
    spec = model_spec(model)
    data = json.loads((TABLES / f"{spec.name}.json").read_text())
    return tuple(Layer.from_dict(row) for row in data["layers"])


def find_layer(name: str, model: ModelSpec | str) -> Layer:
    table = model_layers(model)
    for layer in table:
        if layer.name == name:
            return layer
    names = [layer.name for layer in table]
    shown = ", ".join(names) if len(names) <= 20 else ", ".join(names[:4] + ["…"] + names[-3:])
    title = model if isinstance(model, str) else model.name
    raise AtlasError(f"unknown layer {name!r} for {title}: choose from {shown} (atlas layers --model {title})")


def groups(model: ModelSpec | str) -> list[str]:
    """The model's blocks or stages, in forward order."""
    return list(dict.fromkeys(layer.group for layer in model_layers(model)))


# --- discovery from the Keras graph ----------------------------------------------------------------


@dataclass
class _Geometry:
    rf: int = 1
    jump: int = 1
    start: float = 0.0
    ops: tuple = ()
    channels: int = 3
    conv_in: int = 3  # input channels of the last convolution on the way here
    side: float = 224.0  # map side for a 224 px input
    pending: tuple = ()  # convolutions on the way here with no activation after them yet
    after_conv: bool = False


def inbound_layers(layer_config: dict) -> list[str]:
    """Names of the layers feeding a layer, from its serialized call arguments."""
    names: list[str] = []

    def walk(item: object) -> None:
        if isinstance(item, dict):
            history = item.get("config", {}).get("keras_history") if item.get("class_name") == "__keras_tensor__" else None
            if history:
                names.append(history[0])
                return
            for value in item.values():
                walk(value)
        elif isinstance(item, (list, tuple)):
            for value in item:
                walk(value)

    for node in layer_config.get("inbound_nodes", []):
        walk(node.get("args", []))
    return names


def _window(geo: _Geometry, kernel: int, stride: int, padding: str, dilation: int = 1) -> _Geometry:
    """A convolution or pooling window: the receptive field grows by the window's span in input
    steps, the step multiplies by the stride, and unit 0's centre moves by the window's centre minus
    the padding before it."""
    span = dilation * (kernel - 1) + 1
    before = (span - 1) // 2 if padding == "same" else 0
    op = ("same", stride) if padding == "same" else ("valid", span, stride)
    side = -(-geo.side // stride) if padding == "same" else (geo.side - span) // stride + 1
    return replace(geo, rf=geo.rf + (span - 1) * geo.jump, jump=geo.jump * stride,
                   start=geo.start + ((span - 1) / 2 - before) * geo.jump, ops=geo.ops + (op,), side=side)


def layer_slug(name: str) -> str:
    """A Keras layer name as a URL segment: lowercase letters, digits and ``_`` (``Conv1`` -> ``conv1``)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "layer"


def _square(cfg: dict, key: str, name: str, cls: str) -> int:
    values = cfg[key] if isinstance(cfg[key], (list, tuple)) else [cfg[key]] * 2
    if key != "kernel_size" and len(set(values)) > 1:
        raise _Unfollowed(f"layer {name!r} ({cls}): its {key} {tuple(values)} differ along height and width, and the "
                          "atlas's maps are square; the layers after it are not shown")
    return max(values)


class _Unfollowed(Exception):
    """A layer the table cannot follow; its message is the one line that says so."""


def _input_channels(layer_config: dict) -> int:
    shape = layer_config["config"].get("batch_shape") or layer_config["config"].get("batch_input_shape") or [3]
    return int(shape[-1] or 3)


def _step(cls: str, name: str, cfg: dict, inputs: list[_Geometry]) -> tuple[_Geometry, float]:
    """The geometry after one layer, and the forward FLOP it adds at 224 px."""
    geo = max(inputs, key=lambda g: g.rf)
    if cls in CONVOLUTIONS:
        k = _square(cfg, "kernel_size", name, cls)
        s, d = _square(cfg, "strides", name, cls), _square(cfg, "dilation_rate", name, cls)
        geo = _window(geo, k, s, cfg["padding"], d)
        conv_in = geo.channels
        multiplier = int(cfg.get("depth_multiplier") or 1)
        if cls == "Conv2D":
            channels, flop = cfg["filters"], 2.0 * geo.side ** 2 * cfg["filters"] * k * k * conv_in
        elif cls == "DepthwiseConv2D":
            channels, flop = conv_in * multiplier, 2.0 * geo.side ** 2 * conv_in * multiplier * k * k
        else:  # SeparableConv2D: a depthwise convolution, then a 1x1 one
            channels = cfg["filters"]
            flop = 2.0 * geo.side ** 2 * conv_in * multiplier * (k * k + cfg["filters"])
        fused = cfg.get("activation") not in (None, "linear")
        return replace(geo, channels=channels, conv_in=conv_in, pending=() if fused else (name,), after_conv=True), flop
    if cls in POINTWISE:
        fused = cfg.get("activation") not in (None, "linear")
        flop = 2.0 * geo.side ** 2 * geo.channels * cfg["units"]
        return replace(geo, channels=cfg["units"], conv_in=geo.channels, pending=() if fused else (name,),
                       after_conv=True), flop
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        k = _square(cfg, "pool_size", name, cls)
        s = _square(cfg, "strides", name, cls) if cfg.get("strides") else k
        return _window(geo, k, s, cfg["padding"]), 0.0
    if cls in ("ZeroPadding2D", "Cropping2D"):
        (top, bottom), (left, right) = cfg["padding" if cls == "ZeroPadding2D" else "cropping"]
        if (top, bottom) != (left, right):
            raise _Unfollowed(f"layer {name!r} ({cls}): it pads or crops height and width unequally, and the atlas's "
                              "maps are square; the layers after it are not shown")
        sign = 1 if cls == "ZeroPadding2D" else -1
        return replace(geo, start=geo.start - sign * top * geo.jump, ops=geo.ops + (("pad", sign * (top + bottom)),),
                       side=geo.side + sign * (top + bottom)), 0.0
    if cls in MERGES or len(inputs) > 1:
        if len({g.jump for g in inputs}) > 1:  # the same stride, shifted (NASNet's cropped branch): followed
            raise _Unfollowed(f"layer {name!r} ({cls}): it joins maps of different resolutions; the layers after it "
                              "are not shown")
        pending = tuple(dict.fromkeys(c for g in inputs for c in g.pending))
        after = any(g.after_conv for g in inputs)
        if cls == "Concatenate":
            if cfg.get("axis", -1) not in (-1, 3):
                raise _Unfollowed(f"layer {name!r} (Concatenate): it joins along axis {cfg.get('axis')}, not the "
                                  "channels; the layers after it are not shown")
            return replace(geo, channels=sum(g.channels for g in inputs), pending=pending, after_conv=after), 0.0
        if cls not in MERGES:
            raise _Unfollowed(f"layer {name!r} ({cls}): the layer table cannot follow it; the layers after it are "
                              "not shown")
        return replace(geo, pending=pending, after_conv=after), 0.0
    if cls in SPATIAL_PASSTHROUGH:
        return replace(geo), 0.0
    raise _Unfollowed(f"layer {name!r} ({cls}): the layer table cannot follow it; the layers after it are not shown")


def _activation(cls: str, cfg: dict) -> str | None:
    if cls == "Activation":
        value = cfg.get("activation")
        return value if isinstance(value, str) else "custom"
    return {"ReLU": "relu", "LeakyReLU": "leaky_relu", "PReLU": "prelu", "ELU": "elu"}.get(cls)


def discover(keras_model, spec: ModelSpec, notes: list[str] | None = None) -> tuple[Layer, ...]:
    """Walk a functional Keras model's graph and list its visualizable layers with their geometry.

    A visualizable layer is a convolution (``Conv2D``, ``DepthwiseConv2D``, ``SeparableConv2D``) with a
    fused activation, or an activation layer after convolutions (read at its input: after a BatchNorm,
    the BatchNorm's output; after a residual add, the sum). A convolution that no activation follows
    before the map stops being spatial is shown at its own output (``activation`` linear). Layers the
    walk cannot follow (a resize, a custom layer, a map multiplied by a non-spatial gate) end the walk
    on their branch; each gets one line in ``notes``.
    """
    config = keras_model.get_config()
    inputs = config.get("input_layers") or [[None]]
    first = inputs[0] if isinstance(inputs[0], str) else inputs[0][0]
    geometry: dict[str, _Geometry] = {}
    blocked: set[str] = set()
    found: list[tuple[int, dict]] = []
    convs: dict[str, tuple[int, _Geometry, float]] = {}  # convolutions with no fused activation
    covered: set[str] = set()
    preprocessing = {layer["name"] for layer in input_side(config, inbound_layers)}  # the model's own pixel scaling: read as its input
    flop = 0.0  # every convolution so far feeds the layers after it in these networks
    for position, layer_config in enumerate(config["layers"]):
        cls, name, cfg = layer_config["class_name"], layer_config["name"], layer_config["config"]
        sources = inbound_layers(layer_config)
        if cls == "InputLayer":
            channels = _input_channels(layer_config)
            geometry[name] = _Geometry(channels=channels, conv_in=channels)
            continue
        if any(s in blocked for s in sources):
            blocked.add(name)
            continue
        spatial = [s for s in sources if s in geometry]
        if not spatial or cls in ENDS:
            continue  # not spatial (after a global pooling or flatten)
        if name in preprocessing or (is_elementwise_op(layer_config) and len(spatial) == 1):
            geometry[name] = geometry[spatial[0]]  # the pixel values or the map scaled: the same geometry
            continue
        if cls in GATES and len(spatial) == 1:
            geometry[name] = geometry[spatial[0]]  # each channel scaled by a gate read from the whole map
            continue
        try:
            if len(spatial) < len(sources):
                raise _Unfollowed(f"layer {name!r} ({cls}): it mixes a map with a non-spatial input (a gate or a "
                                  "global feature); the layers after it are not shown")
            geo, cost = _step(cls, name, cfg, [geometry[s] for s in sources])
        except _Unfollowed as exc:
            if notes is not None:
                notes.append(str(exc))
            blocked.add(name)
            continue
        flop += cost
        geometry[name] = geo
        activation = cfg.get("activation") if cls in KERNELS else _activation(cls, cfg)
        fused = cls in KERNELS and activation not in (None, "linear")
        if cls in KERNELS and not fused:
            convs[name] = (position, geo, flop)
        unfused = (cls in ACTIVATIONS and activation not in (None, "linear") and geometry[sources[0]].after_conv
                   and sources[0] != first)
        if not (fused or unfused):
            continue
        if unfused:
            covered.update(geometry[sources[0]].pending)
            geometry[name] = replace(geo, pending=())
        found.append((position, dict(name=name, tap=name if fused else sources[0], fused=fused,
                                     activation=str(activation), geo=geo, flop=flop)))
    for conv in convs.keys() - covered:
        position, geo, at = convs[conv]
        found.append((position, dict(name=conv, tap=conv, fused=False, activation="linear", geo=geo, flop=at)))
    layers = []
    for _, item in sorted(found, key=lambda entry: entry[0]):
        geo, slug = item["geo"], layer_slug(item["name"])
        layers.append(Layer(
            name=slug, group=spec.group_of(slug), index=len(layers), tap=item["tap"], fused=item["fused"],
            activation=item["activation"], filters=geo.channels, in_channels=geo.conv_in, receptive_field=geo.rf,
            stride=geo.jump, start=geo.start, size_ops=geo.ops, gflop_224=round(item["flop"] / 1e9, 4),
            keras_name=item["name"] if slug != item["name"] else "",
        ))
    return tuple(layers)


def write_table(spec: ModelSpec, layers: tuple[Layer, ...], keras_version: str) -> Path:
    """Write a model's layer table (``make layer-tables``)."""
    TABLES.mkdir(exist_ok=True)
    path = TABLES / f"{spec.name}.json"
    rows = ",\n".join("  " + json.dumps(layer.to_dict(), separators=(", ", ": ")) for layer in layers)
    path.write_text(
        f'{{"model": "{spec.name}", "written_from": "keras {keras_version}", "layers": [\n{rows}\n]}}\n'
    )
    return path


def main() -> None:
    """``python -m generator.network.layers``: rewrite every model's table from its Keras graph."""
    import keras

    from generator.network.zoo import MODELS

    for spec in MODELS.values():
        model = getattr(keras.applications, spec.constructor)(include_top=False, weights=None)
        layers = discover(model, spec)
        path = write_table(spec, layers, keras.__version__)
        print(f"{path.name}: {len(layers)} layers, {sum(x.filters for x in layers):,} filters")


if __name__ == "__main__":
    main()
