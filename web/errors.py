"""One error shape for every failure: {"error": {"code", "message", "param"}}."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from compression.errors import UserInputError

log = logging.getLogger("dqbart.api")

# Codes for the statuses that Starlette raises on its own (unknown route, wrong method...).
_STATUS_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
}


class ApiError(Exception):
    """An error the client should see, with its HTTP status."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers


def not_found(kind: str, object_id: str) -> ApiError:
    # Another tenant's object reads exactly like a missing one.
    return ApiError(404, "not_found", f"no {kind} with id {object_id!r}", "id")


def invalid(param: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request", message, param)


def error_body(code: str, message: str, param: str | None = None) -> dict[str, dict[str, str | None]]:
    return {"error": {"code": code, "message": message, "param": param}}


def error_response(status: int, code: str, message: str, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, param), status_code=status, headers=headers)


def _loc_to_param(loc: tuple[int | str, ...]) -> str | None:
    # ("body", "training", "lr") -> "training.lr"; ("query", "limit") -> "limit"
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    parts = [str(p) for p in loc]
    return ".".join(parts) or None


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, ApiError):
        raise exc
    return error_response(exc.status, exc.code, exc.message, exc.param, exc.headers)


async def _user_input_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, UserInputError):
        raise exc
    return error_response(400, "invalid_request", exc.message, exc.param)


def malformed_body(reason: str) -> JSONResponse:
    """Every body that does not parse as JSON gets this one answer, whatever broke the parse."""
    return error_response(422, "validation_error", f"the body is not JSON ({reason})")


def _parse_failure(exc: Exception) -> str | None:
    """Why FastAPI could not read a JSON body, when `exc` is its generic 400 for that; else None.

    The framework answers 422 for a syntax error but 400 for the same body with a byte that is not
    UTF-8 or with nesting deeper than the parser's recursion limit: one problem, one answer."""
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return f"not UTF-8: byte {cause.object[cause.start]:#04x} at offset {cause.start}"
    if isinstance(cause, RecursionError):
        return "nested too deeply"
    return None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):
        raise exc
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":  # its loc is a character position, not a field
        position = first.get("loc", ("body", "?"))[-1]
        return malformed_body(f"at character {position}")
    param = _loc_to_param(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    return error_response(422, "validation_error", f"{param}: {message}" if param else message, param)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):
        raise exc
    if exc.status_code == 400 and (reason := _parse_failure(exc)):
        return malformed_body(reason)
    code = _STATUS_CODES.get(exc.status_code, HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_"))
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, message, None, headers)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal server error; the request was logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(UserInputError, _user_input_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
