"""A user's own network, read from its Keras file (``--model PATH.keras`` or a full-model ``.h5``).

``read_model_file`` loads the file, flattens nested and ``Sequential`` models into one graph, finds
the visualizable layers (``layers.discover``), the input (square side or any, RGB or grayscale), the
preprocessing (the model's own ``Rescaling``/``Normalization`` layer, else ``--preprocess``) and the
classification head, and returns them as a ``ModelFile``: its ``ModelSpec`` (which carries the layer
table) and the Keras model, which the command hands down; nothing is registered by name. ``describe``
puts into the manifest what the site needs to show it without Keras, and ``spec_from_manifest`` reads
it back.

Groups: a user's network has no naming scheme to lean on, so its layers are grouped by resolution
stage: the layers at the same stride (input pixels per map pixel) form one stage, numbered from the
input (``stage1`` at the full resolution, ``stage2`` at the next ...).

Every problem is one line naming the file: not a model, weights only, a custom layer Keras cannot
load without ``custom_objects``, a subclassed model, an input the atlas cannot show, no conv layer,
no preprocessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from generator.errors import AtlasError
from generator.network import inputs
from generator.network.kerasfile import (
    load_custom_objects,
    load_keras_file,
    sha256_file,
)
from generator.network.input_ops import input_side, is_op, is_scaling
from generator.network.layers import Layer, discover, inbound_layers
from generator.network.zoo import MODELS, ModelSpec
from generator.paths import SAFE_NAME

SUFFIXES = (".keras", ".h5")
# URL segments the site already uses at its top level, and the atlas's own folders
RESERVED = {"method", "cite", "assets", "search", "index", "logs", "stylesheets", "javascripts", "site", "404"}
USER_ABOUT = "A network read from a Keras model file."
HEAD_ACTIVATIONS = ("softmax", "sigmoid", "linear")

PLAIN_TITLE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9 _.+-]{0,63}")


def is_model_path(text: str) -> bool:
    """Whether a ``--model`` value names a file rather than a network of the zoo."""
    return text not in MODELS and text.lower().endswith(SUFFIXES)


def slug(text: str) -> str:
    """A file stem as a model name: lowercase letters, digits and ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def model_name(path: str, name: str | None) -> str:
    """The name a user's network goes by (``--name``, else its file stem slugified): a URL segment
    that is neither a zoo network nor a page of the site. Checked before any library is imported."""
    chosen = name if name is not None else slug(Path(path).stem)
    flag = "--name" if name is not None else f"--model {path}: its file name"
    if not chosen or not SAFE_NAME.match(chosen):
        raise AtlasError(f"{flag} {chosen!r}: a model name has lowercase letters, digits and _ only; give --name")
    if chosen in MODELS:
        raise AtlasError(f"{flag} gives the name {chosen!r}, the atlas's own {MODELS[chosen].title}; give --name "
                         f"my_{chosen} (or another) for your file")
    if chosen in RESERVED:
        raise AtlasError(f"{flag} gives the name {chosen!r}, which the site uses for its own pages; give --name "
                         "another name")
    return chosen


def model_title(text: str, name: str) -> str:
    """What headings, the nav and front matter call the network: the file stem as it is when it is
    plain (letters, digits, space, ``_ . + -``), else its name; a stem is whatever a stranger named the
    file, and Markdown, YAML and HTML each read other characters as syntax."""
    return text if PLAIN_TITLE.fullmatch(text) else name


def check_path(path: str) -> None:
    """What can be told of a model file without loading anything."""
    if not Path(path).is_file():
        raise AtlasError(f"--model {path}: no such file; give a zoo network ({', '.join(MODELS)}) or the path of a "
                         ".keras / .h5 model file")


def check_channels_last(config: dict, shape: tuple, path: Path) -> None:
    """The atlas reads maps as (height, width, channels); a network whose layers read channels first
    (``data_format="channels_first"``), or whose input is shaped (channels, height, width), is refused."""
    first = next((layer for layer in config["layers"]
                  if isinstance(layer.get("config"), dict) and layer["config"].get("data_format") == "channels_first"),
                 None)
    flipped = shape[1] in (1, 3) and shape[3] not in (1, 3)
    if first is None and not flipped:
        return
    why = (f"its layer {first['name']!r} ({first['class_name']}) reads channels first (data_format='channels_first')"
           if first is not None else f"its input is shaped {tuple(shape[1:])}: channels first")
    raise AtlasError(f"{path}: {why}; the atlas shows channels-last networks (height, width, channels), Keras's "
                     "default: rebuild it with data_format='channels_last' and copy its weights into it")


