"""`Client`: one API key, one base URL, the resources as attributes (client.models, .datasets, .jobs)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from dqbart_client.errors import APIConnectionError, DqbartError, error_from_response
from dqbart_client.resources import Datasets, Jobs, Models, Sweeps

DEFAULT_BASE_URL = "http://127.0.0.1:8000"  # where `dqbart serve` listens by default
DEFAULT_TIMEOUT_S = 300.0  # uploads of large teachers and first inference calls (model load) are slow
T = TypeVar("T", bound=BaseModel)


class Client:
    """A client of the dqbart REST API.

    `base_url` and `api_key` default to the environment variables DQB_API_URL and DQB_API_KEY.
    `http_client` replaces the underlying httpx.Client (its base URL is then used as it is).
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT_S, http_client: httpx.Client | None = None) -> None:
        api_key = api_key or os.environ.get("DQB_API_KEY")
        if not api_key:
            raise DqbartError("no API key: pass api_key= or set DQB_API_KEY "
                              "(an operator makes one with: dqbart keys create --tenant NAME)")
        self.base_url = base_url or os.environ.get("DQB_API_URL") or DEFAULT_BASE_URL
        self._http = http_client or httpx.Client(base_url=self.base_url, timeout=timeout)
        self._owns_http = http_client is None
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self.models = Models(self)
        self.datasets = Datasets(self)
        self.jobs = Jobs(self)
        self.sweeps = Sweeps(self)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call; a 4xx/5xx answer raises its typed APIStatusError."""
        headers = {**self._headers, **kwargs.pop("headers", {})}
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise APIConnectionError(f"{method} {path}: {exc}") from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def stream(self, method: str, path: str, *, headers: dict[str, str], params: dict[str, str]) -> Any:
        """httpx's streaming context manager, with our key (status checked by the caller)."""
        return self._http.stream(method, path, headers={**self._headers, **headers}, params=params)

    def get_object(self, path: str, cls: type[T], **kwargs: Any) -> T:
        return cls.model_validate(self.request("GET", path, **kwargs).json())

    def paginate(self, path: str, cls: type[T], *, page_size: int = 100, id_field: str = "id",
                 params: dict[str, Any] | None = None) -> Iterator[T]:
        """Every item of a cursor-paged list ({data, has_more}), fetching pages as they are read."""
        after: Any = None
        while True:
            query = {**(params or {}), "limit": page_size, **({"after": after} if after is not None else {})}
            page = self.request("GET", path, params=query).json()
            items = [cls.model_validate(item) for item in page["data"]]
            yield from items
            if not page["has_more"] or not items:
                return
            after = getattr(items[-1], id_field)

    def summarize(self, model: str, texts: str | Sequence[str], **parameters: Any) -> list[str]:
        """One summary per text; `parameters` are generation settings (num_beams, max_length...)."""
        return self._infer(model, "summarize", "summary_text", texts, parameters)

    def translate(self, model: str, texts: str | Sequence[str], **parameters: Any) -> list[str]:
        return self._infer(model, "translate", "translation_text", texts, parameters)

    def _infer(self, model: str, route: str, field: str, texts: str | Sequence[str],
               parameters: dict[str, Any]) -> list[str]:
        inputs = [texts] if isinstance(texts, str) else list(texts)
        body = {"inputs": inputs, "parameters": parameters}
        answer = self.request("POST", f"/v1/models/{model}/{route}", json=body).json()
        return [str(item[field]) for item in answer]

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
