"""Device facts, precision and batch sizes, with the facts stubbed (no GPU here)."""

import subprocess

from generator.evidence.tracker import auto_examples_batch
from generator.network.backend import DeviceFacts, nvidia_smi_free, resolve_precision
from generator.network.layers import find_layer, model_layers
from generator.render.renderer import auto_batch

H100 = DeviceFacts("gpu", "NVIDIA H100", 9.0, 70 * 2**30)
T4 = DeviceFacts("gpu", "Tesla T4", 7.5, 14 * 2**30)
MIG = DeviceFacts("gpu", "NVIDIA A100 MIG 1g.10gb", 8.0, None)
CPU = DeviceFacts("cpu", "2 cores")


def test_precision_by_device():
    assert resolve_precision("auto", H100) == "mixed_bfloat16"
    assert resolve_precision("auto", T4) == "mixed_float16"
    assert resolve_precision("auto", CPU) == "float32"
    assert resolve_precision("mixed_bfloat16", CPU) == "mixed_bfloat16"


def test_batches_follow_free_memory():
    layers = model_layers("vgg16")
    deep, early = find_layer("block5_conv3", "vgg16"), find_layer("block1_conv1", "vgg16")
    assert auto_batch(deep, layers, 128, 512, CPU) == 16
    assert auto_batch(deep, layers, 128, 512, CPU, pictures=4) == 4
    big = auto_batch(deep, layers, 128, 512, H100)
    assert 64 <= big <= 512 and auto_batch(early, layers, 128, 64, H100) == 64
    assert auto_batch(deep, layers, 128, 512, T4) < big
    assert auto_batch(deep, layers, 128, 512, MIG) == 64  # unknown free memory: modest, halved on OOM
    assert auto_batch(deep, layers, 128, 512, DeviceFacts("gpu", "busy", 8.0, 2**20)) == 1
    assert auto_examples_batch([deep], layers, 224, CPU) == 32
    assert 8 <= auto_examples_batch([deep], layers, 224, H100) <= 512


def test_nvidia_smi_free_memory_and_mig():
    def answer(text, code=0):
        return lambda *a, **k: subprocess.CompletedProcess(a, code, stdout=text, stderr="")

    assert nvidia_smi_free(answer("81000\n")) == 81000 * 2**20
    assert nvidia_smi_free(answer("[N/A]\n")) is None  # a MIG slice
    assert nvidia_smi_free(answer("", 9)) is None

    def missing(*a, **k):
        raise FileNotFoundError("nvidia-smi")

    assert nvidia_smi_free(missing) is None
