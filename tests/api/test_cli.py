"""The `dqbart` console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.cli import build_parser, worker_command
from store import tenants
from store.db import session_scope
from store.settings import Settings

DQBART = str(Path(sys.executable).with_name("dqbart"))


def run_dqbart(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DQB_DATA_DIR": str(data_dir)}
    env.pop("DQB_DATABASE_URL", None)
    return subprocess.run([DQBART, *args], env=env, capture_output=True, text=True, timeout=60, check=True)


def test_keys_create_prints_a_working_key_alone_on_the_last_line(tmp_path: Path) -> None:
    done = run_dqbart(tmp_path, "keys", "create", "--tenant", "acme")
    key = done.stdout.strip().splitlines()[-1]
    assert key.startswith("dqb_") and " " not in key
    with session_scope(Settings(DATA_DIR=tmp_path)) as session:
        tenant = tenants.tenant_for_key(session, key=key)
        assert tenant is not None and tenant.name == "acme"


def test_second_key_for_the_same_tenant_reuses_the_tenant(tmp_path: Path) -> None:
    first = run_dqbart(tmp_path, "keys", "create", "--tenant", "acme").stdout.splitlines()[-1]
    second = run_dqbart(tmp_path, "keys", "create", "--tenant", "acme").stdout.splitlines()[-1]
    with session_scope(Settings(DATA_DIR=tmp_path)) as session:
        owners = {tenants.tenant_for_key(session, key=k).id for k in (first, second)}  # type: ignore[union-attr]
    assert first != second and len(owners) == 1


@pytest.mark.parametrize("argv", [
    ["serve", "--port", "9000"], ["api", "--workers", "2"], ["worker"], ["migrate"],
    ["keys", "create", "--tenant", "t"], ["keys", "revoke", "key_1", "--tenant", "t"],
])
def test_every_documented_subcommand_parses(argv: list[str]) -> None:
    assert callable(build_parser().parse_args(argv).run)


def test_worker_runs_one_job_at_a_time_by_default() -> None:
    command = worker_command()
    assert command[1:5] == ["-m", "celery", "-A", "worker.main"]
    assert command[command.index("--concurrency") + 1] == "1"