def read_input(model, path: Path) -> tuple[int | None, int]:
    """(side, channels) of the model's image input: the side None when any size goes."""
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        shapes = ", ".join(str(tuple(x.shape)) for x in model.inputs)
        raise AtlasError(f"{path}: the atlas shows networks of one image input (batch, height, width, channels); this "
                         f"one reads {shapes}")
    check_channels_last(model.get_config(), tuple(model.inputs[0].shape), path)
    _, height, width, channels = tuple(model.inputs[0].shape)
    if channels not in (1, 3):
        raise AtlasError(f"{path}: its input has {channels} channels; the atlas shows networks of RGB (3) or "
                         "grayscale (1) images")
    if height != width:
        raise AtlasError(f"{path}: its input is {height}x{width}; the atlas renders square pictures: save the model "
                         "with a square input, or with any size (None, None)")
    return (int(height) if height else None), int(channels)


def read_preprocessing(config: dict, channels: int, given: str | None, path: Path) -> tuple[inputs.Preprocessing, str]:
    """The preprocessing and where it came from: the model's own, the pixel scaling at its input
    (``Rescaling``/``Normalization`` layers, ``preprocess_input``'s ops saved in the graph; then it reads
    raw pixel values, 0..255), else ``--preprocess``."""
    own = [layer for layer in input_side(config, inbound_layers) if is_scaling(layer)]
    if own:
        named = ", ".join(f"{layer['name']!r}" for layer in own[:4]) + (" …" if len(own) > 4 else "")
        single = len(own) == 1 and not is_op(own[0])
        what = f"its {own[0]['class_name']} layer {named}" if single else f"its preprocessing ops {named}"
        if given is not None:
            raise AtlasError(f"--preprocess {given}: {path.name} scales its own input ({what}) and reads raw pixel "
                             "values 0..255; leave --preprocess out")
        origin = f"the model's own {own[0]['class_name']} layer" if single else \
            f"the model's own preprocessing at its input ({named.replace(chr(39), '')})"
        return inputs.Preprocessing("none", channels=channels), origin
    if given is None:
        raise AtlasError(f"{path}: the model has no Rescaling or Normalization layer, nor preprocess_input inside it, "
                         "so the atlas cannot tell what pixel values it was trained on: add --preprocess none (0..255), "
                         "scale=0.00392157,offset=0 (0..1), tf (-1..1), caffe or torch, as your training pipeline did")
    return inputs.parse_preprocessing(given, channels), "--preprocess"


def read_head(model, config: dict) -> dict | None:
    """The classification head: which layer's output holds the class logits (after taking its
    softmax or sigmoid off) and how many classes; None for a network whose output is not a vector of
    class scores."""
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        return None
    count = int(model.outputs[0].shape[-1] or 0)
    if count < 1:
        return None
    outputs = config.get("output_layers") or []
    name = outputs[0] if outputs and isinstance(outputs[0], str) else (outputs[0][0] if outputs else None)
    layers = {layer["name"]: layer for layer in config["layers"]}
    if name not in layers:
        return None
    layer = layers[name]
    if layer["class_name"] not in ("Dense", "Softmax", "Activation"):
        return None  # class scores come from a Dense layer, or a softmax or sigmoid after one
    activation = layer["config"].get("activation") if layer["class_name"] != "Softmax" else "softmax"
    separate = layer["class_name"] in ("Softmax", "Activation")
    if separate:
        sources = inbound_layers(layer)
        if len(sources) != 1:
            return None
        name = sources[0]
    activation = activation or "linear"
    if activation not in HEAD_ACTIVATIONS:
        return None
    return {"layer": name, "unfuse": not separate and activation != "linear", "activation": activation,
            "classes": max(2, count), "binary": count == 1}


