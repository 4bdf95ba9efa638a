"""The atlas on disk: atomic writes, the manifest, and what is already done.

A filter is done when its JSON exists and names this run's config hash (its PNG is written first, so a
JSON implies its image). Every file goes to a temporary name in its own folder and is renamed into
place, so a killed run leaves whole files or none. An atlas made with other settings is never extended:
its manifest's hash must match, or the user must say ``--force``.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np

from generator.config import RenderConfig
from generator.errors import AtlasError
from generator.models import ConvLayer, LoadedModel
from generator.paths import AtlasPaths
from generator.render import RenderedFilter

LOSS_DEFINITION = "minus the method's channel objective (mean activation of the filter) at each step"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: object) -> None:
    text = json.dumps(payload, indent=1, sort_keys=False, allow_nan=False)
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


def _round(value: float) -> float:
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


class AtlasStore:
    """Reads and writes one model's atlas under ``root``."""

    def __init__(self, root: Path | str, model: str) -> None:
        self.paths = AtlasPaths(Path(root), model)
        self.model = model

    # --- writing ---------------------------------------------------------------------------------

    def prepare(self, config: RenderConfig, loaded: LoadedModel, force: bool) -> None:
        """Check that ``root`` is writable and holds no other config's atlas; write the manifest."""
        model_dir = self.paths.model_dir
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=model_dir, prefix=".tmp-probe-")
            probe.close()
        except OSError as exc:
            raise AtlasError(
                f"--out {self.paths.root}: cannot write there ({exc.strerror or exc}); choose a writable folder"
            ) from None
        for stale in model_dir.rglob(".tmp-*"):  # left by a run killed mid-write
            stale.unlink(missing_ok=True)
        if self.paths.manifest.exists():
            old = read_json(self.paths.manifest, "manifest")
            if old.get("config_hash") != config.hash:
                if not force:
                    raise AtlasError(
                        f"{model_dir} holds an atlas made with other settings (config hash "
                        f"{old.get('config_hash')}, this run {config.hash}); use another --out or add --force "
                        "to replace it"
                    )
                shutil.rmtree(model_dir)
                model_dir.mkdir(parents=True)
        self.write_manifest(config, loaded)

    def write_manifest(self, config: RenderConfig, loaded: LoadedModel) -> None:
        from generator.config import robustness_for

        now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
        old = read_json(self.paths.manifest, "manifest") if self.paths.manifest.exists() else {}
        layers = []
        for layer in loaded.layers:
            rows = self.layer_rows(layer) if self.paths.layer_json(layer.name).exists() else []
            layers.append(
                {
                    "name": layer.name,
                    "block": layer.block,
                    "filters": layer.filters,
                    "receptive_field": layer.receptive_field,
                    "rendered": len(rows),
                    "dead": sum(bool(r["dead"]) for r in rows),
                    "retried_float32": sum(bool(r.get("retried_float32")) for r in rows),
                    "robustness": robustness_for(layer).__dict__,
                }
            )
        atomic_write_json(
            self.paths.manifest,
            {
                "model": self.model,
                "weights": {"name": str(loaded.weights), "sha256": loaded.weights_sha256},
                "config_hash": config.hash,
                "config": config.to_dict(),
                "versions": package_versions(),
                "created": old.get("created", now),
                "updated": now,
                "layers": layers,
            },
        )

    def write_filter(self, layer: ConvLayer, result: RenderedFilter, config: RenderConfig) -> dict:
        """Write one filter's PNG, then its JSON; return its row for layer.json."""
        atomic_write_bytes(self.paths.filter_png(layer.name, result.filter), png_bytes(result.image))
        record = {
            "model": self.model,
            "layer": layer.name,
            "filter": result.filter,
            "config_hash": config.hash,
            "seed": config.seed,
            "method": config.method,
            "size": config.size,
            "steps": config.steps,
            "precision": result.precision,
            "retried_float32": result.retried,
            "final_loss": _round(result.loss[-1]),
            "activation": _round(result.activation),
            "pre_relu_mean": _round(result.pre_relu_mean),
            "pre_relu_max": _round(result.pre_relu_max),
            "dead": result.dead,
            "loss_definition": LOSS_DEFINITION,
            "loss": [_round(x) for x in result.loss],
        }
        atomic_write_json(self.paths.filter_json(layer.name, result.filter), record)
        return layer_row(record)

    def write_layer(self, layer: ConvLayer, rows: dict[int, dict], config: RenderConfig) -> None:
        atomic_write_json(
            self.paths.layer_json(layer.name),
            {
                "model": self.model,
                "layer": layer.name,
                "block": layer.block,
                "filters": layer.filters,
                "config_hash": config.hash,
                "rows": [rows[f] for f in sorted(rows)],
            },
        )

    # --- reading ---------------------------------------------------------------------------------

    def done(self, layer: ConvLayer, config_hash: str) -> dict[int, dict]:
        """Rows of the filters of ``layer`` already rendered with ``config_hash``."""
        rows = {}
        folder = self.paths.layer_dir(layer.name)
        if not folder.is_dir():
            return rows
        for path in folder.glob("[0-9][0-9][0-9][0-9].json"):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # unreadable: render it again
            f = record.get("filter")
            if (
                record.get("config_hash") == config_hash
                and isinstance(f, int)
                and self.paths.filter_png(layer.name, f).exists()
            ):
                rows[f] = layer_row(record)
        return rows

    def read_manifest(self) -> dict:
        if not self.paths.manifest.exists():
            raise AtlasError(
                f"{self.paths.manifest}: no atlas here; run `atlas generate --out {self.paths.root}` first"
            )
        manifest = read_json(self.paths.manifest, "manifest")
        if manifest.get("model") != self.model:
            raise AtlasError(
                f"{self.paths.manifest}: manifest of model {manifest.get('model')!r}, expected {self.model!r}"
            )
        return manifest

    def layer_rows(self, layer: ConvLayer) -> list[dict]:
        return read_json(self.paths.layer_json(layer.name), "layer.json").get("rows", [])

    def read_filter(self, layer: str, filter_index: int) -> dict:
        png = self.paths.filter_png(layer, filter_index)
        if not png.exists():
            raise AtlasError(f"{png}: missing image of {layer}:{filter_index}; rerun `atlas generate` to fill it in")
        return read_json(self.paths.filter_json(layer, filter_index), f"loss JSON of {layer}:{filter_index}")


def layer_row(record: dict) -> dict:
    return {
        "filter": record["filter"],
        "final_loss": record["final_loss"],
        "activation": record["activation"],
        "dead": record["dead"],
        "retried_float32": record.get("retried_float32", False),
    }
