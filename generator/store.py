"""The atlas on disk: durable atomic writes, one writer at a time, the manifest, and what is done.

A filter's view is done when its pictures exist and its JSON holds that view's record under this
run's config hash (pictures are written first, so a record implies its images). Every file goes to a
temporary name in its own folder, is flushed to disk and renamed into place, so a killed run leaves
whole files or none; files get the usual permissions of the user's umask. A lock on the model's
folder keeps a second run out while one writes. The layer tables (``layer.json``) are an index,
rebuilt from the filter files whenever a run touches a layer, so no crash can leave them stale.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import io
import json
import os
import platform
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from generator.config import RenderConfig, robustness_for
from generator.errors import AtlasError
from generator.layers import Layer
from generator.paths import AtlasPaths
from generator.render import RenderedView
from generator.views import CHANNEL, VIEWS

LOSS_DEFINITION = "minus the view's objective (for the channel view: mean activation of the filter) at each step"
RENDER_FILE = re.compile(r"^\d{4}(\.(neuron|negative|diversity-\d))?\.(png|json)$")


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all, durable once this returns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), FILE_MODE)  # mkstemp makes 0600; others may read an atlas
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a power cut
        finally:
            os.close(folder)
    except OSError:
        pass


_NUMBER_LIST = re.compile(r"\[\n\s*(-?[0-9][-+.0-9eE,\s]*?)\n\s*\]")


def atomic_write_json(path: Path, payload: object, indent: int | None = 1) -> None:
    """Indented JSON whose lists of numbers (the loss curves) stay on one line each: readable, and a
    third of the size of one number per line."""
    text = json.dumps(payload, indent=indent, sort_keys=False, allow_nan=False)
    if indent is not None:
        text = _NUMBER_LIST.sub(lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    atomic_write_bytes(path, (text + "\n").encode())


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8), "RGB").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise AtlasError(f"{path}: missing {what}") from None
    except (OSError, ValueError) as exc:
        raise AtlasError(f"{path}: unreadable {what} ({exc.__class__.__name__}); regenerate it") from None


def _round(value):
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_round(v) for v in value]
    return float(f"{float(value):.5g}")


def package_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("keras", "tensorflow", "jax", "jaxlib", "numpy", "vgg16-filter-atlas"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


class AtlasLock:
    """One writer per model folder: an advisory lock the system drops when its process ends, even by
    ``kill -9``. A second run is refused with one line naming the run that holds it."""

    def __init__(self, paths: AtlasPaths) -> None:
        self.paths = paths
        self.handle = None

    def __enter__(self) -> "AtlasLock":
        path = self.paths.lock
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(path, "a+")
        except OSError as exc:
            raise AtlasError(
                f"--out {self.paths.root}: cannot write there ({exc.strerror or exc}); choose a writable folder"
            ) from None
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise AtlasError(
                f"{self.paths.model_dir} is being written by another run ({holder}); wait for it to end "
                "or use another --out"
            ) from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()}: atlas {' '.join(sys.argv[1:])[:200]}")
        self.handle.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.seek(0)
            self.handle.truncate()
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


class AtlasStore:
    """Reads and writes one model's atlas under ``root``."""

    def __init__(self, root: Path | str, model: str) -> None:
        self.paths = AtlasPaths(Path(root), model)
        self.model = model

    def lock(self) -> AtlasLock:
        return AtlasLock(self.paths)

    def remove_stale_temporaries(self) -> None:
        """Temporary files of a run killed mid-write; call only while holding the lock."""
        for stale in self.paths.model_dir.rglob(".tmp-*"):
            stale.unlink(missing_ok=True)

    # --- writing ---------------------------------------------------------------------------------

    def prepare(self, config: RenderConfig, loaded, force: bool) -> None:
        """Check that the folder holds no other config's pictures (or remove them with ``force``);
        write the manifest. Call while holding the lock."""
        self.remove_stale_temporaries()
        if self.paths.manifest.exists():
            old = read_json(self.paths.manifest, "manifest")
            old_hash = old.get("config_hash")
            if old_hash and old_hash != config.hash:
                if not force:
                    raise AtlasError(
                        f"{self.paths.model_dir} holds an atlas made with other settings (config hash "
                        f"{old_hash}, this run {config.hash}); use another --out or add --force to replace it"
                    )
                same_weights = old.get("weights", {}).get("sha256") == config.weights_sha256
                self._remove_pictures(keep_examples=same_weights)
        self.write_manifest(config, loaded)

    def _remove_pictures(self, keep_examples: bool) -> None:
        """What ``--force`` replaces: the rendered pictures and records; dataset examples and wiring
        stay when they came from the same weights."""
        for layer_dir in self.paths.model_dir.iterdir():
            if not layer_dir.is_dir():
                continue
            for path in layer_dir.iterdir():
                if RENDER_FILE.match(path.name) or path.name == "layer.json" or not keep_examples:
                    path.unlink()
        if not keep_examples:
            self.paths.examples_state.unlink(missing_ok=True)

    def write_manifest(self, config: RenderConfig | None, loaded, extra: dict | None = None) -> None:
        """The manifest: model, weights, config, versions, layer counts; keys other commands wrote
        (``examples``) are kept, ``extra`` adds or replaces some."""
        now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
        old = read_json(self.paths.manifest, "manifest") if self.paths.manifest.exists() else {}
        layers = []
        for layer in loaded.layers:
            rows = self.layer_rows(layer) if self.paths.layer_json(layer.name).exists() else []
            layers.append({
                "name": layer.name,
                "group": layer.group,
                "filters": layer.filters,
                "receptive_field": layer.receptive_field,
                "stride": layer.stride,
                "rendered": len(rows),
                "dead": sum(bool(r["dead"]) for r in rows),
                "retried_float32": sum(bool(r.get("retried_float32")) for r in rows),
                "views": {v: sum(v in r.get("views", []) for r in rows) for v in VIEWS},
                "robustness": robustness_for(layer).__dict__,
            })
        manifest = {
            **old,
            "model": self.model,
            "title": loaded.spec.title,
            "weights": {"name": str(loaded.weights), "sha256": loaded.weights_sha256},
            "versions": package_versions(),
            "created": old.get("created", now),
            "updated": now,
            "layers": layers,
        }
        if config is not None:
            manifest["config_hash"] = config.hash
            manifest["config"] = config.to_dict()
        manifest.update(extra or {})
        atomic_write_json(self.paths.manifest, manifest)

    def write_view(self, layer: Layer, result: RenderedView, config: RenderConfig) -> dict:
        """Write one view's pictures, then merge its record into the filter's JSON; return the record."""
        f = result.filter
        files = []
        for suffix, image in zip(result.view.suffixes(), result.images):
            path = self.paths.filter_png(layer.name, f, suffix)
            atomic_write_bytes(path, png_bytes(image))
            files.append(path.name)
        path = self.paths.filter_json(layer.name, f)
        record = json.loads(path.read_text()) if path.exists() else {}
        if record.get("config_hash") != config.hash:
            record = {}
        record.update({
            "model": self.model, "layer": layer.name, "filter": f, "config_hash": config.hash,
            "seed": config.seed, "method": config.method, "size": config.size, "steps": config.steps,
            "loss_definition": LOSS_DEFINITION,
        })
        numbers = {k: _round(v) for k, v in result.measures.items()}
        entry = {"precision": result.precision, "retried_float32": result.retried,
                 "final_loss": _round(result.loss[-1]), **numbers}
        if result.view is CHANNEL:
            record.update({**entry, "dead": result.dead, "loss": _round(result.loss)})
        else:
            views = record.setdefault("views", {})
            views[result.view.name] = {**entry, "files": files, "loss": _round(result.loss)}
            if result.view.name == "diversity":
                views["diversity"]["dead"] = result.dead
        atomic_write_json(path, record)
        return record

    def write_layer(self, layer: Layer, rows: dict[int, dict], config: RenderConfig) -> None:
        atomic_write_json(
            self.paths.layer_json(layer.name),
            {
                "model": self.model,
                "layer": layer.name,
                "group": layer.group,
                "filters": layer.filters,
                "config_hash": config.hash,
                "rows": [rows[f] for f in sorted(rows)],
                **trust_means(list(rows.values())),
            },
        )

    def refresh_layer(self, layer: Layer, config: RenderConfig) -> dict[int, dict]:
        """Rebuild ``layer.json`` from the filter files if it disagrees with them; return the rows."""
        rows = self.rows(layer, config.hash)
        path = self.paths.layer_json(layer.name)
        current = None
        if path.exists():
            try:
                current = json.loads(path.read_text())
            except (OSError, ValueError):
                current = None
        if rows and (current is None or current.get("config_hash") != config.hash
                     or current.get("rows") != [rows[f] for f in sorted(rows)]):
            self.write_layer(layer, rows, config)
        return rows

    # --- reading ---------------------------------------------------------------------------------

    def records(self, layer: Layer, config_hash: str) -> dict[int, dict]:
        """The filter records of ``layer`` made with ``config_hash``, from the files themselves."""
        out = {}
        folder = self.paths.layer_dir(layer.name)
        if not folder.is_dir():
            return out
        for path in folder.glob("[0-9][0-9][0-9][0-9].json"):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # unreadable: render it again
            f = record.get("filter")
            if record.get("config_hash") == config_hash and isinstance(f, int) and 0 <= f < layer.filters:
                out[f] = record
        return out

    def done_views(self, layer: Layer, record: dict) -> list[str]:
        """The views of a record whose pictures are all on disk."""
        f = record["filter"]
        done = []
        if "loss" in record and self.paths.filter_png(layer.name, f).exists():
            done.append("channel")
        for name, entry in record.get("views", {}).items():
            if name in VIEWS and all(self.paths.layer_dir(layer.name).joinpath(n).exists() for n in entry.get("files", [])):
                done.append(name)
        return done

    def rows(self, layer: Layer, config_hash: str) -> dict[int, dict]:
        """One row per filter whose channel view is done, with the other views it has."""
        rows = {}
        for f, record in self.records(layer, config_hash).items():
            views = self.done_views(layer, record)
            if "channel" in views:
                rows[f] = layer_row(record, views)
        return rows

    def read_manifest(self) -> dict:
        if not self.paths.manifest.exists():
            raise AtlasError(
                f"{self.paths.manifest}: no atlas here; run `atlas generate --model {self.model} "
                f"--out {self.paths.root}` first"
            )
        manifest = read_json(self.paths.manifest, "manifest")
        if manifest.get("model") != self.model:
            raise AtlasError(
                f"{self.paths.manifest}: manifest of model {manifest.get('model')!r}, expected {self.model!r}"
            )
        return manifest

    def layer_rows(self, layer: Layer) -> list[dict]:
        return read_json(self.paths.layer_json(layer.name), "layer.json").get("rows", [])

    def read_filter(self, layer: str, filter_index: int) -> dict:
        png = self.paths.filter_png(layer, filter_index)
        if not png.exists():
            raise AtlasError(f"{png}: missing image of {layer}:{filter_index}; rerun `atlas generate` to fill it in")
        return read_json(self.paths.filter_json(layer, filter_index), f"loss JSON of {layer}:{filter_index}")


def layer_row(record: dict, views: list[str]) -> dict:
    return {
        "filter": record["filter"],
        "final_loss": record["final_loss"],
        "activation": record["activation"],
        "coverage": record.get("coverage"),
        "dead": record["dead"],
        "retried_float32": record.get("retried_float32", False),
        "views": views,
        **({"trust": record["trust"]["summary"]} if isinstance(record.get("trust"), dict) and "summary" in record["trust"] else {}),
    }


def trust_means(rows: list[dict]) -> dict:
    """``{"trust": {score: mean over the filters that have it, "filters": count}}`` of a layer's rows
    (``atlas trust``); nothing where no row has trust scores."""
    scored = [r["trust"] for r in rows if r.get("trust")]
    if not scored:
        return {}
    means = {}
    for key in scored[0]:
        values = [s[key] for s in scored if s.get(key) is not None]
        means[key] = float(f"{np.mean(values):.4g}") if values else None
    return {"trust": {"filters": len(scored), **means}}


def atlas_models(root: Path | str) -> list[str]:
    """The models that have an atlas under ``root``, in the zoo's order."""
    from generator.zoo import MODELS

    return [name for name in MODELS if AtlasPaths(Path(root), name).manifest.exists()]

