"""Who may write a model folder: one whole run alone, or the shards of one job side by side.

The locks are advisory ``flock`` locks the system drops when their process ends, even by ``kill -9``;
whoever holds one signs its file, so a run that is refused names the run that holds it, in one line.
"""

from __future__ import annotations

import fcntl
import os
import platform
import sys
from pathlib import Path

from generator.errors import AtlasError
from generator.paths import AtlasPaths


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
