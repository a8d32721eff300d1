"""Our own redis-server and PostgreSQL instances, on free loopback ports, that tests may kill and restart.

They never touch the machine's shared servers: each lives in its own temp folder, listens on a port
picked at start, and is stopped by its own PID (Redis) or data directory (PostgreSQL). Where the
binaries are missing the calling test skips with the reason (fails with DQB_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.services import require_or_skip

START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class OwnRedis:
    """A redis-server without persistence: a restart loses every queued message (the worst case)."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.folder)]
        with open(self.folder / "redis.log", "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        _wait_port(self.port)

    def kill(self) -> None:
        """SIGKILL our server (by its PID): queued messages die with it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.start()


@contextmanager
def own_redis() -> Iterator[OwnRedis]:
    binary = shutil.which("redis-server")
    require_or_skip(binary is not None, "redis-server is not installed, so no test can restart one")
    assert binary is not None
    with tempfile.TemporaryDirectory(prefix="dqb-redis-") as folder:
        server = OwnRedis(binary, Path(folder))
        server.start()
        try:
            yield server
        finally:
            server.kill()


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or ([shutil.which("initdb")]
                                                                       if shutil.which("initdb") else [])
    return Path(found[-1]).parent if found else None


class OwnPostgres:
    """An initdb'ed cluster in a temp folder (trust auth, user postgres, no fsync: tests only)."""

    def __init__(self, bin_dir: Path, folder: Path) -> None:
        self.bin_dir, self.folder, self.port = bin_dir, folder, free_port()
        self.data = folder / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "pg.log"), "-w",
                  "-t", "60", "start")
        _wait_port(self.port)

    def stop(self, mode: str = "fast") -> None:
        """Stop our cluster by its data directory; `immediate` is a crash (no clean shutdown)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop("immediate")
        time.sleep(down_seconds)
        self.start()


@contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    bin_dir = _postgres_bin()
    require_or_skip(bin_dir is not None, "PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    assert bin_dir is not None
    folder = Path(tempfile.mkdtemp(prefix="dqb-pg-"))  # not under pytest's 0700 root: postgres must enter it
    server = OwnPostgres(bin_dir, folder)
    try:
        server.init()
        server.start()
        yield server
    finally:
        try:
            server.stop("immediate")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
