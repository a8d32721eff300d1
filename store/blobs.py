"""Blob storage behind a small interface, so that an S3-compatible store can be added later.

Keys are relative, slash-separated paths such as "<tenant_id>/models/<mdl_id>.tar". Writes are
atomic: a temporary file in the same folder, fsync, then rename, so a reader never sees half a
blob and a crash leaves no partial file under the final key.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK = 1024 * 1024
UNPACKED_MARKER = ".complete"  # written last into an unpacked folder; holds the stamp it was unpacked for
Chunks = Iterable[bytes] | BinaryIO


class BlobError(Exception):
    """A bad key or a missing blob."""


class BlobTooLarge(BlobError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class StoredBlob:
    key: str
    bytes: int
    sha256: str


class BlobStore(Protocol):
    def put_file(self, key: str, source: Path) -> StoredBlob: ...

    def put_stream(self, key: str, chunks: Chunks, max_bytes: int | None = None) -> StoredBlob: ...

    def open(self, key: str) -> BinaryIO: ...

    def read_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...

    def size(self, key: str) -> int: ...

    def exists(self, key: str) -> bool: ...

    def path_of(self, key: str) -> Path: ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> None: ...


def _iter_chunks(source: Chunks) -> Iterator[bytes]:
    if hasattr(source, "read"):
        while chunk := source.read(CHUNK):
            yield chunk
    else:
        yield from source


class LocalBlobStore:
    """Blobs as files under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def path_of(self, key: str) -> Path:
        parts = key.split("/")
        if "\\" in key or "\0" in key or any(p in ("..", ".", "") for p in parts):
            raise BlobError(f"invalid blob key {key!r}")
        return self.root.joinpath(*parts)

    def put_stream(self, key: str, chunks: Chunks, max_bytes: int | None = None) -> StoredBlob:
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in _iter_chunks(chunks):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise BlobTooLarge(max_bytes)
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return StoredBlob(key=key, bytes=size, sha256=digest.hexdigest())

    def put_file(self, key: str, source: Path) -> StoredBlob:
        with open(source, "rb") as f:
            return self.put_stream(key, f)

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self.path_of(key), "rb")
        except FileNotFoundError:
            raise BlobError(f"no blob {key!r}") from None

    def read_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) of a blob (end None = to the end), in chunks."""
        with self.open(key) as f:
            f.seek(start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                chunk = f.read(CHUNK if remaining is None else min(CHUNK, remaining))
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def size(self, key: str) -> int:
        try:
            return self.path_of(key).stat().st_size
        except FileNotFoundError:
            raise BlobError(f"no blob {key!r}") from None

    def exists(self, key: str) -> bool:
        return self.path_of(key).is_file()

    def delete(self, key: str) -> None:
        self.path_of(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        """Remove every blob whose key starts with the folder `prefix` (e.g. "<tenant_id>/tmp")."""
        target = self.path_of(prefix.rstrip("/"))
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_tar(src_dir: Path, out: Path) -> None:
    """Pack the files below `src_dir` into a plain tar, in a stable order with fixed metadata, so the
    same files give the same bytes (and the same sha256)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in src_dir.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(path.relative_to(src_dir).as_posix())
            info.size = path.stat().st_size
            info.mode = 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)


def unpack_tar_once(source: BinaryIO, target: Path, *, stamp: str) -> Path:
    """Unpack the tar (or tar.gz) `source` into the folder `target`, unless it holds `stamp` already.

    The tar is unpacked beside `target` and renamed into place with its marker inside, so neither
    a crash nor a concurrent reader ever sees a half-unpacked folder that looks complete. Members
    pass the standard library's "data" filter: no absolute paths, nothing outside the folder
    through ".." or a link, no devices (tarfile.FilterError)."""
    marker = target / UNPACKED_MARKER
    if marker.is_file() and marker.read_text() == stamp:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        with tarfile.open(fileobj=source, mode="r:*") as tar:
            tar.extractall(staging, filter="data")
        (staging / UNPACKED_MARKER).write_text(stamp)
        shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:  # another process unpacked the same tar first
            if not marker.is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
