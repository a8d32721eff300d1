"""An interrupted `make demo` resumes its teacher's training job on the next run instead of starting
over: the job is left unfinished (not cancelled), noted in the service's folder, and followed again."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from demo import run
from demo.plan import QUICK_PLAN, DemoPlan
from demo.resume import TeacherJobNote, clean_up, prepare_data_dir
from dqbart_client import Job
from dqbart_client.errors import NotFoundError

KEY = "plan-key"


@dataclass
class FakeJobs:
    """The client's jobs resource, over jobs held in a dict; `wait` is interrupted while asked to."""

    jobs: dict[str, Job] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    interrupt: bool = False

    def create(self, recipe: dict[str, Any]) -> Job:
        job = Job(id=f"job_{len(self.created)}", status="queued", created_at=datetime.now(UTC), recipe=recipe)
        self.jobs[job.id] = job
        self.created.append(job.id)
        return job

    def get(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise NotFoundError(404, "not_found", f"no job with id {job_id!r}", "id")
        return self.jobs[job_id]

    def wait(self, job_id: str, on_progress: Any = None) -> Job:
        if self.interrupt:
            raise KeyboardInterrupt
        self.jobs[job_id] = self.jobs[job_id].model_copy(update={"status": "succeeded"})
        return self.jobs[job_id]

    def cancel(self, job_id: str) -> Job:
        self.cancelled.append(job_id)
        return self.jobs[job_id]


class FakeModels:
    def upload(self, path: Path, name: str) -> Any:
        return type("Model", (), {"id": "mdl_initial"})


@dataclass
class FakeClient:
    jobs: FakeJobs = field(default_factory=FakeJobs)
    models: FakeModels = field(default_factory=FakeModels)


@pytest.fixture
def plan(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> DemoPlan:
    """The quick plan, building no teacher: building and uploading it is not what these tests are about."""
    monkeypatch.setattr(run, "say", lambda text="": None)
    return replace(QUICK_PLAN, task=replace(QUICK_PLAN.task, build=lambda out, shape: tmp_path))


def train(client: FakeClient, note: TeacherJobNote, tmp_path: Path, plan: DemoPlan) -> Job:
    ids = {"train": "ds_train", "validation": "ds_validation"}
    return run.train_teacher(client, plan, ids, tmp_path, note, KEY)  # type: ignore[arg-type]


def test_an_interrupted_teacher_job_is_left_running_and_noted(tmp_path: Path, plan: DemoPlan) -> None:
    client, note = FakeClient(FakeJobs(interrupt=True)), TeacherJobNote(tmp_path / "service")
    with pytest.raises(KeyboardInterrupt):
        train(client, note, tmp_path, plan)
    assert client.jobs.cancelled == []
    assert note.pending(KEY) == client.jobs.created[0]


def test_the_next_run_follows_the_same_job_instead_of_starting_over(tmp_path: Path, plan: DemoPlan) -> None:
    client, note = FakeClient(FakeJobs(interrupt=True)), TeacherJobNote(tmp_path / "service")
    with pytest.raises(KeyboardInterrupt):
        train(client, note, tmp_path, plan)
    client.jobs.interrupt = False
    job = train(client, note, tmp_path, plan)
    assert job.status == "succeeded" and client.jobs.created == [job.id]
    assert note.pending(KEY) is None  # finished: nothing left to resume


@pytest.mark.parametrize("left", ["failed", "cancelled", "user_error", "gone"])
def test_a_teacher_job_that_cannot_succeed_any_more_is_trained_afresh(tmp_path: Path, plan: DemoPlan,
                                                                      left: str) -> None:
    client, note = FakeClient(), TeacherJobNote(tmp_path / "service")
    old = client.jobs.create({})
    client.jobs.jobs[old.id] = old.model_copy(update={"status": left})
    if left == "gone":
        del client.jobs.jobs[old.id]
    note.remember(KEY, old.id)
    job = train(client, note, tmp_path, plan)
    assert job.id != old.id and client.jobs.created == [old.id, job.id]


def test_a_note_for_another_plan_is_not_resumed(tmp_path: Path) -> None:
    note = TeacherJobNote(tmp_path)
    note.remember("other-plan", "job_1")
    assert note.pending(KEY) is None and note.pending("other-plan") == "job_1"


def test_the_demo_folder_is_kept_only_while_a_teacher_job_waits_to_resume(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo-service"
    (data_dir / "jobs").mkdir(parents=True)
    TeacherJobNote(data_dir).remember(KEY, "job_1")
    prepare_data_dir(data_dir, owned=True)
    assert (data_dir / "jobs").is_dir()  # kept: the next run resumes from it
    assert clean_up(data_dir, owned=True) and data_dir.is_dir()
    TeacherJobNote(data_dir).forget()
    assert not clean_up(data_dir, owned=True) and not data_dir.exists()


def test_a_folder_the_user_named_is_never_emptied(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    prepare_data_dir(tmp_path, owned=False)
    clean_up(tmp_path, owned=False)
    assert (tmp_path / "keep.txt").read_text() == "mine"
