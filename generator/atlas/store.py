"""The store of one model's atlas: the manifest, what is done, and where each picture and record goes.

A filter's view is done when its pictures exist and its JSON holds that view's record under this
run's config hash (pictures are written first, so a record implies its images). Every file is written
whole or not at all (``files``); a lock on the model's folder keeps a second run out while one writes
(``locks``). The layer tables (``layer.json``) are an index, rebuilt from the filter files whenever a
run touches a layer, so no crash can leave them stale; a filter file that cannot be read (a disk
error, a bad copy) is not done, and is rendered again. What a record holds is ``records``.

One atlas, one network: every command that writes into a model folder first calls
``AtlasStore.check_weights``, which refuses other weights than the manifest's (or, with ``--force``,
removes everything made from them). The manifest names the weights by their source or file name and
sha256, never a local path: the atlas data is published.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import re
import shutil
import sys
from pathlib import Path

from generator.atlas.files import (
    atomic_write_bytes,
    atomic_write_json,
    png_bytes,
    read_json,
    read_json_or_none,
)
from generator.atlas.locks import AtlasLock, ManifestLock
from generator.atlas.records import add_view, layer_row, layer_table
from generator.errors import AtlasError
from generator.network.layers import Layer
from generator.paths import AtlasPaths
from generator.render.config import RenderConfig, robustness_for
from generator.render.renderer import RenderedView
from generator.render.views import VIEWS

RENDER_FILE = re.compile(r"^\d{4}(\.(neuron|negative|field|diversity-\d))?\.(png|json)$")


def weights_name(source: str) -> str:
    """How the manifest and the site name a weight source: ``imagenet``, ``hed-bsds500``, ``random``, or
    a file's name without its folder (the atlas is published; ``/home/alice/...`` is nobody's business)."""
    from generator.network.weights import SOURCES

    return source if source in SOURCES else Path(str(source)).name


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

    def lock(self) -> AtlasLock:
        return AtlasLock(self.paths)

    def manifest_lock(self) -> ManifestLock:
        return ManifestLock(self.paths)

    def remove_stale_temporaries(self) -> None:
        """Temporary files of a run killed mid-write; call only while holding the lock."""
        for stale in self.paths.model_dir.rglob(".tmp-*"):
            stale.unlink(missing_ok=True)

    # --- writing ---------------------------------------------------------------------------------

    def check_weights(self, sha256: str, name: str, force: bool) -> None:
        """The one rule for every command that writes into the model folder: an atlas holds one
        network's weights. Other weights than the manifest's are refused in one line, or with ``force``
        everything made from them is removed (pictures, records, examples, wiring, checkpoints, the
        manifest). Call while holding the lock, before writing anything."""
        manifest = self.paths.manifest
        if not manifest.exists():
            return
        old = read_json(manifest, "manifest").get("weights") or {}
        old_sha = old.get("sha256")
        if not old_sha or old_sha == sha256:
            return
        held = f"{weights_name(old.get('name', '?'))}, sha256 {old_sha[:16]}"
        if not force:
            raise AtlasError(
                f"{self.paths.model_dir} holds an atlas of other weights ({held}; this run: {name}, sha256 "
                f"{sha256[:16]}); use the same --weights, another --out, or add --force to replace that atlas"
            )
        for path in sorted(self.paths.model_dir.iterdir(), key=lambda p: p == manifest):  # the manifest last
            if path == self.paths.lock:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        print(f"--force: the atlas of other weights ({held}) in {self.paths.model_dir} is removed", file=sys.stderr)

    def prepare(self, config: RenderConfig, loaded, force: bool) -> None:
        """Check that the folder holds no other weights' or config's pictures (or remove them with
        ``force``); write the manifest. Call while holding the lock."""
        self.remove_stale_temporaries()
        self.check_weights(config.weights_sha256, weights_name(config.weights), force)
        if self.paths.manifest.exists():
            old = read_json(self.paths.manifest, "manifest")
            old_hash = old.get("config_hash")
            if old_hash and old_hash != config.hash:
                if not force:
                    raise AtlasError(
                        f"{self.paths.model_dir} holds an atlas made with other settings (config hash "
                        f"{old_hash}, this run {config.hash}); use another --out or add --force to replace it"
                    )
                self._remove_pictures()
        self.write_manifest(config, loaded)

    def _remove_pictures(self) -> None:
        """What ``--force`` replaces within one network's atlas: the rendered pictures and records;
        dataset examples and wiring stay (they come from the same weights)."""
        for layer_dir in self.paths.model_dir.iterdir():
            if not layer_dir.is_dir() or layer_dir.name.startswith("."):
                continue
            for path in layer_dir.iterdir():
                if RENDER_FILE.match(path.name) or path.name == "layer.json":
                    path.unlink()
        # unmerged shards of the replaced settings (lock files stay: a shard of the new ones may hold its own)
        for path in self.paths.shards_dir.glob("generate-*-of-*"):
            if path.suffix != ".lock":
                path.unlink(missing_ok=True)

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
            "weights": {"name": weights_name(loaded.weights), "sha256": loaded.weights_sha256},
            "versions": package_versions(),
            "created": old.get("created", now),
            "updated": now,
            "layers": layers,
        }
        if config is not None:
            manifest["config_hash"] = config.hash
            manifest["config"] = config.to_dict()
        if not loaded.spec.zoo:  # a user's model file: what the site needs to show it without Keras
            from generator.network.modelfile import describe

            manifest["user_model"] = describe(loaded.spec, loaded.layers)
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
        old = read_json_or_none(path) or {}  # an unreadable record was not done: it is written anew
        record = add_view(old, self.model, layer, result, config, files)
        atomic_write_json(path, record)
        return record

    def write_layer(self, layer: Layer, rows: dict[int, dict], config: RenderConfig) -> None:
        atomic_write_json(self.paths.layer_json(layer.name), layer_table(self.model, layer, rows, config))

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
            record = read_json_or_none(path)
            if record is None:
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


def atlas_models(root: Path | str) -> list[str]:
    """The models that have an atlas under ``root``: the zoo's in its order, then users' networks
    (folders whose manifest describes a model file) by name."""
    from generator.network.zoo import MODELS
    from generator.paths import SAFE_NAME

    zoo = [name for name in MODELS if AtlasPaths(Path(root), name).manifest.exists()]
    folder = Path(root)
    others = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in MODELS
                    and SAFE_NAME.match(p.name) and (p / "manifest.json").is_file()) if folder.is_dir() else []
    return zoo + [name for name in others if "user_model" in read_json(folder / name / "manifest.json", "manifest")]

