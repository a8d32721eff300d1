"""Start the service in embedded mode (`dqbart serve`) for the demo, and stop it again."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dqbart_command() -> list[str]:
    """The `dqbart` console script of the running interpreter's environment."""
    script = Path(sys.executable).with_name("dqbart")
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


@dataclass
class EmbeddedService:
    """One `dqbart serve` process group (API + workers) on a local port, with its own DATA_DIR."""

    data_dir: Path
    log_path: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    env_defaults: dict[str, str] = field(default_factory=dict)  # settings the user's environment may override
    workers: int = 1

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {**self.env_defaults, **os.environ, "DQB_DATA_DIR": str(self.data_dir)}

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = self.log_path.open("ab")
        # A session of its own, so that stop() reaches the worker the server starts as well.
        self.process = subprocess.Popen(
            [*dqbart_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(self.workers)],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"dqbart serve exited with code {code}; see {self.log_path}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"dqbart serve did not answer /health within {STARTUP_TIMEOUT_S:.0f} s; "
                           f"see {self.log_path}")

    def create_key(self, tenant: str) -> str:
        """`dqbart keys create` prints the new key alone on its last line."""
        done = subprocess.run([*dqbart_command(), "keys", "create", "--tenant", tenant], env=self.env(),
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"dqbart keys create failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout.strip().splitlines()[-1].strip()

    def stop(self) -> None:
        """SIGTERM to the process group we started, SIGKILL if it does not leave in time."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)
        # The worker may outlive the server by a moment; the group id is still ours to end.
        _signal_group(process.pid, signal.SIGKILL)

    def __enter__(self) -> EmbeddedService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
