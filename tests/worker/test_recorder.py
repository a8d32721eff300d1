"""What a running job's events may say: nothing about where the server keeps its files."""

from __future__ import annotations

from pathlib import Path

from store.settings import Settings
from worker.recorder import public_text


def test_server_folders_are_cut_from_event_messages(tmp_path: Path) -> None:
    settings = Settings(DATA_DIR=tmp_path / "srv")
    message = f"writing the artifact to {settings.work_dir / 'job_1' / 'artifact'}"
    assert public_text(settings, message) == "writing the artifact to …/job_1/artifact"


def test_a_relative_data_dir_is_cut_in_both_spellings() -> None:
    settings = Settings(DATA_DIR=Path(".dqbart"))
    text = public_text(settings, f"saved {settings.checkpoint_dir.resolve()} and {settings.checkpoint_dir}")
    assert text == "saved … and …"
