"""Folders to upload as one .tar, and downloaded .tar files back to folders."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import BinaryIO


def tar_directory(src: Path, out: BinaryIO) -> None:
    """The files of a Hugging Face directory at the archive's top level (where the service looks)."""
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(src).as_posix())
    out.seek(0)


def extract_tar(archive: Path, dest: Path) -> Path:
    """Unpack a downloaded model; tarfile's "data" filter refuses links and paths outside `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest
