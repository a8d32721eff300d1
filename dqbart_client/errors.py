"""Typed exceptions: each API error carries the service's `code`, `message` and `param`."""

from __future__ import annotations

import httpx


class DqbartError(Exception):
    """Base of every error this client raises."""


class APIConnectionError(DqbartError):
    """The service could not be reached, or the connection broke mid-answer."""


class ChecksumMismatchError(DqbartError):
    """A download's bytes do not hash to the X-Checksum-SHA256 the service sent."""


class APIStatusError(DqbartError):
    """The service answered 4xx/5xx with {"error": {"code", "message", "param"}}."""

    status_code: int = 0

    def __init__(self, status_code: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(f"{code}: {message}" + (f" (param: {param})" if param else ""))
        self.status_code, self.code, self.message, self.param = status_code, code, message, param


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class ConflictError(APIStatusError):
    pass


class PayloadTooLargeError(APIStatusError):
    pass


class UnprocessableEntityError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: ConflictError, 413: PayloadTooLargeError, 422: UnprocessableEntityError, 429: RateLimitError,
}


def error_from_response(response: httpx.Response) -> APIStatusError:
    """The typed error for a 4xx/5xx answer; bodies not in our shape (a proxy's page) still map."""
    status = response.status_code
    cls = _BY_STATUS.get(status, InternalServerError if status >= 500 else APIStatusError)
    try:
        detail = response.json()["error"]
        code, message, param = str(detail["code"]), str(detail["message"]), detail.get("param")
    except (ValueError, KeyError, TypeError):
        code, message, param = f"http_{status}", response.text[:500] or response.reason_phrase, None
    return cls(status, code, message, param)
