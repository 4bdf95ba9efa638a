"""The atlas on disk: durable atomic writes, one writer at a time, the manifest, and what is done.

A filter's view is done when its pictures exist and its JSON holds that view's record under this
run's config hash (pictures are written first, so a record implies its images). Every file goes to a
temporary name in its own folder, is flushed to disk and renamed into place, so a killed run leaves
whole files or none; files get the usual permissions of the user's umask. A lock on the model's
folder keeps a second run out while one writes. The layer tables (``layer.json``) are an index,
rebuilt from the filter files whenever a run touches a layer, so no crash can leave them stale; a
filter file that cannot be read (a disk error, a bad copy) is not done, and is rendered again.

One atlas, one network: every command that writes into a model folder first calls
``AtlasStore.check_weights``, which refuses other weights than the manifest's (or, with ``--force``,
removes everything made from them). The manifest names the weights by their source or file name and
sha256, never a local path: the atlas data is published.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import io
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from generator.errors import AtlasError
from generator.network.layers import Layer
from generator.paths import AtlasPaths
from generator.render.config import RenderConfig, robustness_for
from generator.render.renderer import RenderedView
from generator.render.views import CHANNEL, VIEWS

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
    """Write ``data`` to ``path`` whole or not at all, durable once this returns. A failure (a full
    disk, a read-only folder) leaves no temporary file and raises an ``OSError`` naming ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), FILE_MODE)  # mkstemp makes 0600; others may read an atlas
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _naming(exc, path) from None
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


def _naming(exc: OSError, path: Path) -> OSError:
    """The same error (same class, by its errno) about the file being written, not its temporary name."""
    if exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


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


def read_json_or_none(path: Path) -> dict | None:
    """A JSON file of the atlas, or None if it is missing or unreadable (a disk error, a bad copy)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def weights_name(source: str) -> str:
    """How the manifest and the site name a weight source: ``imagenet``, ``hed-bsds500``, ``random``, or
    a file's name without its folder (the atlas is published; ``/home/alice/...`` is nobody's business)."""
    from generator.network.weights import SOURCES

    return source if source in SOURCES else Path(str(source)).name


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
            holder = self.handle.read().strip() or _shard_holders(self.paths) or "another process"
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


def _open_lock(path: Path, root: Path):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a+")
    except OSError as exc:
        raise AtlasError(f"--out {root}: cannot write there ({exc.strerror or exc}); choose a writable folder") from None


def lock_holder(path: Path) -> str | None:
    """What the process holding the lock file ``path`` wrote into it, or None if nobody holds it."""
    try:
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                return handle.read().strip() or "another process"
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        pass
    return None


def _shard_holders(paths: AtlasPaths) -> str:
    """The shard runs holding the model folder (they hold it shared and sign their own lock files)."""
    holders = [h for h in map(lock_holder, sorted(paths.shards_dir.glob("*.lock"))) if h]
    if not holders:
        return ""
    return holders[0] + (f"; and {len(holders) - 1} more shard runs" if len(holders) > 1 else "")


class ShardLock:
    """The lock of one shard of a job: the model folder shared with the job's other shards (so a whole
    run, which takes it exclusively, is refused while any shard writes, and refuses them while it
    does), and the shard itself exclusively (so the same shard never runs twice at once). ``flock``
    locks work across machines on NFS (Linux emulates them with NFS byte-range locks)."""

    def __init__(self, paths: AtlasPaths, command: str, index: int, count: int) -> None:
        self.paths, self.command, self.index, self.count = paths, command, index, count
        self.model_handle = self.shard_handle = None

    def __enter__(self) -> "ShardLock":
        self.model_handle = _open_lock(self.paths.lock, self.paths.root)
        try:
            fcntl.flock(self.model_handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            self.model_handle.seek(0)
            holder = self.model_handle.read().strip() or "another process"
            self._release()
            raise AtlasError(f"{self.paths.model_dir} is being written by another run ({holder}); wait for it to "
                             "end or use another --out") from None
        if os.fstat(self.model_handle.fileno()).st_size:
            self.model_handle.truncate(0)  # left by a whole run killed with -9: no whole run holds it now
        self.shard_handle = _open_lock(self.paths.shard_file(self.command, self.index, self.count, ".lock"),
                                       self.paths.root)
        try:
            fcntl.flock(self.shard_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.shard_handle.seek(0)
            holder = self.shard_handle.read().strip() or "another process"
            self._release()
            raise AtlasError(f"shard {self.index}/{self.count} of {self.paths.model_dir} is being written by another "
                             f"run ({holder}); wait for it to end") from None
        self.shard_handle.seek(0)
        self.shard_handle.truncate()
        self.shard_handle.write(f"pid {os.getpid()} on {platform.node()}: atlas {' '.join(sys.argv[1:])[:200]}")
        self.shard_handle.flush()
        return self

    def _release(self) -> None:
        for handle in (self.shard_handle, self.model_handle):
            if handle is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
        self.model_handle = self.shard_handle = None

    def __exit__(self, *exc) -> None:
        if self.shard_handle is not None:
            self.shard_handle.seek(0)
            self.shard_handle.truncate()
        self._release()


class ManifestLock:
    """A moment's exclusive lock around a read-modify-write of the manifest, for runs that share the
    model folder (shards); waits for the other holder instead of refusing."""

    def __init__(self, paths: AtlasPaths) -> None:
        self.paths = paths
        self.handle = None

    def __enter__(self) -> "ManifestLock":
        self.handle = _open_lock(self.paths.manifest_lock, self.paths.root)
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


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
        record = read_json_or_none(path) or {}  # an unreadable record was not done: it is written anew
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
        record = _canonical(record)
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


def _canonical(record: dict) -> dict:
    """A filter record's keys in one order whatever order its views were written in (several devices
    finish them in any order): the same views give the same bytes."""
    out = {key: record[key] for key in record if key != "views"}
    if "views" in record:
        out["views"] = {name: record["views"][name] for name in sorted(record["views"], key=list(VIEWS).index)}
    return out


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
    """The models that have an atlas under ``root``: the zoo's in its order, then users' networks
    (folders whose manifest describes a model file) by name."""
    from generator.network.zoo import MODELS
    from generator.paths import SAFE_NAME

    zoo = [name for name in MODELS if AtlasPaths(Path(root), name).manifest.exists()]
    folder = Path(root)
    others = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in MODELS
                    and SAFE_NAME.match(p.name) and (p / "manifest.json").is_file()) if folder.is_dir() else []
    return zoo + [name for name in others if "user_model" in read_json(folder / name / "manifest.json", "manifest")]

