"""A small HTTP client for the service's REST API (DESIGN.md §5), as a user would write it."""

from __future__ import annotations

import hashlib
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

TERMINAL = ("succeeded", "failed", "cancelled", "user_error")


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status


class ChecksumMismatch(RuntimeError):
    pass


@dataclass(frozen=True)
class Download:
    path: Path
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Summaries:
    texts: list[str]
    seconds: float


class DqbartClient:
    def __init__(self, base_url: str, api_key: str, timeout: float = 300.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise ApiError(response.status_code, response.text)
        return response.json()

    def _upload(self, route: str, path: Path, name: str) -> dict[str, Any]:
        with path.open("rb") as f:
            return self._json(self.http.post(route, files={"file": (path.name, f)}, data={"name": name}))

    def upload_dataset(self, path: Path, name: str) -> dict[str, Any]:
        return self._upload("/v1/datasets", path, name)

    def upload_model(self, archive: Path, name: str) -> dict[str, Any]:
        return self._upload("/v1/models", archive, name)

    def create_job(self, recipe: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json(self.http.post("/v1/jobs", json=recipe, headers=headers))

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/v1/jobs/{job_id}"))

    def cancel(self, job_id: str) -> None:
        self.http.post(f"/v1/jobs/{job_id}/cancel")

    def events(self, job_id: str, after: int | None = None) -> list[dict[str, Any]]:
        """Every event after the id `after` (oldest first), following the cursor pages."""
        events: list[dict[str, Any]] = []
        while True:
            params: dict[str, Any] = {"limit": 1000, **({"after": after} if after is not None else {})}
            page = self._json(self.http.get(f"/v1/jobs/{job_id}/events", params=params))
            events += page["data"]
            if not page["has_more"] or not page["data"]:
                return events
            after = page["data"][-1]["id"]

    def model(self, model_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/v1/models/{model_id}"))

    def download(self, model_id: str, dest: Path) -> Download:
        """Stream the artifact to `dest` and check it against the X-Checksum-SHA256 header."""
        digest = hashlib.sha256()
        size = 0
        with self.http.stream("GET", f"/v1/models/{model_id}/download") as response:
            if response.status_code >= 400:
                raise ApiError(response.status_code, response.read().decode(errors="replace"))
            expected = response.headers.get("X-Checksum-SHA256", "")
            with dest.open("wb") as f:
                for chunk in response.iter_bytes(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                    f.write(chunk)
        if digest.hexdigest() != expected.lower():
            raise ChecksumMismatch(f"{dest.name}: body sha256 {digest.hexdigest()} != header {expected!r}")
        return Download(dest, expected.lower(), size)

    def summarize(self, model_id: str, inputs: list[str],
                  parameters: dict[str, Any] | None = None) -> Summaries:
        start = time.perf_counter()
        body = self._json(self.http.post(f"/v1/models/{model_id}/summarize",
                                         json={"inputs": inputs, "parameters": parameters or {}}))
        seconds = time.perf_counter() - start
        return Summaries([item["summary_text"] for item in body], seconds)


def tar_directory(src: Path, archive: Path) -> Path:
    """A .tar of the files of a Hugging Face directory, at the archive's top level."""
    with tarfile.open(archive, "w") as tar:
        for path in sorted(src.iterdir()):
            if path.is_file():
                tar.add(path, arcname=path.name)
    return archive


def extract_tar(archive: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest

