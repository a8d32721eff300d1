from __future__ import annotations

from pathlib import Path

import pytest

from store.ids import new_id
from store.settings import Settings


def test_paths_and_urls_derive_from_data_dir(tmp_path: Path) -> None:
    settings = Settings(DATA_DIR=tmp_path)
    assert f"sqlite:///{tmp_path / 'dqbart.db'}" == settings.DATABASE_URL
    assert settings.artifact_dir == tmp_path / "artifacts"
    assert settings.broker_dir == tmp_path / "broker"


def test_settings_read_env_vars_with_the_dqb_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DQB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DQB_HEARTBEAT_SECONDS", "2")
    settings = Settings()
    assert tmp_path == settings.DATA_DIR and settings.HEARTBEAT_SECONDS == 2


def test_heartbeat_must_be_shorter_than_the_stale_limit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="STALE_AFTER_SECONDS"):
        Settings(DATA_DIR=tmp_path, HEARTBEAT_SECONDS=10, STALE_AFTER_SECONDS=5)


def test_ids_carry_their_prefix_and_sort_in_creation_order() -> None:
    ids = [new_id("job") for _ in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i.startswith("job_") and len(i) == 30 for i in ids)
