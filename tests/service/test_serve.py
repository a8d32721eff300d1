"""`dqbart serve`: one command migrates, starts the API and one worker, prints the URL and a key."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import DQBART, free_port

pytestmark = pytest.mark.slow


def wait_for_line(log: Path, pattern: str, process: subprocess.Popen[bytes],
                  timeout: float = 60) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if match := re.search(pattern, log.read_text(errors="replace"), re.MULTILINE):
            return match
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"no line matching {pattern!r}:\n{log.read_text(errors='replace')[-3000:]}")


def test_serve_prints_url_and_key_and_stops_its_workers(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DQB_")} | {"DQB_DATA_DIR": str(tmp_path)}
    port, log = free_port(), tmp_path / "serve.log"
    with open(log, "wb") as out:
        serve = subprocess.Popen([DQBART, "serve", "--port", str(port), "--workers", "2"], env=env,
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        url = wait_for_line(log, r"^API:\s+(http://\S+)", serve).group(1)
        key = wait_for_line(log, r"^key:\s+(\S+)", serve).group(1)
        pids = wait_for_line(log, r"worker pids ([\d, ]+)", serve).group(1)
        worker_pids = [int(pid) for pid in pids.split(",")]
        wait_for_line(log, r"Uvicorn running", serve)
        assert url == f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
    assert serve.returncode == 0 and len(worker_pids) == 2
    for pid in worker_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert (tmp_path / "dqbart.db").is_file()
    assert (tmp_path / "dev-api-key").read_text().strip() == key
