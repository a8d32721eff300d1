"""Streaming a blob as an HTTP download: ETag, conditional GET, a single byte Range."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Response
from fastapi.responses import StreamingResponse

from store.blobs import BlobStore
from web.errors import ApiError


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range


def _unsatisfiable(size: int) -> ApiError:
    message = f"the range is outside the {size} bytes of the file"
    return ApiError(416, "range_not_satisfiable", message, "Range",
                    headers={"Content-Range": f"bytes */{size}"})


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range asked for, or None to send the whole body.

    Other units, several ranges and malformed headers are ignored, as RFC 9110 allows.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip().lower() != "bytes" or "," in spec or not dash:
        return None
    try:
        if not first:  # "bytes=-N": the last N bytes
            if int(last) <= 0:
                raise _unsatisfiable(size)
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    if start < 0 or start >= size or start > end:
        raise _unsatisfiable(size)
    return ByteRange(start, end)


def _matches(etag: str, header: str | None) -> bool:
    return header is not None and (header.strip() == "*" or etag in {t.strip() for t in header.split(",")})


def blob_download(blobs: BlobStore, *, key: str, sha256: str, filename: str, media_type: str,
                  range_header: str | None, if_range: str | None, if_none_match: str | None) -> Response:
    """The blob's bytes (or the asked range) with its checksum, ETag and range headers."""
    size = blobs.size(key)
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Accept-Ranges": "bytes", "X-Checksum-SHA256": sha256,
               "Content-Disposition": f'attachment; filename="{filename}"'}
    if _matches(etag, if_none_match):
        return Response(status_code=304, headers=headers)
    # If-Range with an old validator means "the file changed: send all of it".
    wanted = parse_range(range_header, size) if not if_range or if_range.strip() == etag else None
    if wanted is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(blobs.read_range(key, 0, None), media_type=media_type, headers=headers)
    headers["Content-Range"] = f"bytes {wanted.start}-{wanted.end}/{size}"
    headers["Content-Length"] = str(wanted.end - wanted.start + 1)
    return StreamingResponse(blobs.read_range(key, wanted.start, wanted.end + 1), status_code=206,
                             media_type=media_type, headers=headers)
