"""What a filter means for classification, and how well the network classifies: computed during the
examples pass, stored beside the examples.

Three things, from one pass over labelled images (``atlas examples --labels``):

- **Class shares of the top examples.** Of a filter's top ``k`` images, how many are of each class,
  against each class's share of the image set (the *lift* is the ratio), and how likely so many of
  that class would be among ``k`` images drawn at random (the binomial tail), so that a filter of a big
  class is not called a "dog filter" by chance.
- **The classes it votes for** (networks with a classifier). For each image, the gradient of *its
  own class's* logit with respect to the spatial mean of the filter's activation: adding ``d`` to every
  unit of the channel raises the mean by ``d``, so this is the sum over the map of the gradient at the
  activation. Averaged over the images of each class, it is how much turning the filter up pushes the
  network towards that class on that class's images. One backward pass per batch serves every
  filter of every layer and every class: the loss is the sum over the batch of each image's own class
  logit, and each image's channel offsets are separate inputs (zero), so the gradient with respect to
  image i's offsets is image i's own gradient; a (classes x batch) one-hot product then adds each image's
  row to its class. With 1,000 classes the pass costs the same; only the (classes x filters) sums grow
  (17 MB for VGG16's 4,224 filters in float32, 91 MB for ResNet50's 22,720). Classes without images
  get no vote.
- **Accuracy.** The same forward pass gives each image's top 5 predictions: top-1 and top-5 accuracy,
  overall and per class, written to ``<model>/accuracy.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from generator.evidence.labels import LabelSet
from generator.network.layers import Layer
from generator.network.zoo import MODELS

VOTES = 5  # classes kept each way
PREDICTIONS = 5  # top-k recorded per image
SHOWN_CLASSES = 8  # classes of the top examples kept per filter
VOTES_OF = ("mean over each class's images of the gradient of that class's logit with respect to the spatial mean "
            "of the filter's activation (the sum over its map of the gradient there)")


# --- the network with a classifier: maps, logits and per-image channel offsets ---------------------------------


@lru_cache(maxsize=1)
def _offset_layer():
    import keras
    from keras import ops

    class ChannelOffset(keras.layers.Layer):
        """Adds a per-image, per-channel offset (a variable, zero) to a map: the gradient with respect to it
        is the gradient with respect to the channel's spatial mean, image by image."""

        def __init__(self, batch: int, channels: int, **kwargs) -> None:
            super().__init__(**kwargs)
            self.offset = self.add_weight(shape=(batch, channels), initializer="zeros", trainable=True, name="offset")

        def call(self, x):
            return x + ops.cast(self.offset, x.dtype)[:, None, None, :]

        def compute_output_shape(self, input_shape):
            return input_shape  # the graph is built with any batch; the offsets are for a batch of this size

    return ChannelOffset


class ClassNet:
    """The network cut at ``layers``' pre-activation maps and its class logits, with a zero offset on
    each layer's activation per image: ``net(x, offsets, variables) -> (maps, logits)``; the gradient
    of a sum of logits with respect to ``offsets`` is each image's own gradient."""

    def __init__(self, loaded, layers: Sequence[Layer], precision: str, batch: int) -> None:
        import keras

        from generator.network.models import POLICIES

        head = loaded.spec.head
        base = loaded._clone(precision)  # fused activations already split off: the maps are tensors
        offset = _offset_layer()
        post = {(f"{layer.tap}_activation" if layer.fused else layer.keras): layer for layer in layers}
        made: dict[str, object] = {}

        def clone_layer(layer):
            config = layer.get_config()
            if layer.name == head["layer"] and head["unfuse"]:
                config["activation"] = "linear"  # the logits, not the probabilities
            return layer.__class__.from_config(config)

        def call_layer(layer, *args, **kwargs):
            out = layer(*args, **kwargs)
            if layer.name in post:
                made[layer.name] = offset(batch, post[layer.name].filters, dtype=POLICIES[precision],
                                          name=f"{layer.name}_offset")
                out = made[layer.name](out)
            return out

        clone = keras.models.clone_model(base, clone_function=clone_layer, call_function=call_layer)
        for old in base.layers:
            if old.weights:
                clone.get_layer(old.name).set_weights(old.get_weights())
        outputs = [clone.get_layer(layer.tap).output for layer in layers] + [clone.get_layer(head["layer"]).output]
        self.model = keras.Model(clone.input, outputs)
        self.binary = bool(head.get("binary"))
        trainable = list(self.model.trainable_variables)
        offsets = [made[name].offset for name in post]
        self.slots = [next(i for i, v in enumerate(trainable) if v is o) for o in offsets]
        self.variables = (
            [v.value for i, v in enumerate(trainable) if i not in self.slots],
            [v.value for v in self.model.non_trainable_variables],
        )
        self.shapes = [(batch, layer.filters) for layer in post.values()]

    def zero_offsets(self) -> list:
        from keras import ops

        return [ops.zeros(shape, "float32") for shape in self.shapes]

    def __call__(self, x, offsets, variables):
        from keras import ops

        others = iter(variables[0])
        given = dict(zip(self.slots, offsets))
        trainable = [given[i] if i in given else next(others) for i in range(len(self.slots) + len(variables[0]))]
        outputs, _ = self.model.stateless_call(trainable, variables[1], x, training=False)
        maps = [ops.cast(o, "float32") for o in outputs[:-1]]
        logits = ops.cast(outputs[-1], "float32")
        if self.binary:  # one sigmoid output: class 1's logit against class 0's zero
            logits = ops.concatenate([ops.zeros_like(logits), logits], axis=1)
        return maps, logits


