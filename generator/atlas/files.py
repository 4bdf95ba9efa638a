"""Files of the atlas, whole or not at all: atomic durable writes, JSON written the atlas's way, PNG
bytes, and JSON read back with one line of error.

Every file goes to a temporary name in its own folder, is flushed to disk and renamed into place, so a
killed run leaves whole files or none; files get the usual permissions of the user's umask.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from generator.errors import AtlasError


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


def read_json(path: Path, what: str) -> dict:
    """A JSON file the atlas needs; missing or unreadable, one line naming it as ``what``."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise AtlasError(f"{path}: missing {what}") from None
    except (OSError, ValueError) as exc:
        raise AtlasError(f"{path}: unreadable {what} ({exc.__class__.__name__}); regenerate it") from None
