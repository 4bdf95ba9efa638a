"""The CLI as a user runs it, without paying TensorFlow's import for every command.

Most tests run ``python -m generator ...`` in a child process, and on the 2-core CI machine each of
them spent 3 to 6 seconds importing TensorFlow before doing anything. Here a fork server imports it
once (quietly, as the CLI does) and forks a fresh process for each command: the child has its own
memory, descriptors, signals, working folder and exit code, and runs ``generator/__main__.py`` as
``python -m`` does, so what a test sees (stdout, stderr, the exit code, files) is what a user gets.

What the import fixes cannot be changed in a fork: the Keras backend, the TensorFlow and XLA flags,
Keras's home. A command whose environment or arguments change those runs in a new interpreter
(``needs_new_interpreter``), and so do the tests that check the import itself (``fresh=True``).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import sys
import tempfile
import traceback

# Read while the libraries are imported: a command that sets one of these runs in a new interpreter.
IMPORT_TIME = ("KERAS_BACKEND", "KERAS_HOME", "XLA_FLAGS", "TF_", "JAX_", "CUDA_", "OMP_", "OPENBLAS_",
               "MKL_", "PYTHON")


def needs_new_interpreter(args: tuple[str, ...], env: dict | None) -> bool:
    """Whether a forked child could not run this command as a new interpreter would."""
    if any(a == "jax" or a == "--backend=jax" for a in args):  # Keras on JAX: imported at start
        return True
    changed = {k for k, v in (env or {}).items() if os.environ.get(k) != v}
    return any(k.startswith(IMPORT_TIME) for k in changed)


def _child(argv: list[str], env: dict, cwd: str, out_path: str, err_path: str) -> None:
    """``python -m generator *argv`` in this fork: its output to the two files, its exit code."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path in ((1, out_path), (2, err_path)):
        handle = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(handle, fd)
        os.close(handle)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)
    sys.argv = ["generator", *argv]
    code = 0
    try:
        runpy.run_module("generator", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:  # as the interpreter does: the traceback on stderr, exit 1
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


_context = None


def _server():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(["tests.forkrun_preload", __name__])
    return _context


def run(args: tuple[str, ...], env: dict, cwd: str, timeout: float):
    """Run the CLI in a fork of the server; a ``CompletedProcess`` as ``subprocess.run`` returns."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="forkrun-") as folder:
        out_path, err_path = os.path.join(folder, "out"), os.path.join(folder, "err")
        for path in (out_path, err_path):
            open(path, "w").close()
        process = _server().Process(target=_child, args=(list(args), env, cwd, out_path, err_path))
        process.start()
        process.join(timeout)
        command = [sys.executable, "-m", "generator", *args]
        if process.is_alive():
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(command, timeout)
        read = lambda path: open(path, encoding="utf-8", errors="replace").read()  # noqa: E731
        return subprocess.CompletedProcess(command, process.exitcode, read(out_path), read(err_path))
