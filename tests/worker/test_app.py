"""The Celery app's settings: embedded broker folders under DATA_DIR, reliable delivery options."""

from __future__ import annotations

from pathlib import Path
from queue import Empty

import pytest

from store.settings import Settings
from worker import fsbroker
from worker.app import broker_options, make_celery


def test_filesystem_broker_keeps_every_folder_under_data_dir(tmp_path: Path) -> None:
    options = broker_options(Settings(DATA_DIR=tmp_path))
    keys = ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")
    folders = [Path(options[k]) for k in keys]
    assert all(f.is_dir() and f.is_relative_to(tmp_path / "broker") for f in folders)
    assert options["polling_interval"] == 0.1


def test_redis_broker_redelivers_unacked_messages(tmp_path: Path) -> None:
    options = broker_options(Settings(DATA_DIR=tmp_path, BROKER_URL="redis://127.0.0.1:6379/0"))
    assert options["visibility_timeout"] >= 300


def test_tasks_are_acked_late_one_at_a_time_as_json(tmp_path: Path) -> None:
    conf = make_celery(Settings(DATA_DIR=tmp_path)).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_ignore_result


def test_the_embedded_broker_is_our_filesystem_transport(tmp_path: Path) -> None:
    with make_celery(Settings(DATA_DIR=tmp_path)).connection_for_write() as connection:
        assert isinstance(connection.default_channel, fsbroker.Channel)


def test_a_message_appears_whole_and_a_half_written_one_is_never_read(tmp_path: Path) -> None:
    app = make_celery(Settings(DATA_DIR=tmp_path))
    queue = tmp_path / "broker" / "queue"
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        (queue / ".1_x.dqbart.msg.partial").write_bytes(b'{"body": ')  # a writer caught mid-message
        channel._put("dqbart", {"body": "whole"})
        visible = [p.name for p in queue.iterdir() if not p.name.startswith(".")]
        assert len(visible) == 1 and visible[0].endswith(".dqbart.msg")
        assert channel._get("dqbart") == {"body": "whole"}
        with pytest.raises(Empty):
            channel._get("dqbart")
