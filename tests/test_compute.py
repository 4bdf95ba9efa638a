"""How the cut network computes: the reshape max-pool and the padded input change no value."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from generator.errors import AtlasError
from generator.network.compute import NetOptions, block_max_pool, pad_kernel
from generator.network.layers import model_layers
from tests.conftest import ROOT


def _grad(layer, x, g):
    import tensorflow as tf

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = tf.reduce_sum(layer(xt) * g)
    return layer(xt).numpy(), tape.gradient(y, xt).numpy()


@pytest.mark.parametrize("side", [8, 9])
def test_reshape_pool_equals_keras_forward_and_gradient_ties_included(side):
    import keras

    rng = np.random.default_rng(side)
    ties = rng.integers(0, 3, (2, side, side + 2, 4)).astype(np.float32)  # most windows tie
    smooth = rng.normal(size=(2, side, side + 2, 4)).astype(np.float32)  # none do
    g = rng.normal(size=(2, side // 2, (side + 2) // 2, 4)).astype(np.float32)
    for x in (ties, smooth):
        keras_y, keras_g = _grad(keras.layers.MaxPooling2D(2), x, g)
        ours_y, ours_g = _grad(block_max_pool("pool", "float32"), x, g)
        np.testing.assert_array_equal(ours_y, keras_y)
        np.testing.assert_array_equal(ours_g, keras_g)  # the first maximum of a window takes it, as in Keras


def test_options_change_no_value_of_the_cut_network(random_model):
    layers = [model_layers("vgg16")[i] for i in (1, 6, 12)]
    x = np.random.default_rng(0).normal(0, 40, (2, 37, 37, 3)).astype(np.float32)
    outputs = []
    for options in (NetOptions("keras"), NetOptions("reshape"), NetOptions("reshape", 8)):
        net = dataclasses.replace(random_model, options=options).tap_net(layers)
        kinds = {type(layer).__name__ for layer in net.model.layers}
        assert ("BlockMaxPool2D" in kinds) == (options.pool == "reshape") and ("MaxPooling2D" in kinds) != (options.pool == "reshape")
        outputs.append([np.asarray(o) for o in net(x, net.variables)])
    for other in outputs[1:]:
        for a, b in zip(outputs[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-4)
    assert all(np.array_equal(a, b) for a, b in zip(outputs[0], outputs[1]))  # the pool: the very same values


def test_bad_options_and_kernel_padding():
    with pytest.raises(AtlasError, match="pool 'avg'"):
        NetOptions("avg")
    with pytest.raises(AtlasError, match="input channels 2"):
        NetOptions(input_channels=2)
    kernel = np.ones((3, 3, 3, 5), np.float32)
    wide = pad_kernel(kernel, 8)
    assert wide.shape == (3, 3, 8, 5) and wide[:, :, 3:].sum() == 0 and wide[:, :, :3].sum() == kernel.sum()


JAX_POOL = """
import json, sys, numpy as np
from generator.network import backend
backend.select("jax")
import jax, keras
from generator.network.compute import block_max_pool
x = np.random.default_rng(0).integers(0, 3, (2, 9, 11, 4)).astype(np.float32)
g = np.random.default_rng(1).normal(size=(2, 4, 5, 4)).astype(np.float32)
grads = [np.asarray(jax.grad(lambda x, p=p: (p(x) * g).sum())(x)) for p in (keras.layers.MaxPooling2D(2), block_max_pool("p", "float32"))]
values = [np.asarray(p(x)) for p in (keras.layers.MaxPooling2D(2), block_max_pool("q", "float32"))]
print(json.dumps([bool(np.array_equal(*values)), bool(np.array_equal(*grads))]))
"""


@pytest.mark.slow
def test_reshape_pool_equals_keras_on_jax():
    proc = subprocess.run([sys.executable, "-c", JAX_POOL], capture_output=True, text=True, cwd=ROOT,
                          env={**__import__("os").environ, "KERAS_BACKEND": "jax"}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [True, True]
