"""Keep library start-up noise off the user's terminal, and nothing else.

TensorFlow's C++ side writes its start-up notes (``cudart_stub``, ``cuInit``, ``cpu_feature_guard``,
oneDNN, absl's "before InitializeLog") straight to file descriptor 2 while it is imported, before any
Python logging setting can reach it; JAX adds a CUDA fallback warning. So the backend is imported with
descriptor 2 captured, the known noise dropped and every other line passed on: a real import error
still reaches the user. ``tf.function`` retracing notes are filtered from the Python loggers.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from contextlib import contextmanager

NOISE = re.compile(
    "|".join(
        [
            r"All log messages before absl::InitializeLog\(\) is called",
            r"cudart_stub\.cc",
            r"cuda_platform\.cc.*cuInit",
            r"cuda_executor\.cc",
            r"failed call to cuInit",
            r"Could not find cuda drivers",
            r"cpu_feature_guard\.cc",
            r"This TensorFlow binary is optimized",
            r"To enable the following instructions",
            r"oneDNN custom operations are on",
            r"TF-TRT Warning",
            r"Unable to register cu(DNN|FFT|BLAS) factory",
            r"computation_placer\.cc",
            r"Attempting to register factory for plugin",
            r"An NVIDIA GPU may be present on this machine, but a CUDA-enabled jaxlib is not installed",
            r"Platform 'cuda' is experimental",
        ]
    )
)


class _DropRetracing(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "retracing" not in record.getMessage()


def environment() -> None:
    """Settings that must be in place before TensorFlow or JAX is first imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


@contextmanager
def captured_stderr():
    """Capture what is written to descriptor 2 in the block; pass on every line that is not noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            kept = [line for line in text.splitlines() if line.strip() and not NOISE.search(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


def import_backend(name: str) -> None:
    """Import Keras's backend library (and Keras) without its start-up noise."""
    environment()
    with captured_stderr():
        import importlib.util

        if name == "tensorflow" or importlib.util.find_spec("tensorflow") is not None:
            # Keras on JAX still imports an installed TensorFlow (its serialization checks tf types)
            import tensorflow  # noqa: F401
        if name == "jax":
            import jax

            jax.devices()  # the platform probe prints its notes on first use
        import keras  # noqa: F401
    for logger in ("tensorflow", "absl"):
        logging.getLogger(logger).addFilter(_DropRetracing())
