"""Resuming the demo teacher's training after an interrupted `make demo`.

The teacher trains as a job of the demo's own service, which checkpoints it. An interrupted run
leaves that job unfinished in the service's DATA_DIR (kept in the user cache) with a note of its id;
the next run starts the service on the same folder, where the worker finds the job orphaned and
resumes it from its last checkpoint.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from demo.cache import cache_root

NOTE = "teacher-job.json"
# One local worker: a job still marked running when the service starts was left by a killed run,
# so the worker may take it back within seconds instead of the service's default minute.
FAST_RECOVERY = {"DQB_HEARTBEAT_SECONDS": "3", "DQB_STALE_AFTER_SECONDS": "15", "DQB_RECONCILE_SECONDS": "5"}


def default_data_dir() -> Path:
    return cache_root() / "demo-service"


@dataclass(frozen=True)
class TeacherJobNote:
    """Which job trains the teacher for which plan (the teacher cache key), in the service's folder."""

    data_dir: Path

    @property
    def path(self) -> Path:
        return self.data_dir / NOTE

    def pending(self, key: str) -> str | None:
        """The unfinished teacher job of this plan, if an earlier run left one."""
        try:
            note = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return str(note["job_id"]) if isinstance(note, dict) and note.get("key") == key else None

    def remember(self, key: str, job_id: str) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps({"key": key, "job_id": job_id}) + "\n", encoding="utf-8")
        partial.replace(self.path)

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)


def prepare_data_dir(data_dir: Path, *, owned: bool) -> None:
    """Start the demo's own folder afresh unless it holds a teacher job to resume; a folder the
    user named (`--data-dir`) is never emptied."""
    if owned and data_dir.exists() and not TeacherJobNote(data_dir).path.exists():
        shutil.rmtree(data_dir)


def clean_up(data_dir: Path, *, owned: bool) -> bool:
    """After the run: remove the demo's own folder unless a teacher job waits in it to resume;
    True where it was kept for that."""
    kept = TeacherJobNote(data_dir).path.exists()
    if owned and not kept:
        shutil.rmtree(data_dir, ignore_errors=True)
    return kept
