"""Temporaries under DATA_DIR/tmp (uploads being received, archives being unpacked) that a crash
cannot orphan.

Each temporary is locked (flock, exclusive) by its owner from the moment it exists until it is
removed. The kernel drops the lock when the owning process dies, kill -9 included, so whoever
can take the lock knows that nobody uses the entry any more: `sweep` removes exactly those, at
startup and periodically, while the uploads of live processes (other API workers sharing the
folder included) keep their locks and are left alone.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# An entry is locked right after it is created; a sweep spares anything younger than this, so
# that it never takes the lock of an entry in that instant between creation and locking.
GRACE_SECONDS = 2.0


class Scratch:
    """A locked temporary file or folder; `remove` deletes it and then drops the lock."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd: int | None = lock_fd

    def remove(self) -> None:
        if self._lock_fd is None:
            return
        _delete(self.path)
        os.close(self._lock_fd)
        self._lock_fd = None


def _locked(path: Path, fd: int) -> Scratch:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return Scratch(path, fd)


def scratch_file(tmp_dir: Path, prefix: str) -> Scratch:
    """A new empty file in `tmp_dir`, locked by this process until `remove`."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=prefix, dir=tmp_dir)
    return _locked(Path(name), fd)


@contextmanager
def scratch_dir(tmp_dir: Path, prefix: str) -> Iterator[Path]:
    """A new folder in `tmp_dir`, locked while the block runs and removed after it."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=tmp_dir))
    scratch = _locked(path, os.open(path, os.O_RDONLY | os.O_DIRECTORY))
    try:
        yield path
    finally:
        scratch.remove()


@dataclass(frozen=True)
class Swept:
    entries: int
    bytes: int


def sweep(tmp_dir: Path, grace_seconds: float = GRACE_SECONDS) -> Swept:
    """Remove every entry of `tmp_dir` whose owner is gone (nobody holds its lock)."""
    entries, total = 0, 0
    if not tmp_dir.is_dir():
        return Swept(0, 0)
    for entry in tmp_dir.iterdir():
        size = _take_and_delete(entry, time.time() - grace_seconds)
        if size is not None:
            entries, total = entries + 1, total + size
    return Swept(entries, total)


def _take_and_delete(entry: Path, born_before: float) -> int | None:
    """The bytes freed by deleting `entry`, or None when it is young, in use or already gone."""
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # gone meanwhile, or a link: nothing we created
        return None
    try:
        if os.fstat(fd).st_mtime > born_before:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        size = _size(entry)
        _delete(entry)
        return size
    finally:
        os.close(fd)


def _size(path: Path) -> int:
    if not path.is_dir():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
