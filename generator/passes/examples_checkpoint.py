"""The checkpoint of ``atlas examples``: the tracker state, how far the pass got and the files it
skipped, in one atomic ``.npz`` in the model folder, and on resume the line that says why a checkpoint
there is not used (the first setting it differs in).

A finished shard keeps its state in the shard store (``generator.cluster.shards.save_state``), the
same ``"<part>:<key>"`` arrays without this file's ``meta`` (fingerprint, position, skipped files).
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from generator.atlas.files import atomic_write_bytes
from generator.atlas.store import AtlasStore
from generator.network.layers import Layer
from generator.passes.examples_config import ExamplesConfig


def save_checkpoint(store: AtlasStore, state: list[dict], fingerprint: dict, position: int,
                    skips: list[tuple[int, str]]) -> None:
    """Keep the pass as it stands: the tracker state, the fingerprint of its settings, the next image
    and the (image index, reason) of each file skipped so far."""
    arrays = {f"{i}:{key}": np.asarray(value) for i, s in enumerate(state) for key, value in s.items()}
    meta = json.dumps({"fingerprint": fingerprint, "position": position, "skipped": [list(s) for s in skips]})
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(meta.encode(), np.uint8), **arrays)
    atomic_write_bytes(store.paths.examples_state, buffer.getvalue())


def load_checkpoint(store: AtlasStore, config: ExamplesConfig, layers: list[Layer], batch: int,
                    auto: bool) -> tuple[tuple | None, str | None]:
    """((state, position, skips, batch) or None, a line saying why a checkpoint there is not used).
    With ``--batch`` auto the checkpoint's batch is taken: auto-sizing follows free GPU memory, which
    another job may have taken meanwhile."""
    path = store.paths.examples_state
    if not path.exists():
        return None, None
    try:
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            old = meta["fingerprint"]
            new = config.fingerprint(layers, old.get("batch", batch) if auto else batch)
            if old != new:
                return None, _not_used(path, meta.get("position", 0), old, new)
            parts = len(layers) + ("labels_sha256" in new)  # the class counts come after the layers
            state = [{key.split(":", 1)[1]: data[key] for key in data.files if key.startswith(f"{i}:")}
                     for i in range(parts)]
            skips = [(int(i), str(reason)) for i, reason in meta["skipped"]]
            position = int(meta["position"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile) as exc:
        return None, (f"{path}: the checkpoint is unreadable ({exc.__class__.__name__}) and not used; the pass "
                      "starts again from image 0")
    return (state, position, skips, new["batch"]), None


CHECKPOINT_KEYS = {"version": "an older version of atlas examples", "model": "--model", "weights_sha256": "other weights",
                   "list_sha256": "another image set", "size": "--size", "top": "--top", "batch": "--batch",
                   "layers": "--layers", "precision": "--precision", "backend": "--backend"}


def _not_used(path, position: int, old: dict, new: dict) -> str:
    """The line that says why a checkpoint is not used: the first setting it differs in."""
    key = next((k for k in CHECKPOINT_KEYS if old.get(k) != new.get(k)), None)
    what = CHECKPOINT_KEYS.get(key, "other settings")
    if key in ("size", "top", "batch", "precision", "backend", "model", "layers"):
        show = lambda v: ",".join(v) if isinstance(v, list) else v  # noqa: E731
        what = f"{what} {show(old.get(key))} (this run: {show(new.get(key))})"
    hint = f"; rerun with --batch {old.get('batch')} or auto to resume it" if key == "batch" else ""
    return (f"{path}: the checkpoint at image {position} was made with {what} and is not used; the pass starts "
            f"again from image 0{hint}")
