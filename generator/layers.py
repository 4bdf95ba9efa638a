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
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from generator.errors import AtlasError
from generator.zoo import ModelSpec, model_spec

TABLES = Path(__file__).resolve().parent / "layer_tables"
SPATIAL_PASSTHROUGH = {"BatchNormalization", "Activation", "ReLU", "Add", "Dropout", "LeakyReLU"}


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
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Layer":
        return cls(**{**data, "size_ops": tuple(tuple(op) for op in data["size_ops"])})


@lru_cache(maxsize=None)
def model_layers(model: str) -> tuple[Layer, ...]:
    """The visualizable layers of ``model``, in forward order, from its shipped table."""
    model_spec(model)
    data = json.loads((TABLES / f"{model}.json").read_text())
    return tuple(Layer.from_dict(row) for row in data["layers"])


def find_layer(name: str, model: str) -> Layer:
    for layer in model_layers(model):
        if layer.name == name:
            return layer
    names = [layer.name for layer in model_layers(model)]
    shown = ", ".join(names) if len(names) <= 20 else ", ".join(names[:4] + ["…"] + names[-3:])
    raise AtlasError(f"unknown layer {name!r} for {model}: choose from {shown} (atlas layers --model {model})")


def groups(model: str) -> list[str]:
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
    return _Geometry(
        rf=geo.rf + (span - 1) * geo.jump,
        jump=geo.jump * stride,
        start=geo.start + ((span - 1) / 2 - before) * geo.jump,
        ops=geo.ops + (op,),
        channels=geo.channels,
        conv_in=geo.conv_in,
        side=side,
    )


def discover(keras_model, spec: ModelSpec) -> tuple[Layer, ...]:
    """Walk a functional Keras model's graph and list its visualizable layers with their geometry."""
    config = keras_model.get_config()
    geometry: dict[str, _Geometry] = {}
    layers: list[Layer] = []
    flop = 0.0  # every convolution so far feeds the layers after it in these networks
    for layer_config in config["layers"]:
        cls, name, cfg = layer_config["class_name"], layer_config["name"], layer_config["config"]
        sources = inbound_layers(layer_config)
        if cls == "InputLayer":
            geometry[name] = _Geometry()
            continue
        if not sources or any(s not in geometry for s in sources):
            continue  # not spatial (after a global pooling or flatten)
        inputs = [geometry[s] for s in sources]
        geo = max(inputs, key=lambda g: g.rf)
        if cls in ("Conv2D", "DepthwiseConv2D"):
            k, s, d = cfg["kernel_size"][0], cfg["strides"][0], cfg["dilation_rate"][0]
            geo = _window(geo, k, s, cfg["padding"], d)
            geo.conv_in = geo.channels
            geo.channels = cfg.get("filters") or geo.channels
            per_output = k * k * (geo.conv_in if cls == "Conv2D" else 1)
            flop += 2.0 * geo.side * geo.side * geo.channels * per_output
        elif cls in ("MaxPooling2D", "AveragePooling2D"):
            k, s = cfg["pool_size"][0], (cfg["strides"] or cfg["pool_size"])[0]
            geo = _window(geo, k, s, cfg["padding"])
        elif cls == "ZeroPadding2D":
            (top, bottom), _ = cfg["padding"]
            geo = _Geometry(geo.rf, geo.jump, geo.start - top * geo.jump, geo.ops + (("pad", top + bottom),),
                            geo.channels, geo.conv_in, geo.side + top + bottom)
        elif cls not in SPATIAL_PASSTHROUGH:
            continue
        else:
            geo = _Geometry(geo.rf, geo.jump, geo.start, geo.ops, geo.channels, geo.conv_in, geo.side)
        geometry[name] = geo
        activation = cfg.get("activation")
        if cls == "ReLU":
            activation = "relu"
        fused = cls in ("Conv2D", "DepthwiseConv2D") and activation not in (None, "linear")
        unfused = cls in ("Activation", "ReLU") and activation not in (None, "linear") and sources[0] in geometry
        if not (fused or unfused) or (unfused and sources[0] == config["input_layers"][0]):
            continue
        tap = name if fused else sources[0]
        layers.append(Layer(
            name=name, group=spec.group_of(name), index=len(layers), tap=tap, fused=fused,
            activation=str(activation), filters=geo.channels, in_channels=geo.conv_in, receptive_field=geo.rf,
            stride=geo.jump, start=geo.start, size_ops=geo.ops, gflop_224=round(flop / 1e9, 4),
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
    """``python -m generator.layers``: rewrite every model's table from its Keras graph."""
    import keras

    from generator.zoo import MODELS

    for spec in MODELS.values():
        model = getattr(keras.applications, spec.constructor)(include_top=False, weights=None)
        layers = discover(model, spec)
        path = write_table(spec, layers, keras.__version__)
        print(f"{path.name}: {len(layers)} layers, {sum(x.filters for x in layers):,} filters")


if __name__ == "__main__":
    main()
