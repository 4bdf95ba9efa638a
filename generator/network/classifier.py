"""A zoo network with its ImageNet classifier: the whole ``keras.applications`` model, for the accuracy
and the votes of labelled images (``atlas examples --labels`` on VGG16, VGG19 or ResNet50).

The filters are the backbone's, loaded by today's rules (``weights.load_weights`` on the no-top
model: the same file, the same sha256 as the atlas's pictures); the classifier (VGG's ``fc1``, ``fc2``,
``predictions``; ResNet's ``predictions``) comes with it:

- ``imagenet``: Keras's full-top ImageNet file, downloaded and cached as the no-top one is (the same
  time bound, ``ATLAS_IMAGENET_MIRROR`` serving it under its own name, Keras's md5 checked);
- a path: the file itself, which must be weights of the whole network (Keras's full-top ``.h5``, or a
  ``.weights.h5`` saved from ``keras.applications.<Net>(include_top=True)``);
- ``random``: the backbone seeded as today, the classifier drawn from the same seed.

``hed-bsds500`` is a backbone alone: it has no classifier to load.
"""

from __future__ import annotations

from pathlib import Path

from generator.errors import AtlasError
from generator.network.weights import (
    SOURCES,
    _first_line,
    download_imagenet,
    load_weights,
    random_arrays,
    sha256_file,
)
from generator.network.zoo import ModelSpec


def has_classifier(weights: str | None) -> bool:
    """Whether the weight source can carry the zoo network's classifier."""
    return weights is not None and (weights in ("imagenet", "random") or weights not in SOURCES)


def load_with_classifier(spec: ModelSpec, weights: str, seed: int = 0):
    """The whole network (``spec`` is ``ModelSpec.classifier``), the sha256 that names its filters' weights,
    and the classifier's source as the manifest names it ({"file", "sha256"})."""
    import keras

    build = getattr(keras.applications, spec.constructor)
    full = build(include_top=True, weights=None)
    if weights not in SOURCES:  # a file of the whole network: its filters and classifier alike
        path = Path(weights)
        if not path.is_file():
            raise AtlasError(f"{path}: no such weights file; give the path of a {spec.title} .h5 / .weights.h5")
        _load_whole(full, spec, path, weights)
        digest = sha256_file(path)
        return full, digest, {"file": path.name, "sha256": digest}
    backbone = build(include_top=False, weights=None)
    digest = load_weights(backbone, spec, str(weights), seed)
    if weights == "random":
        full.set_weights(random_arrays(full, seed))
        top = {"file": "random", "sha256": digest}
    else:
        path = download_imagenet(spec, top=True)
        _load_whole(full, spec, path, weights)
        top = {"file": path.name, "sha256": sha256_file(path)}
    for layer in backbone.layers:  # the filters are exactly the atlas's
        if layer.weights:
            full.get_layer(layer.name).set_weights(layer.get_weights())
    return full, digest, top


def _load_whole(full, spec: ModelSpec, path: Path, weights: str) -> None:
    try:
        full.load_weights(str(path))
    except Exception as exc:  # noqa: BLE001 - any loader failure is the file's
        raise AtlasError(
            f"--weights {weights}: --labels needs {spec.title}'s classifier, and {path.name} holds no weights of the "
            f"whole network Keras can load ({_first_line(exc)}); give --weights imagenet, or a full-top .h5 such as "
            f"Keras's {spec.top_file}") from None
