"""The few things Keras 3 leaves to each backend: gradients, compiled loops, the device and its facts.

Everything else in the renderer is ``keras.ops`` and runs unchanged on TensorFlow and JAX. The backend
is chosen by ``KERAS_BACKEND`` before Keras is first imported (``--backend`` sets it), and imported
once, quietly (``generator.quiet``).

Reproducibility: on a CPU a filter's picture is byte-identical whatever batch it lands in. On a GPU,
JAX runs with XLA's deterministic ops (``ATLAS_DETERMINISTIC=0`` turns them off), so a rerun with the
same batch size gives the same bytes; TensorFlow's GPU kernels (cuDNN, scatter) are not deterministic,
so its GPU reruns agree to float rounding, not bytes.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from generator.errors import AtlasError

BACKENDS = ("tensorflow", "jax")
DEVICES = ("auto", "gpu", "cpu")
DETERMINISTIC_XLA = "--xla_gpu_deterministic_ops=true"
# Whether JAX runs with XLA's deterministic GPU ops unless ATLAS_DETERMINISTIC says otherwise: kept while
# they cost at most 10% of the atlas time (the GPU check measures it, BENCHMARKS.md, GPU).
DETERMINISTIC_DEFAULT = True


def deterministic() -> bool:
    """Whether this process asks XLA for deterministic GPU ops (``ATLAS_DETERMINISTIC=1`` / ``0``)."""
    value = os.environ.get("ATLAS_DETERMINISTIC", "").strip()
    if value not in ("", "0", "1"):
        raise AtlasError(f"ATLAS_DETERMINISTIC={value!r}: give 1 (deterministic GPU ops) or 0 (the fastest)")
    return DETERMINISTIC_DEFAULT if value == "" else value == "1"


@dataclass(frozen=True)
class DeviceFacts:
    """What decides precision and batch size: the device kind, its name, its compute capability
    (GPUs) and its free memory in bytes (None where it cannot be told)."""

    kind: str  # cpu or gpu
    name: str
    capability: float | None = None
    free_bytes: int | None = None

    def describe(self) -> str:
        if self.kind == "cpu":
            return f"CPU ({self.name})"
        free = f", {self.free_bytes / 2**30:.0f} GiB free" if self.free_bytes else ""
        return f"GPU {self.name} (compute capability {self.capability}{free})"


def select(backend: str | None = None, device: str = "auto") -> str:
    """Set the Keras backend and device for this process and import it; must run before ``import keras``."""
    import importlib.util
    import sys

    wanted = backend or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if wanted not in BACKENDS:
        raise AtlasError(f"--backend {wanted!r}: choose tensorflow or jax")
    if device not in DEVICES:
        raise AtlasError(f"--device {device!r}: choose {', '.join(DEVICES)}")
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != wanted:
            raise AtlasError(
                f"--backend {wanted}: Keras already runs on {keras.backend.backend()} in this process; "
                f"set KERAS_BACKEND={wanted} before starting"
            )
    os.environ["KERAS_BACKEND"] = wanted
    if importlib.util.find_spec(wanted) is None:
        extra = "jax" if wanted == "jax" else "base"
        raise AtlasError(f"--backend {wanted} needs the {wanted} package: pip install -e '.[{extra}]' (make install)")
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        os.environ["JAX_PLATFORMS"] = "cpu"
    if wanted == "jax" and deterministic():
        flags = os.environ.get("XLA_FLAGS", "")
        if "deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " " + DETERMINISTIC_XLA).strip()
    from generator import quiet

    quiet.import_backend(wanted)
    if wanted == "tensorflow":
        _tensorflow_memory_growth()
    if device == "gpu" and device_facts().kind != "gpu":
        build = "a CUDA jaxlib" if wanted == "jax" else "TensorFlow's CUDA build"
        raise AtlasError(f"--device gpu: {wanted} sees no GPU here; install {build} (make install does on NVIDIA machines)")
    return wanted


def _tensorflow_memory_growth() -> None:
    """Without it TensorFlow reserves nearly all GPU memory at start, and the free memory that sizes
    the batches reads as zero."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialized in this process: growth is then what it is
            pass


def name() -> str:
    import keras

    return keras.backend.backend()


def value_and_grad(fn: Callable) -> Callable:
    """``fn(params, *args) -> (scalar, aux)`` becomes ``(params, *args) -> (scalar, aux, grad)``."""
    if name() == "jax":
        import jax

        grad_fn = jax.value_and_grad(fn, has_aux=True)

        def jax_vg(params, *args):
            (value, aux), grad = grad_fn(params, *args)
            return value, aux, grad

        return jax_vg

    import tensorflow as tf

    def tf_vg(params, *args):
        with tf.GradientTape() as tape:
            tape.watch(params)
            value, aux = fn(params, *args)  # inside the tape, or the gradient is None
        return value, aux, tape.gradient(value, params)

    return tf_vg


def compile_fn(fn: Callable) -> Callable:
    """One compiled program per call signature: ``jax.jit`` (XLA) or ``tf.function``.

    TensorFlow runs without XLA: its image transform op (ImageProjectiveTransformV3, behind
    ``keras.ops.image.affine_transform``) has no XLA kernel, so ``jit_compile=True`` fails to compile.
    """
    if name() == "jax":
        import jax

        return jax.jit(fn)
    import tensorflow as tf

    return tf.function(fn, reduce_retracing=True)


