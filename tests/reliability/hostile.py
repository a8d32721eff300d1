"""Builders of hostile and broken uploads: archives, datasets and recipes that the service must refuse."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import safetensors.torch
import torch

TAR_LINK = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}


def teacher_files(folder: Path) -> dict[str, bytes]:
    """The files of a saved HF model directory, by name."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def tar_of(members: dict[str, bytes], *, links: dict[str, tuple[str, str]] | None = None,
           mode: str = "w") -> bytes:
    """A tar with the given members (names used verbatim, so `../x` and `/x` stay as written);
    `links` maps a member name to ("sym" | "hard", target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = TAR_LINK[kind]
            info.linkname = target
            tf.addfile(info)
    return buffer.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def zip_bomb(unpacked_bytes: int) -> bytes:
    """A small zip whose one member inflates to `unpacked_bytes` zeros."""
    return zip_of({"config.json": b"\0" * unpacked_bytes})


def with_config(files: dict[str, bytes], **changes: object) -> dict[str, bytes]:
    config = json.loads(files["config.json"])
    return {**files, "config.json": json.dumps({**config, **changes}).encode()}


def without(files: dict[str, bytes], *names: str) -> dict[str, bytes]:
    return {k: v for k, v in files.items() if k not in names}


def bad_safetensors_header() -> bytes:
    """A safetensors file whose header claims more bytes than the file holds."""
    return (10_000).to_bytes(8, "little") + b'{"a": 1}'


def jsonl(rows: int, **extra: str) -> bytes:
    return "".join(json.dumps({"document": f"document {i}", "summary": f"summary {i}", **extra}) + "\n"
                   for i in range(rows)).encode()


def long_line_jsonl(chars: int) -> bytes:
    return (json.dumps({"document": "x" * chars, "summary": "s"}) + "\n").encode()


def with_weights(files: dict[str, bytes],
                 change: Callable[[dict[str, torch.Tensor]], None]) -> dict[str, bytes]:
    """The teacher's files with model.safetensors edited by `change` (which edits the tensors in place)."""
    tensors = safetensors.torch.load(files["model.safetensors"])
    change(tensors)
    return {**files, "model.safetensors": safetensors.torch.save(tensors)}


def nested_json(depth: int) -> bytes:
    """A JSON array nested `depth` levels: deeper than any recursive parser's stack."""
    return b"[" * depth + b"]" * depth


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"dqb-boundary") -> bytes:
    """A multipart/form-data body from (headers, content) pairs, written by hand so that tests can
    break it in ways that HTTP clients never do."""
    body = b"".join(b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + content + b"\r\n"
                    for headers, content in parts)
    return body + b"--" + boundary + b"--\r\n"