def stage_groups(layers: tuple[Layer, ...]) -> tuple[Layer, ...]:
    """Each layer's group: its resolution stage (the same stride, numbered from the input); named
    ``stage<n>``, or ``group<n>`` where a layer already has a name like that."""
    strides = list(dict.fromkeys(layer.stride for layer in layers))
    names = {layer.name for layer in layers}
    prefix = next(p for p in ("stage", "group", "res", "g") if not any(f"{p}{i + 1}" in names for i in range(len(strides))))
    return tuple(replace(layer, group=f"{prefix}{strides.index(layer.stride) + 1}") for layer in layers)


@dataclass(frozen=True)
class ModelFile:
    """A user's network as read from its file: what it is (its spec, layer table included), the
    flattened Keras model with the file's weights, and one line for each part of the graph the layer
    table could not follow."""

    spec: ModelSpec
    model: object = field(repr=False, compare=False)  # keras.Model
    notes: tuple[str, ...] = ()

    @property
    def layers(self) -> tuple[Layer, ...]:
        return self.spec.layers


def read_model_file(path: str, name: str | None = None, preprocess: str | None = None,
                    custom_objects: str | None = None) -> ModelFile:
    """Load and check a user's network (the backend is up)."""
    file = Path(path)
    check_path(path)
    chosen = model_name(path, name)
    model = load_keras_file(file, load_custom_objects(custom_objects))
    config = model.get_config()
    size, channels = read_input(model, file)
    preprocessing, origin = read_preprocessing(config, channels, preprocess, file)
    spec = ModelSpec(
        name=chosen, title=model_title(file.stem if name is None else name, chosen), constructor="", preprocessing=preprocessing,
        imagenet_file="", imagenet_md5="", group_title="Stage {n}", conv_only=False, about=USER_ABOUT,
        source={"file": file.name, "sha256": sha256_file(file), "bytes": file.stat().st_size,
                "preprocessing_from": origin},
        input_size=size, head=read_head(model, config),
    )
    notes: list[str] = []
    layers = discover(model, spec, notes)
    if not layers:
        raise AtlasError(f"{path}: no convolution the atlas can show (Conv2D, DepthwiseConv2D or SeparableConv2D on "
                         "the image)" + (f"; {notes[0]}" if notes else ""))
    slugs = [layer.name for layer in layers]
    twice = sorted({s for s in slugs if slugs.count(s) > 1})
    if twice:
        same = [layer.keras for layer in layers if layer.name == twice[0]]
        raise AtlasError(f"{path}: layers {' and '.join(repr(s) for s in same)} would share the page name "
                         f"{twice[0]!r}; rename one of them in Keras")
    return ModelFile(replace(spec, layers=stage_groups(layers)), model, tuple(notes))


# --- what the atlas stores of it (the site reads it without Keras) ----------------------------------------


def describe(spec: ModelSpec, layers: tuple[Layer, ...]) -> dict:
    """The manifest's ``user_model``: the file (name and sha256, never its path) and everything the
    site needs to show the network."""
    p = spec.preprocessing
    return {
        **spec.source, "title": spec.title, "about": spec.about, "group_title": spec.group_title,
        "preprocessing": {"key": p.key, "mode": p.mode, "scale": p.scale, "offset": p.offset, "channels": p.channels},
        "input_size": spec.input_size, "head": spec.head,
        "layers": [layer.to_dict() for layer in layers],
    }


def spec_from_manifest(name: str, manifest: dict) -> ModelSpec:
    """The network an atlas folder holds, read back from its manifest's ``user_model``."""
    entry = manifest.get("user_model")
    if not isinstance(entry, dict):
        raise AtlasError(f"{name}: its manifest does not describe the model file; rerun `atlas generate --model PATH`")
    try:
        p = entry["preprocessing"]
        preprocessing = inputs.Preprocessing(p["mode"], float(p["scale"]), float(p["offset"]), int(p["channels"]))
        spec = ModelSpec(
            name=name, title=model_title(str(entry["title"]), name), constructor="", preprocessing=preprocessing, imagenet_file="",
            imagenet_md5="", group_title=str(entry["group_title"]), conv_only=False, about=str(entry["about"]),
            source={key: entry[key] for key in ("file", "sha256", "bytes", "preprocessing_from") if key in entry},
            input_size=entry.get("input_size"), head=entry.get("head"),
            layers=tuple(Layer.from_dict(row) for row in entry["layers"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AtlasError(f"{name}: its manifest's description of the model file is incomplete ({exc}); rerun "
                         "`atlas generate --model PATH`") from None
    return spec