def compile_loop(step: Callable) -> Callable:
    """``step(carry, x, consts) -> (carry, y)`` becomes ``run(carry, xs, consts) -> (carry, ys)`` over
    the leading axis of ``xs``.

    On JAX the whole loop is one jitted ``lax.scan``: no Python between steps, which is what keeps a GPU
    busy. On TensorFlow each step is one ``tf.function`` call (a CPU step is long enough that the call
    costs nothing measurable); ``ys`` stay on the device either way.
    """
    if name() == "jax":
        import jax

        def run_scan(carry, xs, consts):
            return jax.lax.scan(lambda c, x: step(c, x, consts), carry, xs)

        return jax.jit(run_scan)

    import tensorflow as tf

    compiled = tf.function(step, reduce_retracing=True)

    def run_loop(carry, xs, consts):
        count = int(tf.nest.flatten(xs)[0].shape[0])
        ys = []
        for i in range(count):
            carry, y = compiled(carry, tf.nest.map_structure(lambda a, i=i: a[i], xs), consts)
            ys.append(y)
        return carry, tf.nest.map_structure(lambda *a: tf.stack(a), *ys)

    return run_loop


def to_numpy(x):
    import keras

    return keras.ops.convert_to_numpy(x)


def is_out_of_memory(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return "RESOURCE_EXHAUSTED" in text or "ResourceExhausted" in text or "out of memory" in text.lower()


# --- the device -------------------------------------------------------------------------------------


def cpu_name() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return f"{os.cpu_count()} cores of {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    return f"{os.cpu_count()} cores of {platform.processor() or platform.machine()}"


@lru_cache(maxsize=None)
def device_facts(index: int = 0) -> DeviceFacts:
    """Facts of the ``index``-th device the backend computes on (``compute_devices``' order)."""
    if name() == "jax":
        import jax

        device = jax.devices()[index]
        if device.platform != "gpu":
            return DeviceFacts("cpu", cpu_name())
        cc = getattr(device, "compute_capability", None)
        stats = device.memory_stats() or {}
        free = int(stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0)) or None
        return DeviceFacts("gpu", device.device_kind, float(cc) if cc else None, free)
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return DeviceFacts("cpu", cpu_name())
    details = tf.config.experimental.get_device_details(gpus[index])
    major, minor = details.get("compute_capability", (0, 0))
    return DeviceFacts("gpu", details.get("device_name", "GPU"), major + minor / 10 or None, nvidia_smi_free(index=index))


def nvidia_smi_free(run: Callable = subprocess.run, index: int = 0) -> int | None:
    """Free memory of the ``index``-th GPU as the driver reports it; None where it cannot say (no
    driver, or a MIG slice, where nvidia-smi prints ``[N/A]``)."""
    try:
        out = run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                  capture_output=True, text=True, timeout=10)
        return int(out.stdout.split()[index]) * 2**20 if out.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


# --- several devices in one process ------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """One device a run computes on: its place in ``compute_devices``, the backend's handle (a JAX
    device, or a TensorFlow device name) and its facts."""

    index: int
    handle: object
    facts: DeviceFacts

    def label(self) -> str:
        """How a message names it: ``GPU 1 (NVIDIA H100 80GB HBM3)``, ``CPU 0``."""
        kind = "GPU" if self.facts.kind == "gpu" else "CPU"
        return f"{kind} {self.index}" + (f" ({self.facts.name})" if self.facts.kind == "gpu" else "")


def compute_devices(requested: int | None = None) -> list[Device]:
    """The devices a run uses: every GPU the backend sees (on JAX, every device of its default
    platform: ``--xla_force_host_platform_device_count`` splits a CPU into several), or the first
    ``requested`` of them (``--devices N``)."""
    if name() == "jax":
        import jax

        handles = list(jax.devices())
    else:
        import tensorflow as tf

        handles = [d.name for d in tf.config.list_logical_devices("GPU")] or ["/CPU:0"]
    if requested is not None:
        if requested > len(handles):
            raise AtlasError(f"--devices {requested}: {name()} sees {len(handles)} device"
                             f"{'s' if len(handles) != 1 else ''} here; give at most {len(handles)}")
        handles = handles[:requested]
    return [Device(i, handle, device_facts(i)) for i, handle in enumerate(handles)]


def describe_devices(devices: list[Device]) -> str:
    """The run's first line names them: one device by its facts, several by their count."""
    first = devices[0].facts.describe()
    return first if len(devices) == 1 else f"{len(devices)} devices: {len(devices)} × {first}"


def place(tree, device: Device | None):
    """``tree``'s arrays on ``device`` (JAX: committed there, so a jitted call runs there); TensorFlow
    places by the ``on`` scope instead and returns ``tree`` as it is."""
    if device is None or name() != "jax":
        return tree
    import jax

    return jax.device_put(tree, device.handle)


def on(device: Device | None):
    """A scope whose operations run on ``device`` (TensorFlow); JAX follows its arguments (``place``)."""
    import contextlib

    if device is None or name() == "jax":
        return contextlib.nullcontext()
    import tensorflow as tf

    return tf.device(device.handle)


def resolve_precision(requested: str, facts: DeviceFacts) -> str:
    """``auto``: bf16 on GPUs that have it (compute capability 8+), fp16 with loss scaling on older
    GPUs, fp32 on a CPU (bf16 on a CPU is fast on some and many times slower on others)."""
    if requested != "auto":
        return requested
    if facts.kind != "gpu":
        return "float32"
    return "mixed_bfloat16" if (facts.capability or 0) >= 8.0 else "mixed_float16"
