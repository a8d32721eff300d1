"""A run whose loss overflows ends `user_error` at that step, naming the likely field, and stores
no model: a diverged run never "succeeds" with NaN weights."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import func, select
from transformers import AutoModelForSeq2SeqLM

from store import jobs
from store.db import session_scope
from store.models import Model
from store.settings import Settings
from tests.worker.conftest import make_installation
from worker.runner import run_job

OVERFLOWING = 3e38  # finite in fp32, so the upload and the loaders accept it; logits far apart overflow


def _teacher_whose_loss_overflows(teacher_dir: Path, out: Path) -> Path:
    shutil.copytree(teacher_dir, out)
    model = AutoModelForSeq2SeqLM.from_pretrained(str(teacher_dir))
    model.final_logits_bias[0, ::2] = OVERFLOWING
    model.final_logits_bias[0, 1::2] = -OVERFLOWING
    model.save_pretrained(str(out))
    return out


def test_a_diverging_run_ends_user_error_at_its_step_naming_the_learning_rate(
        fast_settings: Settings, tiny_teacher_dir: Path, sample_records: list[dict[str, str]],
        tmp_path: Path) -> None:
    teacher = _teacher_whose_loss_overflows(tiny_teacher_dir, tmp_path / "teacher")
    installation = make_installation(fast_settings, teacher, sample_records, tmp_path)
    job_id = installation.submit(installation.recipe())
    assert run_job(job_id, settings=fast_settings) == "user_error"
    with session_scope(fast_settings) as session:
        job = jobs.get_job(session, tenant_id=None, job_id=job_id)
        assert job is not None
        assert (job.error_code, job.error_param) == ("training_diverged", "training.lr")
        assert (job.error_message or "").startswith("training diverged at step 1")
        assert session.scalar(select(func.count()).select_from(Model).where(Model.job_id == job_id)) == 0
