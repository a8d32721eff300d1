"""The bearer-key check both apps make before reading a body: a missing key and a key no tenant
owns both answer 401 in the error shape, with the challenge header."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from web.errors import ApiError

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer dqb_...`")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def presented_key(credentials: Credentials) -> str:
    """The key from `Authorization: Bearer <key>`; 401 when there is none."""
    if credentials is None:
        raise ApiError(401, "invalid_api_key", "missing API key: send `Authorization: Bearer <key>`",
                       headers=_CHALLENGE)
    return credentials.credentials


def unknown_key() -> ApiError:
    return ApiError(401, "invalid_api_key", "unknown or revoked API key", headers=_CHALLENGE)


PresentedKey = Annotated[str, Depends(presented_key)]
