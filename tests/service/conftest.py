"""The service as real processes: `dqbart api` (uvicorn) and `dqbart worker` (Celery), over HTTP.

One fixture, two modes with the same tests: embedded (SQLite + the filesystem broker, nothing to
install) and production (PostgreSQL + Redis; marked `services`, skipped when they are missing
unless DQB_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import gzip
import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from store import tenants
from store.db import session_scope
from store.settings import Settings
from tests.services import migrated_database, require_redis
from tests.tiny import SAMPLE_DIR, make_tiny_teacher

DQBART = str(Path(sys.executable).with_name("dqbart"))
STARTUP_TIMEOUT_S = 180.0  # a busy 2-core machine takes a minute to import torch
TERMINAL = ("succeeded", "failed", "cancelled", "user_error", "rejected")


@dataclass
class Service:
    base_url: str
    settings: Settings
    owner: httpx.Client  # the tenant that uploads and submits
    stranger: httpx.Client  # another tenant

    def wait_for_job(self, job_id: str, done: Callable[[dict[str, Any]], bool],
                     timeout: float) -> dict[str, Any]:
        """Poll until `done(job)` or a final status (or the timeout); the last job seen."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.owner.get(f"/v1/jobs/{job_id}").json()
            if done(job) or job["status"] in TERMINAL or time.monotonic() > deadline:
                return job
            time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(settings: Settings) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DQB_")}
    env.update({"DQB_DATA_DIR": str(settings.DATA_DIR), "DQB_DATABASE_URL": settings.DATABASE_URL,
                "DQB_BROKER_URL": settings.BROKER_URL, "DQB_DEVICE": "cpu", "DQB_HEARTBEAT_SECONDS": "1",
                "DQB_LOG_LEVEL": "INFO", "OMP_NUM_THREADS": "2"})
    return env


def start(stack: ExitStack, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen([DQBART, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    stack.callback(stop, process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_healthy(base_url: str, api: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise RuntimeError(f"dqbart api exited with {api.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"dqbart api did not become healthy:\n{log.read_text()[-3000:]}")


def client_for(settings: Settings, base_url: str, tenant: str) -> httpx.Client:
    with session_scope(settings) as session:
        tenant_id = tenants.get_or_create_tenant(session, name=tenant).id
        _, key = tenants.create_key(session, tenant_id=tenant_id)
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def print_logs(data_dir: Path) -> None:
    """Shown by pytest only when a test of the module failed."""
    for log in sorted(data_dir.glob("*.log")):
        print(f"----- {log.name} (last 4000 characters) -----\n{log.read_text(errors='replace')[-4000:]}")


@pytest.fixture(scope="module", params=["embedded", pytest.param("production", marks=pytest.mark.services)])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data_dir = tmp_path_factory.mktemp(f"service-{request.param}")
    backend = "sqlite" if request.param == "embedded" else "postgresql"
    # The broker is DQB_TEST_REDIS_URL's database as given: runs sharing a Redis server each name
    # their own, or one run's worker takes another run's tasks and its jobs never start.
    broker = "filesystem://" if request.param == "embedded" else require_redis()
    with migrated_database(backend, data_dir) as migrated, ExitStack() as stack:
        settings = Settings(DATA_DIR=data_dir, DATABASE_URL=migrated.DATABASE_URL, BROKER_URL=broker)
        env, port = service_env(settings), free_port()
        base_url = f"http://127.0.0.1:{port}"
        stack.callback(print_logs, data_dir)
        api = start(stack, ["api", "--host", "127.0.0.1", "--port", str(port)], env, data_dir / "api.log")
        start(stack, ["worker"], env, data_dir / "worker.log")
        wait_healthy(base_url, api, data_dir / "api.log")
        owner = stack.enter_context(client_for(settings, base_url, "owner"))
        stranger = stack.enter_context(client_for(settings, base_url, "stranger"))
        yield Service(base_url=base_url, settings=settings, owner=owner, stranger=stranger)


def sample_rows(split: str, count: int) -> bytes:
    with gzip.open(SAMPLE_DIR / f"{split}.jsonl.gz", "rt", encoding="utf-8") as f:
        return "".join(line for _, line in zip(range(count), f, strict=False)).encode()


@pytest.fixture(scope="module")
def uploads(service: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The owner's teacher, train and validation datasets: {"model", "train", "validation"} ids."""
    teacher = make_tiny_teacher(tmp_path_factory.mktemp("teacher"), encoder_layers=2, decoder_layers=2)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tf:
        tf.add(teacher, arcname="tiny-bart")
    ids = {"model": post_file(service.owner, "/v1/models", "tiny-bart.tar.gz", archive.getvalue())}
    for split, count in (("train", 48), ("validation", 12)):
        ids[split] = post_file(service.owner, "/v1/datasets", f"{split}.jsonl", sample_rows(split, count))
    return ids


def post_file(client: httpx.Client, path: str, filename: str, data: bytes) -> str:
    response = client.post(path, files={"file": (filename, data)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def tiny_recipe(uploads: dict[str, str], max_steps: int) -> dict[str, Any]:
    return {
        "teacher": {"model": uploads["model"]},
        "dataset": {"dataset": uploads["train"], "validation": uploads["validation"],
                    "source_field": "document", "target_field": "summary", "max_validation_samples": 4},
        "student": {"encoder_layers": 1, "decoder_layers": 1},
        "quantization": {"weight_bits": 2, "embedding_bits": 8, "activation_bits": 8},
        "training": {"max_steps": max_steps, "batch_size": 4, "checkpoint_every": 2, "log_every": 1,
                     "max_source_length": 64, "max_target_length": 16, "lr": 1e-3},
        "evaluation": {"num_beams": 1, "max_length": 8, "batch_size": 4},
    }

