"""Safe extraction of uploaded .tar / .tar.gz / .zip archives, and deterministic repacking.

Nothing from an archive touches disk before its name and type are checked: no absolute paths,
no `..`, no links or devices, no pickle-based weight files, a member count and a total size cap.
Members are copied one by one into the destination (never `extractall`); members the caller does
not keep are skipped without being opened.

Not tarfile's "data" extraction filter (stored tars use it, `store.blobs.unpack_tar_once`): an
upload must be refused, not repaired, where that filter strips a leading "/" or keeps a link
inside the folder, and zip archives, which have no such filter, take the same checks.
"""

from __future__ import annotations

import functools
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from compression.errors import UserInputError

# Formats that unpickle on load: a model must come as safetensors.
FORBIDDEN_SUFFIXES = (".bin", ".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib")
MAX_MEMBERS = 10_000
_COPY_CHUNK = 1024 * 1024


class ArchiveError(UserInputError):
    """An archive we refuse to unpack; `param` is the upload field."""

    def __init__(self, message: str) -> None:
        super().__init__("file", message)


@dataclass(frozen=True)
class _Member:
    parts: tuple[str, ...]
    is_dir: bool
    open: Callable[[], IO[bytes]]


def _checked_parts(name: str) -> tuple[str, ...]:
    if "\x00" in name or "\\" in name:
        raise ArchiveError(f"unsafe member name {name!r}")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"absolute path in archive: {name!r}")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise ArchiveError(f"path traversal in archive: {name!r}")
    return parts


def _tar_stream(tf: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    stream = tf.extractfile(info)
    if stream is None:
        raise ArchiveError(f"cannot read member {info.name!r}")
    return stream


def _tar_members(tf: tarfile.TarFile) -> Iterator[_Member]:
    for info in tf:
        parts = _checked_parts(info.name)
        if info.issym() or info.islnk():
            raise ArchiveError(f"links are refused in archives: {info.name!r}")
        if info.issparse() or not (info.isfile() or info.isdir()):
            raise ArchiveError(f"only regular files and folders are allowed: {info.name!r}")
        yield _Member(parts, info.isdir(), functools.partial(_tar_stream, tf, info))


def _zip_members(zf: zipfile.ZipFile) -> Iterator[_Member]:
    for info in zf.infolist():
        parts = _checked_parts(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise ArchiveError(f"links are refused in archives: {info.filename!r}")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"encrypted members are refused: {info.filename!r}")
        yield _Member(parts, info.is_dir(), functools.partial(zf.open, info))


@contextmanager
def _members(archive: Path) -> Iterator[Iterator[_Member]]:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            yield _zip_members(zf)
        return
    if not tarfile.is_tarfile(archive):
        raise ArchiveError("not a .tar, .tar.gz or .zip archive")
    with tarfile.open(archive, "r:*") as tf:
        yield _tar_members(tf)


def _copy_capped(src: IO[bytes], dst: IO[bytes], budget: int) -> int:
    written = 0
    while chunk := src.read(_COPY_CHUNK):
        written += len(chunk)
        if written > budget:
            raise ArchiveError("the archive unpacks to more than the upload size limit")
        dst.write(chunk)
    return written


def _write_member(member: _Member, dest: Path, budget: int) -> int:
    target = dest.joinpath(*member.parts)
    if member.is_dir:
        target.mkdir(parents=True, exist_ok=True)
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.resolve().is_relative_to(dest.resolve()):
        raise ArchiveError(f"member escapes the archive root: {'/'.join(member.parts)!r}")
    stream = member.open()
    try:
        with open(target, "xb") as out:
            return _copy_capped(stream, out, budget)
    except FileExistsError:
        raise ArchiveError(f"duplicate member {'/'.join(member.parts)!r}") from None
    finally:
        stream.close()


def _keep_all(name: str) -> bool:
    return True


def extract_archive(archive: Path, dest: Path, *, max_bytes: int,
                    keep: Callable[[str], bool] = _keep_all) -> list[str]:
    """Unpack `archive` (tar, tar.gz or zip, sniffed from its bytes) into the empty folder `dest`;
    the files `keep` refuses (by their path in the archive) are skipped unread and returned."""
    total, count, dropped = 0, 0, []
    try:
        with _members(archive) as members:
            for member in members:
                count += 1
                if count > MAX_MEMBERS:
                    raise ArchiveError(f"more than {MAX_MEMBERS} members in the archive")
                if not member.parts or member.parts[0] == "__MACOSX":  # Finder's resource forks
                    continue
                name = "/".join(member.parts)
                if not member.is_dir and not keep(name):
                    dropped.append(name)
                    continue
                if member.parts[-1].lower().endswith(FORBIDDEN_SUFFIXES):
                    raise ArchiveError(f"{name!r}: pickle-based weight files are refused; "
                                       "upload model.safetensors")
                total += _write_member(member, dest, max_bytes - total)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, NotADirectoryError) as exc:
        raise ArchiveError(f"damaged archive ({exc})") from None
    return dropped