# --- per filter: the classes of its top examples, and its votes -----------------------------------------------


def binomial_tail(count: int, draws: int, share: float) -> float:
    """P(at least ``count`` of ``draws`` images are of a class whose share is ``share``)."""
    if count <= 0:
        return 1.0
    share = min(max(share, 0.0), 1.0)
    return float(min(1.0, sum(math.comb(draws, i) * share ** i * (1 - share) ** (draws - i)
                              for i in range(count, draws + 1))))


@dataclass
class ClassEvidence:
    """Everything the per-filter records need, gathered once the pass is over."""

    labels: LabelSet
    counts: np.ndarray  # (classes,) readable images of each class
    votes: dict  # layer name -> (classes, filters) sums of gradients, or {} without a classifier

    def label(self, image: int) -> str | None:
        index = self.labels.index[image]
        return self.labels.classes[index] if index >= 0 else None

    def record(self, layer: Layer, f: int, top_images: list[int]) -> dict:
        """The ``classes`` of one filter's ``examples.json``."""
        total = int(self.counts.sum())
        names = self.labels.classes
        labelled = [self.labels.index[i] for i in top_images if self.labels.index[i] >= 0]
        k = len(labelled)
        tally = np.bincount(np.asarray(labelled, np.int64), minlength=len(names)) if labelled else np.zeros(len(names), int)
        rows = []
        for c in sorted(np.flatnonzero(tally), key=lambda c: (-tally[c], c))[:SHOWN_CLASSES]:
            base = self.counts[c] / total if total else 0.0
            share = tally[c] / k
            rows.append({"class": names[c], "count": int(tally[c]), "share": round(float(share), 4),
                         "base": round(float(base), 4), "lift": round(float(share / base), 3) if base else None,
                         "p": float(f"{binomial_tail(int(tally[c]), k, base):.3g}")})
        out = {"of": "the classes of the filter's top examples, against each class's share of the labelled images",
               "examples": len(top_images), "labelled": k, "top": rows}
        if layer.name in self.votes:
            sums = self.votes[layer.name][:, f]
            seen = np.flatnonzero(self.counts > 0)
            mean = sums[seen] / self.counts[seen]
            order = seen[np.argsort(-mean, kind="stable")]
            value = dict(zip(seen.tolist(), mean.tolist()))
            out["votes_of"] = VOTES_OF
            out["votes"] = [{"class": names[c], "value": float(f"{value[c]:.4g}")} for c in order[:VOTES]]
            out["against"] = [{"class": names[c], "value": float(f"{value[c]:.4g}")}
                              for c in order[::-1][:VOTES] if value[c] < 0]
        return out


# --- accuracy ---------------------------------------------------------------------------------------------------


def accuracy(labels: LabelSet, predictions: np.ndarray, valid: np.ndarray, model: str) -> dict:
    """``accuracy.json``: top-1 and top-5 over the labelled readable images, overall and per class, and
    each image's prediction (its index in the image list, its class, the top 5)."""
    index = labels.array
    keep = np.flatnonzero((index >= 0) & valid)
    k = min(predictions.shape[1], len(labels.classes))  # top-5 of 3 classes is top-3
    truth, top = index[keep], predictions[keep, :k]
    hit1 = top[:, 0] == truth
    hit5 = (top == truth[:, None]).any(axis=1)
    per_class = {}
    for c, name in enumerate(labels.classes):
        mine = truth == c
        n = int(mine.sum())
        if n:
            per_class[name] = {"images": n, "top1": round(float(hit1[mine].mean()), 4),
                               "top5": round(float(hit5[mine].mean()), 4)}
    n = len(keep)
    spec = MODELS.get(model)  # a zoo network's classifier: Keras's published ImageNet accuracy beside ours
    reference = None
    if spec is not None and spec.reference and len(labels.classes) == 1000:
        reference = {"top1": spec.reference[0] / 100, "top5": spec.reference[1] / 100,
                     "of": "Keras's published accuracy of its ImageNet weights on ImageNet's 50,000 validation images "
                           "(keras.io/api/applications)"}
    return {
        "model": model, "images": n, **({"reference": reference} if reference else {}), "top1": round(float(hit1.mean()), 6) if n else None,
        "top5": round(float(hit5.mean()), 6) if n else None, "top_k": k,
        "classes": list(labels.classes), "order": labels.order,
        "per_class": per_class,
        "predictions": {"of": "each labelled image: its index in the image set's sorted list, its class, the "
                              "classifier's top predictions (class indices)",
                        "rows": [[int(i), int(t), [int(p) for p in row]] for i, t, row in zip(keep, truth, top)]},
    }
