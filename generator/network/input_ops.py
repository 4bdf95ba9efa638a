"""The operations at a network's input that only rescale its pixel values: its own preprocessing.

Keras's transfer-learning pattern puts ``keras.applications.<net>.preprocess_input`` inside the model
(``inputs -> preprocess_input -> base model -> head``). Saved, it is a few operations of
``keras.ops`` between the image input and the first layer: ``x / 127.5 - 1`` (``tf``), a channel flip
and a per-channel offset (``caffe``: three ``GetItem`` and a ``Stack``, then an ``Add``), ``x / 255``,
a per-channel offset and a per-channel division (``torch``). With a ``Rescaling`` or ``Normalization``
layer, they are the model's own preprocessing: the model reads raw pixel values (0..255) and maps them
itself, and the layer table reads the map after them as the input, pixel for pixel.

``input_side`` names them from the model's serialized config; ``is_elementwise_op`` tells an operation
of ``keras.ops`` that scales or shifts a map by constants (elsewhere in a network too: it keeps the
map's geometry).
"""

from __future__ import annotations

import numpy as np

PREPROCESSING_LAYERS = ("Rescaling", "Normalization")
ELEMENTWISE = {"Add", "Subtract", "Multiply", "TrueDivide", "Divide", "Negative", "Power", "Maximum", "Minimum",
               "Clip", "Cast", "Absolute", "Abs", "Square", "Sqrt"}
# identities at inference, which Keras's guide puts before preprocess_input: passed through at the input
AUGMENTATION = {"RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
                "RandomBrightness", "GaussianNoise", "Identity"}
MAX_CONSTANT = 4  # a per-channel constant has one value a channel (RGB or RGBA); a bigger one is not scaling


def is_op(layer_config: dict) -> bool:
    """An operation of ``keras.ops`` called on a tensor (saved as an op, not a layer)."""
    return str(layer_config.get("module") or "").startswith(("keras.src.ops", "keras.ops"))


def _arguments(layer_config: dict) -> list:
    nodes = layer_config.get("inbound_nodes") or []
    return list(nodes[0].get("args", [])) + list(nodes[0].get("kwargs", {}).values()) if nodes else []


def _is_tensor(item: object) -> bool:
    return isinstance(item, dict) and item.get("class_name") == "__keras_tensor__"


def _small_constant(item: object) -> bool:
    """A number, or a constant tensor of at most one value a channel."""
    if isinstance(item, (int, float)) and not isinstance(item, bool):
        return True
    if isinstance(item, dict) and item.get("class_name") == "__tensor__":
        try:
            return np.asarray(item["config"]["value"], np.float64).size <= MAX_CONSTANT
        except (KeyError, TypeError, ValueError):
            return False
    return False


def is_elementwise_op(layer_config: dict) -> bool:
    """An elementwise ``keras.ops`` operation of one tensor and constants (``x / 127.5``, ``x - mean``)."""
    if not is_op(layer_config) or layer_config["class_name"] not in ELEMENTWISE:
        return False
    args = _arguments(layer_config)
    tensors = [a for a in args if _is_tensor(a)]
    return len(tensors) == 1 and all(_is_tensor(a) or a is None or _small_constant(a) for a in args)


def _is_channel_pick(layer_config: dict) -> bool:
    """``x[..., c]``: one channel of the image (caffe's flip reads the channels one by one)."""
    args = _arguments(layer_config)
    if layer_config["class_name"] != "GetItem" or len(args) != 2 or not isinstance(args[1], list):
        return False
    key = args[1]
    return len(key) == 2 and isinstance(key[0], dict) and key[0].get("class_name") == "__ellipsis__" and \
        isinstance(key[1], int)


def _is_channel_stack(layer_config: dict) -> bool:
    return layer_config["class_name"] == "Stack" and layer_config["config"].get("axis") in (-1, 3)


def input_side(config: dict, sources_of) -> list[dict]:
    """The operations and layers (their configs) between the image input and the network proper that
    only rescale or reorder its pixel values, or leave them be at inference (augmentation), in forward
    order. ``sources_of(layer_config)`` names the layers feeding a layer."""
    region = {layer["name"] for layer in config["layers"] if layer["class_name"] == "InputLayer"}
    found: list[dict] = []
    for layer in config["layers"]:
        sources = sources_of(layer)
        if layer["class_name"] == "InputLayer" or not sources or not all(s in region for s in sources):
            continue
        cls = layer["class_name"]
        if is_scaling(layer) or (cls in AUGMENTATION and not is_op(layer)) or \
                (is_op(layer) and (_is_channel_pick(layer) or _is_channel_stack(layer))):
            region.add(layer["name"])
            found.append(layer)
    return found


def is_scaling(layer_config: dict) -> bool:
    """A ``Rescaling`` or ``Normalization`` layer, or an elementwise op of one tensor and constants."""
    own = layer_config["class_name"] in PREPROCESSING_LAYERS and not is_op(layer_config)
    return own or is_elementwise_op(layer_config)
