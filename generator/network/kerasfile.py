"""Reading a Keras file: what kind of file it is, its config without building it, its custom classes,
and the model itself as one flat functional graph. Both a user's network (``modelfile``) and a
weight source given as a whole saved model (``weights``) are read here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import zipfile
from pathlib import Path

from generator.errors import AtlasError


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def saved_model_kind(path: Path) -> str:
    """``keras`` (a Keras 3 archive), ``h5`` (a full model in HDF5) or ``weights`` (HDF5 weights only);
    one line for anything else."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "config.json" in archive.namelist():
                return "keras"
        raise AtlasError(f"{path}: a zip archive without a model's config.json, not a Keras model file; save the "
                         "model with model.save('my.keras')")
    try:
        import h5py

        with h5py.File(path, "r") as handle:
            return "h5" if "model_config" in handle.attrs else "weights"
    except OSError:
        raise AtlasError(f"{path}: not a Keras model file (neither a .keras archive nor an HDF5 model); save the "
                         "model with model.save('my.keras')") from None


def saved_config(path: Path) -> dict:
    """The model's serialized config, read from the file without building it."""
    kind = saved_model_kind(path)
    if kind == "keras":
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    if kind == "h5":
        import h5py

        with h5py.File(path, "r") as handle:
            raw = handle.attrs["model_config"]
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    raise AtlasError(f"{path}: holds weights only, not a model; give --model the whole saved model "
                     "(model.save('my.keras')), or give this file as --weights of the network it belongs to")


def custom_classes(config: object) -> list[tuple[str, str]]:
    """(class, layer name) of every layer in a serialized config that is not one of Keras's own."""
    found: list[tuple[str, str]] = []

    def walk(item: object) -> None:
        if isinstance(item, dict):
            module = item.get("module")
            if "class_name" in item and "config" in item and isinstance(item.get("config"), dict) and (
                    item.get("registered_name") not in (None, item.get("class_name"), "Functional", "Sequential")
                    or (module is None and item.get("registered_name") is not None)
                    or (isinstance(module, str) and not module.startswith("keras"))):
                found.append((item["class_name"], item["config"].get("name", item.get("name", "?"))))
            for value in item.values():
                walk(value)
        elif isinstance(item, list):
            for value in item:
                walk(value)

    walk(config)
    return list(dict.fromkeys(found))


def load_custom_objects(path: str | None) -> dict:
    """Import the user's Python file of custom layers (``--custom-objects``): its classes decorated
    with ``@keras.saving.register_keras_serializable()`` register themselves; a ``custom_objects``
    dict in it is passed to Keras as well."""
    if not path:
        return {}
    if not Path(path).is_file() or not path.endswith(".py"):
        raise AtlasError(f"--custom-objects {path}: give the path of a Python file that defines the custom layers")
    spec = importlib.util.spec_from_file_location("atlas_custom_objects", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's code: its first line is the message
        raise AtlasError(f"--custom-objects {path}: importing it failed ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    objects = getattr(module, "custom_objects", {})
    return dict(objects) if isinstance(objects, dict) else {}


def load_keras_file(path: Path, custom_objects: dict | None = None):
    """The file as one functional Keras model (nested and Sequential models flattened)."""
    import keras

    config = saved_config(path)
    try:
        model = keras.saving.load_model(str(path), compile=False, safe_mode=True, custom_objects=custom_objects or None)
    except Exception as exc:  # noqa: BLE001 - every loader failure is the file's, said in one line
        text = " ".join(str(exc).split())
        missing = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
        customs = custom_classes(config)
        if missing or customs:
            named = [c for c in customs if not missing or c[0] == missing.group(1)] or customs
            need = ", ".join(f"'{cls}': <its class>" for cls in dict.fromkeys(c for c, _ in named)) or \
                f"'{missing.group(1)}': <its class>"
            where = ", ".join(f"{layer!r} ({cls})" for cls, layer in named[:3])
            raise AtlasError(f"{path}: layer {where or missing.group(1)} is a custom class Keras cannot load without "
                             f"custom_objects={{{need}}}; give --custom-objects FILE.py that defines it (decorated "
                             "with @keras.saving.register_keras_serializable())") from None
        if "Lambda" in text and "safe_mode" in text:
            raise AtlasError(f"{path}: holds a Lambda layer (Python code in the file), which Keras runs only with "
                             "safe_mode off; the atlas keeps it on: replace the Lambda by a registered custom "
                             "layer and give --custom-objects") from None
        raise AtlasError(f"{path}: Keras could not load this model ({text[:200]})") from None
    return flatten(model, path)


def flatten(model, path: Path | str = "the model"):
    """A functional model whose layers are all plain layers (no nested models), sharing the weights;
    a subclassed model, whose graph Keras does not record, is refused."""
    import keras

    if not isinstance(model, keras.Model) or not (isinstance(model, keras.Sequential) or hasattr(model, "_nodes_by_depth")):
        raise AtlasError(f"{path}: a subclassed model ({type(model).__name__}) keeps no layer graph the atlas can "
                         "read; save a functional or Sequential model")
    nested = isinstance(model, keras.Sequential) or any(isinstance(layer, keras.Model) for layer in model.layers)
    if not nested:
        return model
    try:
        sources = list(model.inputs or [])
    except (AttributeError, ValueError):
        sources = []  # a Sequential model never built on an input
    if len(sources) != 1:
        raise AtlasError(f"{path}: the atlas shows networks of one image input; this one has {len(sources)} (build a "
                         "Sequential model on keras.Input((height, width, channels)) before saving it)")
    source = sources[0]
    image = keras.Input(batch_shape=tuple(source.shape), dtype=source.dtype, name=getattr(source, "name", None))
    try:
        return keras.Model(image, _flat_call(model, image), name=model.name)
    except ValueError as exc:
        raise AtlasError(f"{path}: its nested models cannot be joined into one graph ({' '.join(str(exc).split())[:160]})") from None


def _flat_call(model, x):
    import keras

    if isinstance(model, keras.Sequential):
        for layer in model.layers:
            x = _flat_call(layer, x) if isinstance(layer, keras.Model) else layer(x)
        return x

    def operation(op):
        if isinstance(op, keras.Model):
            return lambda *args, **kwargs: _flat_call(op, args[0])
        return op

    return model._run_through_graph(x, operation_fn=operation)  # the graph, each layer called on our tensors
