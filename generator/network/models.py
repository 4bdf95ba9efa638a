"""A network with its weights, and the same network cut at the pre-activation maps the atlas shows.

``load_model`` builds the ``keras.applications`` model without its classifier (or takes a user's network
as read from its file) and loads a weight source into it. ``LoadedModel.tap_net`` gives the renderer and the examples pass what they need: a functional
model truncated at one or more layers' *pre-activation* outputs (a fused ``Conv2D(activation="relu")``
is cloned without its activation; an ``Activation`` layer is read at its input), built under the
requested precision policy, and called as a pure function of its variables, so ``jax.jit`` receives the
weights as arguments instead of folding them into constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from generator.errors import AtlasError
from generator.network.compute import (
    NetOptions,
    block_max_pool,
    is_plain_max_pool,
    pad_input,
    pad_kernel,
)
from generator.network.layers import Layer, model_layers
from generator.network.weights import load_user_weights, load_weights
from generator.network.zoo import ModelSpec, model_spec

if TYPE_CHECKING:
    from generator.network.modelfile import ModelFile

POLICIES = {"float32": "float32", "mixed_float16": "mixed_float16", "mixed_bfloat16": "mixed_bfloat16"}


class TapNet:
    """A model cut at some layers' pre-activation maps: ``net(x, net.variables) -> [maps]``.

    ``x`` is the network's input (after its preprocessing), (B, H, W, 3) float32; each map is (B, h, w,
    C) float32, whatever the compute precision.
    """

    def __init__(self, keras_model, input_channels: int = 3) -> None:
        self.model = keras_model
        self.input_channels = input_channels
        self.variables = (
            [v.value for v in keras_model.trainable_variables],
            [v.value for v in keras_model.non_trainable_variables],
        )

    def __call__(self, x, variables) -> list:
        from keras import ops

        if self.input_channels > 3:
            x = pad_input(x, self.input_channels)
        outputs, _ = self.model.stateless_call(variables[0], variables[1], x, training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return [ops.cast(o, "float32") for o in outputs]


@dataclass
class LoadedModel:
    """A built Keras model, the provenance of its weights, and its visualizable layers."""

    model: object  # keras.Model, float32, as keras.applications builds it
    spec: ModelSpec
    weights: str  # the source name, or the file path given
    weights_sha256: str
    layers: tuple[Layer, ...]
    _clones: dict = field(default_factory=dict, repr=False)
    options: NetOptions = NetOptions()  # how the cut network computes (speed only: generator.network.compute)
    classifier: dict | None = None  # a zoo network's classifier weights ({"file", "sha256"}), where loaded

    @property
    def name(self) -> str:
        return self.spec.name

    def tap_net(self, layers: Sequence[Layer], precision: str = "float32") -> TapNet:
        """The model truncated at ``layers``' pre-activation outputs, computing in ``precision``."""
        import keras

        clone = self._clone(precision)
        outputs = [clone.get_layer(layer.tap).output for layer in layers]
        return TapNet(keras.Model(clone.input, outputs if len(outputs) > 1 else outputs[0]), self.options.input_channels)

    def _clone(self, precision: str):
        """The model under a dtype policy, with every fused activation of a visualizable layer split
        off into an ``Activation`` layer of its own, so the pre-activation map is a tensor of the graph
        (one clone per precision and ``options``, sharing nothing with the original)."""
        options = self.options.resolved()
        key = (precision, options)
        if key not in self._clones:
            import keras

            policy = POLICIES[precision]
            unfuse = {layer.tap: layer.activation for layer in self.layers if layer.fused}

            def clone_layer(layer):
                config = layer.get_config()
                if options.pool == "reshape" and is_plain_max_pool(config, type(layer).__name__):
                    return block_max_pool(layer.name, policy)
                if layer.name in unfuse:
                    config["activation"] = "linear"
                if isinstance(layer, keras.layers.Layer):  # an op of keras.ops (x / 127.5) takes no policy
                    config["dtype"] = policy
                return layer.__class__.from_config(config)

            def call_layer(layer, *args, **kwargs):
                if "training" in kwargs:  # a layer the graph calls in training mode (augmentation): inference
                    kwargs["training"] = False
                out = layer(*args, **kwargs)
                if layer.name in unfuse:
                    out = keras.layers.Activation(unfuse[layer.name], dtype=policy, name=f"{layer.name}_activation")(out)
                return out

            wide = None  # the image padded with zero channels: the first convolution reads them
            if options.input_channels > 3:
                wide = keras.Input(shape=tuple(self.model.input.shape[1:-1]) + (options.input_channels,))
            clone = keras.models.clone_model(self.model, input_tensors=wide, clone_function=clone_layer,
                                             call_function=call_layer)
            for old in self.model.layers:
                if old.weights:
                    target = clone.get_layer(old.name)
                    shapes = [tuple(w.shape) for w in target.weights]
                    target.set_weights([pad_kernel(w, shape[2]) if w.ndim == 4 and shape != w.shape else w
                                        for w, shape in zip(old.get_weights(), shapes)])
            self._clones[key] = clone
        return self._clones[key]

    def layer_weights(self, name: str) -> list[np.ndarray]:
        """The weights of one Keras layer, as float32 numpy arrays."""
        return [np.asarray(w, np.float32) for w in self.model.get_layer(name).get_weights()]


def build_keras_model(spec: ModelSpec):
    """``keras.applications.<Model>(include_top=False, weights=None)``: any input size."""
    import keras

    return getattr(keras.applications, spec.constructor)(include_top=False, weights=None)


def load_model(network: "ModelSpec | str | ModelFile" = "vgg16", weights: str | None = "imagenet",
               seed: int = 0) -> LoadedModel:
    """Build ``network`` and load ``weights`` into it.

    Args:
        network: a network of the zoo (its ``ModelSpec`` or its name), built by ``keras.applications``
            without its classifier; or a user's network as read from its file
            (``generator.network.modelfile.read_model_file``), which keeps its classifier.
        weights: ``imagenet`` (downloaded and cached by Keras), ``hed-bsds500`` (VGG16's offline
            trained backbone), ``random`` (seeded, for plumbing tests), or the path of a ``.h5`` /
            ``.weights.h5`` file (or of a whole saved model of the same network). A user's network:
            ``file`` or None (the weights in its file), ``random`` or a ``.weights.h5`` of it.
        seed: the initialization seed for ``random``.
    """
    from generator.network.modelfile import ModelFile

    if isinstance(network, ModelFile):
        source, digest = load_user_weights(network.model, network.spec, weights, seed)
        return LoadedModel(network.model, network.spec, source, digest, network.layers)
    spec = network if isinstance(network, ModelSpec) else model_spec(network)
    if not spec.zoo:
        raise AtlasError(f"{spec.name}: a model file's network is loaded from its file; give --model the path of it")
    layers = model_layers(spec)
    if spec.head:  # the zoo network with its ImageNet classifier (ModelSpec.classifier)
        from generator.network.classifier import load_with_classifier

        model, digest, top = load_with_classifier(spec, str(weights), seed)
        return LoadedModel(model, spec, str(weights), digest, layers, classifier=top)
    model = build_keras_model(spec)
    missing = [layer.tap for layer in layers if layer.tap not in {x.name for x in model.layers}]
    if missing:
        raise AtlasError(
            f"{spec.name}: this Keras builds no layer {missing[0]!r}; the layer table is out of date "
            "(python -m generator.network.layers rewrites it)"
        )
    digest = load_weights(model, spec, str(weights), seed)
    return LoadedModel(model, spec, str(weights), digest, layers)
