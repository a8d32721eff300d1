"""The local blob store: atomic writes with checksums, ranges, key safety, limits."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from store.blobs import BlobError, BlobTooLarge, LocalBlobStore


def test_put_stream_stores_bytes_and_returns_size_and_sha256(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    blob = store.put_stream("ten_1/models/m.tar", [b"abc", b"def"])
    assert (blob.bytes, blob.sha256) == (6, hashlib.sha256(b"abcdef").hexdigest())
    assert store.path_of("ten_1/models/m.tar").read_bytes() == b"abcdef"


def test_over_the_limit_raises_and_leaves_no_file(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(BlobTooLarge):
        store.put_stream("ten_1/datasets/d.jsonl", io.BytesIO(b"x" * 100), max_bytes=10)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("key", ["", "/abs", "../up", "a/../../b", "a\\b", "a//b", "./a"])
def test_unsafe_keys_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(BlobError):
        LocalBlobStore(tmp_path).path_of(key)


def test_read_range_returns_the_asked_bytes(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.put_stream("k", [bytes(range(100))])
    assert b"".join(store.read_range("k", 10, 20)) == bytes(range(10, 20))
    assert b"".join(store.read_range("k", 95)) == bytes(range(95, 100))


def test_put_file_and_delete_prefix(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    source = tmp_path / "src.bin"
    source.write_bytes(b"payload")
    store.put_file("ten_1/tmp/a", source)
    store.put_file("ten_1/keep/b", source)
    store.delete_prefix("ten_1/tmp")
    assert not store.exists("ten_1/tmp/a") and store.exists("ten_1/keep/b")
