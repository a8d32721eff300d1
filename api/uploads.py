"""Multipart uploads streamed straight to a file on disk, under a size limit.

We parse the request body ourselves (python-multipart's push parser) instead of letting the
framework spool the file to the system temp folder: the bytes go once, chunk by chunk, to a
file under DATA_DIR, and the upload stops as soon as it passes the limit. That file is a locked
scratch file (store/scratch.py): if the process dies mid-upload, the next sweep removes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from fastapi import Request
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from store.scratch import Scratch, scratch_file
from web.errors import ApiError, invalid

if TYPE_CHECKING:  # python_multipart defines its callbacks type for type checkers only
    from python_multipart.multipart import MultipartCallbacks

_MAX_FIELD_BYTES = 64 * 1024  # small text fields such as `name`
_MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers on top of the file itself


def too_large(max_bytes: int) -> ApiError:
    message = f"the upload is larger than the limit of {max_bytes} bytes"
    return ApiError(413, "payload_too_large", message, "file")


@dataclass
class Upload:
    """A file received from a multipart form, plus the small text fields sent beside it."""

    scratch: Scratch
    filename: str
    bytes: int
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.scratch.path

    def discard(self) -> None:
        self.scratch.remove()


class _FormCollector:
    """Callbacks for the push parser: the file part goes to disk, other parts to memory."""

    def __init__(self, tmp_dir: Path, max_bytes: int, file_field: str) -> None:
        self.tmp_dir = tmp_dir
        self.max_bytes = max_bytes
        self.file_field = file_field
        self.fields: dict[str, str] = {}
        self.upload: Upload | None = None
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._part_name: str | None = None
        self._sink: IO[bytes] | None = None
        self._buffer = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._append_header("_header_name", data[start:end]),
            "on_header_value": lambda data, start, end: self._append_header("_header_value", data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _append_header(self, attr: str, data: bytes) -> None:
        setattr(self, attr, getattr(self, attr) + data)

    def _part_begin(self) -> None:
        self._disposition = b""
        self._part_name = None
        self._buffer = bytearray()

    def _header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._part_name = name
        if name != self.file_field:
            return
        if self.upload is not None:
            raise invalid(self.file_field, f"send exactly one `{self.file_field}` part")
        filename = os.path.basename(options.get(b"filename", b"").decode("utf-8", "replace"))
        scratch = scratch_file(self.tmp_dir, "upload-")
        self.upload = Upload(scratch=scratch, filename=filename, bytes=0)
        self._sink = open(scratch.path, "wb")  # noqa: SIM115 (closed at the part's end or on discard)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._sink is not None and self.upload is not None:
            self.upload.bytes += end - start
            if self.upload.bytes > self.max_bytes:
                raise too_large(self.max_bytes)
            self._sink.write(data[start:end])
            return
        self._buffer += data[start:end]
        if len(self._buffer) > _MAX_FIELD_BYTES:
            raise invalid(self._part_name or "form", "form field too long")

    def _part_end(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        elif self._part_name:
            self.fields[self._part_name] = self._buffer.decode("utf-8", "replace")

    def is_open(self) -> bool:
        return self._sink is not None

    def discard(self) -> None:
        if self._sink is not None:
            self._sink.close()
        if self.upload is not None:
            self.upload.discard()


async def receive_upload(request: Request, *, tmp_dir: Path, max_bytes: int,
                         file_field: str = "file") -> Upload:
    """Stream the multipart body of `request` to a temp file in `tmp_dir`; the caller discards it."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise ApiError(415, "unsupported_media_type", "send the file as multipart/form-data", file_field)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + _MULTIPART_OVERHEAD:
        raise too_large(max_bytes)
    collector = _FormCollector(tmp_dir, max_bytes, file_field)
    parser = MultipartParser(options[b"boundary"], collector.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        if collector.is_open():
            raise invalid(file_field, "the multipart body ended in the middle of the file")
    except FormParserError as exc:  # a broken body: no boundary where one belongs, a huge part header...
        collector.discard()
        raise invalid(file_field, f"malformed multipart body: {exc}") from None
    except BaseException:
        collector.discard()
        raise
    if collector.upload is None:
        raise invalid(file_field, f"missing the multipart file field `{file_field}`")
    collector.upload.fields = collector.fields
    return collector.upload
