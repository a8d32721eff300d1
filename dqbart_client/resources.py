"""client.models, client.datasets and client.jobs: one class per resource of the REST API."""

from __future__ import annotations

import builtins
import hashlib
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import httpx

from dqbart_client.archives import tar_directory
from dqbart_client.errors import APIConnectionError, ChecksumMismatchError, error_from_response
from dqbart_client.types import Checkpoint, Dataset, Download, Event, Job, MetricPoint, Model, Sweep

if TYPE_CHECKING:
    from dqbart_client._client import Client

ProgressCallback = Callable[[Job, list[Event]], None]
DOWNLOAD_CHUNK = 1 << 20
DOWNLOAD_RETRIES = 3  # a cut connection resumes with Range this many times before giving up


def _upload(client: Client, route: str, file: BinaryIO, filename: str, name: str | None) -> dict[str, Any]:
    data = {"name": name} if name else {}
    return dict(client.request("POST", route, files={"file": (filename, file)}, data=data).json())


class Models:
    def __init__(self, client: Client) -> None:
        self._client = client

    def upload(self, path: str | Path, name: str | None = None) -> Model:
        """A teacher: a Hugging Face BART/mBART folder (sent as a .tar) or a .tar/.tar.gz/.zip of one."""
        path = Path(path)
        with ExitStack() as stack:
            if path.is_dir():
                file: BinaryIO = stack.enter_context(tempfile.TemporaryFile())
                tar_directory(path, file)
                filename = f"{path.name or 'model'}.tar"
            else:
                file, filename = stack.enter_context(path.open("rb")), path.name
            body = _upload(self._client, "/v1/models", file, filename, name or path.name)
        return Model.model_validate(body)

    def list(self) -> Iterator[Model]:
        """Every model (uploads and compression results), newest first, page by page."""
        return self._client.paginate("/v1/models", Model)

    def get(self, model_id: str) -> Model:
        return self._client.get_object(f"/v1/models/{model_id}", Model)

    def download(self, model_id: str, dest: str | Path, *, verify: bool = True,
                 format: str = "artifact") -> Download:
        """The model as one .tar at `dest`. Bytes land in `dest`.part first; a cut connection (or
        an earlier interrupted call) resumes from there with Range. With `verify`, the file's
        SHA-256 must match the X-Checksum-SHA256 header, else ChecksumMismatchError (nothing kept)."""
        dest = Path(dest)
        partial = dest.with_name(dest.name + ".part")
        resumed_from = partial.stat().st_size if partial.exists() else 0
        for attempt in range(DOWNLOAD_RETRIES + 1):
            try:
                expected = self._fetch(f"/v1/models/{model_id}/download", partial, {"format": format})
                break
            except APIConnectionError:
                if attempt == DOWNLOAD_RETRIES:
                    raise
        digest = _sha256(partial)
        if verify and digest != expected.lower():
            partial.unlink()
            raise ChecksumMismatchError(f"{dest.name}: the body hashes to {digest}, "
                                        f"the service sent {expected!r}")
        partial.replace(dest)
        return Download(path=dest, sha256=digest, bytes=dest.stat().st_size, resumed_from=resumed_from)

    def _fetch(self, route: str, partial: Path, params: dict[str, str]) -> str:
        """Append the rest of the file to `partial` (all of it on a 200); the announced SHA-256."""
        offset = partial.stat().st_size if partial.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with self._client.stream("GET", route, headers=headers, params=params) as response:
                if response.status_code == 416:  # the part file is already whole (or wrong): start over
                    partial.unlink()
                    return self._fetch(route, partial, params)
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response)
                with partial.open("ab" if response.status_code == 206 else "wb") as out:
                    for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                        out.write(chunk)
                return str(response.headers.get("X-Checksum-SHA256", ""))
        except httpx.TransportError as exc:  # also raised while the body streams
            raise APIConnectionError(f"the download from {route} was cut: {exc}") from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(DOWNLOAD_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Datasets:
    def __init__(self, client: Client) -> None:
        self._client = client

    def upload(self, path: str | Path, name: str | None = None) -> Dataset:
        """A .jsonl (one JSON object per line) or .csv (with a header) file."""
        path = Path(path)
        with path.open("rb") as file:
            return Dataset.model_validate(_upload(self._client, "/v1/datasets", file, path.name, name))

    def list(self) -> Iterator[Dataset]:
        return self._client.paginate("/v1/datasets", Dataset)

    def get(self, dataset_id: str) -> Dataset:
        return self._client.get_object(f"/v1/datasets/{dataset_id}", Dataset)


class Jobs:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, recipe: Mapping[str, Any], idempotency_key: str | None = None) -> Job:
        """Submit a recipe (teacher {"model": ID}, dataset {"dataset": ID}); a replayed
        idempotency_key returns the first job instead of a second one."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Job.model_validate(self._client.request("POST", "/v1/jobs", json=dict(recipe),
                                                       headers=headers).json())

    def get(self, job_id: str) -> Job:
        return self._client.get_object(f"/v1/jobs/{job_id}", Job)

    def list(self) -> Iterator[Job]:
        """Every job, newest first, page by page."""
        return self._client.paginate("/v1/jobs", Job)

    def cancel(self, job_id: str) -> Job:
        return Job.model_validate(self._client.request("POST", f"/v1/jobs/{job_id}/cancel").json())

    def events(self, job_id: str, after: int | None = None) -> builtins.list[Event]:
        """Every event after the event id `after`, oldest first."""
        params = {"after": after} if after is not None else {}
        return list(self._client.paginate(f"/v1/jobs/{job_id}/events", Event, page_size=1000, params=params))

    def metrics(self, job_id: str, name: str | None = None) -> builtins.list[MetricPoint]:
        """Every logged value (loss components, eval metrics), by name then step."""
        params = {"name": name} if name else {}
        body = self._client.request("GET", f"/v1/jobs/{job_id}/metrics", params=params).json()
        return [MetricPoint.model_validate(point) for point in body["data"]]

    def checkpoints(self, job_id: str) -> builtins.list[Checkpoint]:
        body = self._client.request("GET", f"/v1/jobs/{job_id}/checkpoints").json()
        return [Checkpoint.model_validate(point) for point in body["data"]]

    def wait(self, job_id: str, *, on_progress: ProgressCallback | None = None, poll_interval: float = 1.0,
             timeout: float | None = None) -> Job:
        """Poll until the job ends and return it; `on_progress(job, new_events)` after each poll.
        Raises TimeoutError after `timeout` seconds (the job goes on)."""
        last_event: int | None = None

        def poll() -> Job:
            nonlocal last_event
            job = self.get(job_id)
            events = self.events(job_id, after=last_event)
            last_event = events[-1].id if events else last_event
            if on_progress is not None:
                on_progress(job, events)
            return job

        return _poll_until_done(poll, poll_interval, timeout, f"job {job_id}")


class Sweeps:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, sweep: Mapping[str, Any], idempotency_key: str | None = None) -> Sweep:
        """Submit a sweep: {recipe, axes, gate, objective, strategy, budget}; a replayed
        idempotency_key returns the first sweep instead of a second one."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Sweep.model_validate(self._client.request("POST", "/v1/sweeps", json=dict(sweep),
                                                         headers=headers).json())

    def get(self, sweep_id: str) -> Sweep:
        return self._client.get_object(f"/v1/sweeps/{sweep_id}", Sweep)

    def list(self) -> Iterator[Sweep]:
        """Every sweep, newest first, page by page."""
        return self._client.paginate("/v1/sweeps", Sweep)

    def cancel(self, sweep_id: str) -> Sweep:
        return Sweep.model_validate(self._client.request("POST", f"/v1/sweeps/{sweep_id}/cancel").json())

    def wait(self, sweep_id: str, *, on_progress: Callable[[Sweep], None] | None = None,
             poll_interval: float = 2.0, timeout: float | None = None) -> Sweep:
        """Poll until the sweep ends and return it; `on_progress(sweep)` after each poll. Raises
        TimeoutError after `timeout` seconds (the sweep goes on)."""

        def poll() -> Sweep:
            sweep = self.get(sweep_id)
            if on_progress is not None:
                on_progress(sweep)
            return sweep

        return _poll_until_done(poll, poll_interval, timeout, f"sweep {sweep_id}")


Polled = TypeVar("Polled", Job, Sweep)


def _poll_until_done(poll: Callable[[], Polled], interval: float, timeout: float | None, what: str) -> Polled:
    """`poll()` every `interval` seconds until what it returns is done; TimeoutError after `timeout`."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        item = poll()
        if item.done:
            return item
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{what} is still {item.status} after {timeout} s")
        time.sleep(interval)
