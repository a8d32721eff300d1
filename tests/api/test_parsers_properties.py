"""Property-based tests of what reads untrusted files: the dataset parsers (the API's check and the
worker's reader) and the archive unpacker. Whatever the bytes, each either accepts or refuses with
a UserInputError naming the file; no other exception, no file outside the destination."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.archives import ArchiveError, extract_archive
from api.contents import summarize_dataset
from compression.data import read_records
from compression.errors import DatasetError

PROPERTY = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
BOM = b"\xef\xbb\xbf"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
records = st.dictionaries(st.sampled_from(["document", "summary", "extra"]), json_values, min_size=1)


def _write(tmp_path: Path, content: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # one folder per example: pytest cleans them up
    path = folder / name
    path.write_bytes(content)
    return path


def _parse_both(tmp_path: Path, content: bytes, name: str) -> tuple[Any, Any]:
    """(the API's summary or its DatasetError, the worker's records or its DatasetError)."""
    path = _write(tmp_path, content, name)
    outcomes = []
    for parse in (lambda: summarize_dataset(path, name), lambda: read_records(path, "document", "summary")):
        try:
            outcomes.append(parse())
        except DatasetError as exc:
            outcomes.append(exc)
    return outcomes[0], outcomes[1]


@PROPERTY
@given(content=st.binary(max_size=300), name=st.sampled_from(["d.jsonl", "d.csv"]))
def test_any_bytes_are_accepted_or_refused_as_a_dataset_error(tmp_path: Path, content: bytes,
                                                             name: str) -> None:
    _parse_both(tmp_path, content, name)  # raises on anything but a summary or a DatasetError


@PROPERTY
@given(rows=st.lists(records, min_size=1, max_size=5), bom=st.booleans())
def test_jsonl_of_objects_counts_every_row_with_or_without_a_bom(tmp_path: Path, rows: list[dict[str, Any]],
                                                                 bom: bool) -> None:
    content = (BOM if bom else b"") + "".join(json.dumps(r) + "\n" for r in rows).encode()
    summary, _ = _parse_both(tmp_path, content, "d.jsonl")
    assert summary.rows == len(rows)


@PROPERTY
@given(depth=st.integers(min_value=1, max_value=200_000), bom=st.booleans())
def test_nesting_of_any_depth_is_refused_cleanly_or_read(tmp_path: Path, depth: int, bom: bool) -> None:
    content = (BOM if bom else b"") + b'{"document": ' + b"[" * depth + b"]" * depth + b', "summary": "s"}\n'
    summary, records_or_error = _parse_both(tmp_path, content, "d.jsonl")
    assert isinstance(summary, DatasetError) == isinstance(records_or_error, DatasetError)


@PROPERTY
@given(cells=st.lists(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=10),
                               min_size=2, max_size=2), min_size=1, max_size=5),
       bom=st.booleans(), encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_csv_in_any_encoding_is_read_or_refused_as_a_dataset_error(
        tmp_path: Path, cells: list[list[str]], bom: bool, encoding: str) -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["document", "summary"], *cells])
    try:
        content = (BOM if bom else b"") + buffer.getvalue().encode(encoding)
    except UnicodeEncodeError:
        return
    summary, _ = _parse_both(tmp_path, content, "d.csv")
    if encoding == "utf-8" and not isinstance(summary, DatasetError):
        assert summary.columns == ["document", "summary"]


member_names = st.lists(st.text(alphabet="ab./\\:-_", min_size=1, max_size=12), min_size=1, max_size=5)


@PROPERTY
@given(names=member_names, link=st.booleans())
def test_any_member_names_unpack_inside_the_destination_or_are_refused(tmp_path: Path, names: list[str],
                                                                       link: bool) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        for name in names:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            else:
                info.size = 1
            tf.addfile(info, None if link else io.BytesIO(b"x"))
    archive = _write(tmp_path, buffer.getvalue(), "a.tar")
    dest = archive.parent / "out"
    dest.mkdir()
    with contextlib.suppress(ArchiveError):
        extract_archive(archive, dest, max_bytes=1_000)
    unpacked = [p.resolve() for p in dest.rglob("*")]
    assert all(p.is_relative_to(dest.resolve()) for p in unpacked)
    assert not any(p.is_symlink() for p in dest.rglob("*"))
