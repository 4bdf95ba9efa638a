"""The few things Keras 3 leaves to each backend: gradients, compilation, device facts.

Everything else in the renderer is ``keras.ops`` and runs unchanged on TensorFlow and JAX. The backend
is chosen by ``KERAS_BACKEND`` before Keras is first imported (``atlas generate --backend`` sets it).
"""

from __future__ import annotations

import os
from typing import Callable

BACKENDS = ("tensorflow", "jax")


def select(backend: str | None) -> str:
    """Set the Keras backend for this process; must run before ``import keras``."""
    import sys

    from generator.errors import AtlasError

    wanted = backend or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if wanted not in BACKENDS:
        raise AtlasError(f"--backend {wanted!r}: choose tensorflow or jax")
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != wanted:
            raise AtlasError(
                f"--backend {wanted}: Keras already runs on {keras.backend.backend()} in this process; "
                f"set KERAS_BACKEND={wanted} before starting"
            )
    os.environ["KERAS_BACKEND"] = wanted
    if wanted == "jax":
        import importlib.util

        if importlib.util.find_spec("jax") is None:
            raise AtlasError("--backend jax needs JAX: pip install -e '.[jax]'")
    return wanted


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


def to_numpy(x):
    import keras

    return keras.ops.convert_to_numpy(x)


def is_out_of_memory(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return "RESOURCE_EXHAUSTED" in text or "ResourceExhausted" in text or "out of memory" in text.lower()


def accelerator() -> tuple[str, float | None]:
    """('cpu', None) or ('gpu', compute capability major.minor) of the first device."""
    if name() == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "gpu":
            cc = getattr(device, "compute_capability", None)
            return "gpu", float(cc) if cc else 8.0
        return "cpu", None
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "cpu", None
    details = tf.config.experimental.get_device_details(gpus[0])
    major, minor = details.get("compute_capability", (8, 0))
    return "gpu", major + minor / 10


def resolve_precision(requested: str) -> str:
    """``auto``: bf16 on GPUs that have it (compute capability 8+), fp16 on older GPUs, fp32 on a CPU."""
    if requested != "auto":
        return requested
    kind, capability = accelerator()
    if kind != "gpu":
        return "float32"
    return "mixed_bfloat16" if (capability or 0) >= 8.0 else "mixed_float16"


def free_memory_bytes() -> int | None:
    """Free accelerator memory, where the backend can tell; None on the CPU."""
    kind, _ = accelerator()
    if kind != "gpu":
        return None
    try:
        if name() == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            return int(stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0)) or None
        import subprocess  # TensorFlow reports its usage, not the card's capacity: ask the driver

        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
        return int(out.stdout.split()[0]) * 2**20 if out.returncode == 0 else None
    except Exception:  # noqa: BLE001 - unknown means "use the default"
        return None
