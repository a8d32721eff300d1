"""kill -9 of the API in the middle of an upload: after a restart the temporaries are gone and
nothing of the upload is visible."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from store.db import upgrade_database
from store.settings import Settings
from tests.reliability import hostile
from tests.service.conftest import client_for, free_port, service_env, start, wait_healthy

pytestmark = pytest.mark.slow
SENT_BEFORE_THE_KILL = 8 * 1024 * 1024
BOUNDARY = b"crash-test"


def _stalled_body(release: threading.Event) -> Iterator[bytes]:
    """A dataset upload that sends 8 MB of its file part, then waits (as a slow client would)."""
    yield hostile.multipart([(b'Content-Disposition: form-data; name="file"; filename="big.jsonl"', b"")],
                            BOUNDARY)[:-len(BOUNDARY) - 8]
    for _ in range(SENT_BEFORE_THE_KILL // 65536):
        yield hostile.jsonl(1) * (65536 // len(hostile.jsonl(1)))
    release.wait(60)


def _upload_in_background(client: httpx.Client, release: threading.Event) -> threading.Thread:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}"}

    def send() -> None:
        with contextlib.suppress(httpx.TransportError):  # the server dies under it
            client.post("/v1/datasets", headers=headers, content=_stalled_body(release))

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def _wait_for_bytes(tmp: Path, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(p.stat().st_size for p in tmp.glob("upload-*")) >= at_least:
            return
        time.sleep(0.05)
    raise TimeoutError(f"the upload never reached {at_least} bytes in {tmp}")


def test_temporaries_of_an_api_killed_mid_upload_are_swept_at_restart(tmp_path: Path) -> None:
    settings = Settings(DATA_DIR=tmp_path / "data")
    upgrade_database(settings)
    env, port = service_env(settings), free_port()
    base_url, log = f"http://127.0.0.1:{port}", tmp_path / "api.log"
    args = ["api", "--host", "127.0.0.1", "--port", str(port)]
    release = threading.Event()
    with ExitStack() as stack:
        api = start(stack, args, env, log)
        wait_healthy(base_url, api, log)
        client = stack.enter_context(client_for(settings, base_url, "crash"))
        uploader = _upload_in_background(client, release)
        _wait_for_bytes(settings.tmp_dir, SENT_BEFORE_THE_KILL // 2)
        api.send_signal(signal.SIGKILL)
        api.wait()
        release.set()
        uploader.join(30)
        orphans = list(settings.tmp_dir.iterdir())
        assert orphans, "the kill left nothing behind: the test did not catch the upload mid-way"

        restarted = start(stack, args, env, log)
        wait_healthy(base_url, restarted, log)
        assert list(settings.tmp_dir.iterdir()) == []
        assert client.get("/v1/datasets").json()["data"] == []
        assert f"dqbart_tmp_swept_entries_total {float(len(orphans))}" in client.get("/metrics").text
