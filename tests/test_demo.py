"""The demo: its teacher builder, cache, table, and the shortened end-to-end path through the service."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from demo.cache import TeacherCache, benchmark_teacher_dir, built_benchmark_teacher, teacher_key
from demo.plan import QUICK_PLAN, SUMMARIZATION, TRANSLATION, plan_for
from demo.table import Row, Served, render, student_row, teacher_row
from demo.teacher import QUICK_SHAPE, build_teacher
from tests.tiny import SAMPLE_DIR

REPO = Path(__file__).resolve().parent.parent


def test_built_teacher_loads_with_auto_classes_and_its_own_tokenizer(tmp_path: Path) -> None:
    out = build_teacher(tmp_path / "teacher", QUICK_SHAPE)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForSeq2SeqLM.from_pretrained(str(out))
    ids = tokenizer("abook is a text-based address book")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and len(tokenizer) > 500
    assert model.config.encoder_layers == 6 and model.config.vocab_size == len(tokenizer)


def test_teacher_cache_key_changes_with_the_training_plan(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"document": "a", "summary": "b"}\n')
    spec = QUICK_PLAN.teacher_spec()
    changed = {**spec, "training": {**spec["training"], "max_steps": 99}}
    assert teacher_key(spec, [data]) == teacher_key(spec, [data])
    assert teacher_key(spec, [data]) != teacher_key(changed, [data])


def test_translation_jobs_name_mbart_languages_and_the_pair_fields() -> None:
    plan = plan_for("translation", quick=True)
    ids = {"train": "ds_train", "validation": "ds_validation"}
    for recipe in (plan.teacher_recipe("mdl_init", ids), plan.student_recipe(plan.students[0], "mdl_t", ids)):
        assert (recipe["task"], recipe["src_lang"], recipe["tgt_lang"]) == ("translation", "en_XX", "de_DE")
        assert (recipe["dataset"]["source_field"], recipe["dataset"]["target_field"]) == ("source", "target")
    assert "src_lang" not in plan_for("summarization", quick=True).teacher_recipe("mdl_init", ids)


def test_teacher_cache_returns_what_was_stored(tmp_path: Path) -> None:
    cache = TeacherCache(tmp_path / "cache")
    archive = tmp_path / "teacher.tar"
    archive.write_bytes(b"tar bytes")
    assert cache.lookup("k1") is None
    cache.store("k1", archive, {"note": "test"})
    stored = cache.lookup("k1")
    assert stored is not None and stored.read_bytes() == b"tar bytes"


def test_the_benchmark_teacher_counts_once_its_training_has_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    no_snapshots = tmp_path / "data" / "teachers"
    folder = benchmark_teacher_dir() / "teacher"
    (benchmark_teacher_dir() / "teacher.checkpoints").mkdir(parents=True)  # still training
    assert built_benchmark_teacher(snapshots=no_snapshots) is None
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    assert built_benchmark_teacher(snapshots=no_snapshots) == folder


def test_the_demo_prefers_the_teacher_of_the_most_cycles_once_it_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    no_snapshots = tmp_path / "data" / "teachers"
    for cycles in (1, 2, 3):
        folder = benchmark_teacher_dir(cycles=cycles) / "teacher"
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"")
    assert built_benchmark_teacher(snapshots=no_snapshots) == benchmark_teacher_dir(cycles=3) / "teacher"
    assert benchmark_teacher_dir(cycles=3).name == "debian-d256-c3"


def test_a_later_cycle_still_training_leaves_the_demo_on_the_last_finished_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    no_snapshots = tmp_path / "data" / "teachers"
    finished = benchmark_teacher_dir(cycles=2) / "teacher"
    finished.mkdir(parents=True)
    (finished / "model.safetensors").write_bytes(b"")
    (benchmark_teacher_dir(cycles=3) / "teacher.checkpoints").mkdir(parents=True)
    assert built_benchmark_teacher(snapshots=no_snapshots) == finished


def test_table_shows_missing_values_as_dashes() -> None:
    text = render([Row("teacher (fp32)", (30.0, 10.0, 29.5), 15_000_000, 1.0, None),
                   Row("dq 2-2-8 6-3", (29.0, 9.5, 28.8), 1_000_000, 15.0, Served("ctranslate2_int8", 12.3))],
                  SUMMARIZATION.metrics)
    assert "15,000,000" in text and "15.0x" in text and " - " in text.splitlines()[2] + " "


def test_a_translation_table_shows_bleu_and_chrf_from_the_job_report() -> None:
    report = {"teacher_metrics": {"eval/bleu": 20.5, "eval/chrf": 45.25}, "teacher_bytes": 15_000_000,
              "student_metrics": {"eval/bleu": 19.0}, "student_bytes": 4_000_000, "compression_ratio": 3.75}
    rows = [teacher_row(report, None, TRANSLATION.metrics),
            student_row("dq 8-8-8 6-3", report, None, TRANSLATION.metrics)]
    header, _, teacher_line, student_line = render(rows, TRANSLATION.metrics).splitlines()
    assert header.split()[:4] == ["model", "BLEU", "chrF", "bytes"]
    assert teacher_line.split()[2:4] == ["20.50", "45.25"]
    assert student_line.split()[3:5] == ["19.00", "-"]


def test_table_shows_each_model_served_speed_up_over_the_teacher_beside_its_size() -> None:
    teacher = Row("teacher (fp32)", (30.0, 10.0, 29.5), 15_000_000, 1.0, Served("ctranslate2_float32", 40.0))
    student = Row("dq 8-8-8 6-3", (29.0, 9.5, 28.8), 4_000_000, 3.8, Served("ctranslate2_int8", 10.0))
    header, _, teacher_line, student_line = render([teacher, student], SUMMARIZATION.metrics).splitlines()
    assert header.split()[-4:] == ["as", "API", "ms/doc", "faster"]
    assert student_line.split()[-4:] == ["3.8x", "ctranslate2_int8", "10.0", "4.0x"]
    assert teacher_line.split()[-3:] == ["ctranslate2_float32", "40.0", "1.0x"]


def wait_for_text(log: Path, text: str, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert process.poll() is None, f"the demo exited before {text!r}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {text!r} within {timeout:.0f} s:\n{log.read_text()}"
        time.sleep(0.5)


def run_demo(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.terminate()  # unlike a kill, lets the demo stop the service it started
            out, err = process.communicate(timeout=120)
            pytest.fail(f"the demo took over {timeout:.0f} s:\n{out[-3000:]}{err[-3000:]}")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


@pytest.mark.slow
def test_quick_demo_resumes_its_interrupted_teacher_then_runs_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "DQB_DEVICE": "cpu"}
    command = [sys.executable, "-m", "demo.run", "--quick", "--data-dir", str(tmp_path / "data"),
               "--results", str(tmp_path / "results")]
    log = tmp_path / "interrupted.log"
    with log.open("w") as out:
        first = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    wait_for_text(log, "submitted teacher training", first, timeout=240)
    first.send_signal(signal.SIGTERM)  # the demo unwinds it like Ctrl-C
    assert first.wait(timeout=120) == 130, log.read_text()
    assert "the next run resumes it from its last checkpoint" in log.read_text()
    job_id = re.search(r"submitted teacher training: (job_\w+)", log.read_text())
    assert job_id is not None

    done = run_demo(command, env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"resuming the teacher's training (job {job_id.group(1)}" in done.stdout
    assert "submitted teacher training" not in done.stdout
    assert "matches X-Checksum-SHA256" in done.stdout
    assert "teacher input check: validation loss" in done.stdout
    table = done.stdout.split("demo finished")[0].rsplit("model", 1)[-1]
    assert "dq 2-2-8 6-3" in table and "ctranslate2_int8" in table
    assert "dq 2-2-8 6-3" in (tmp_path / "results" / "table.txt").read_text()
    assert list((tmp_path / "results").glob("*-curves.png"))
    assert list((tmp_path / "cache" / "dqbart" / "teachers").glob("*/teacher.tar"))
    url = re.search(r"service up at (http://\S+)", done.stdout)
    assert url is not None
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url.group(1)}/health", timeout=2.0)


@pytest.mark.slow
def test_quick_translation_demo_translates_through_the_api_and_scores_bleu_and_chrf(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "DQB_DEVICE": "cpu"}
    command = [sys.executable, "-m", "demo.run", "--quick", "--task", "translation",
               "--data-dir", str(tmp_path / "data"), "--results", str(tmp_path / "results")]
    done = run_demo(command, env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "random mBART weights" in done.stdout and "matches X-Checksum-SHA256" in done.stdout
    # Every model answered /translate: none fell back to the examples in its report.
    assert "not served by the translation endpoint" not in done.stdout
    with gzip.open(SAMPLE_DIR / "en-de-validation.jsonl.gz", "rt", encoding="utf-8") as f:
        first = json.loads(f.readline())
    shown = done.stdout.split(f"--- source 1: {first['source'][:200]}", 1)[-1].split("--- source 2")[0]
    assert f"reference        : {first['target']}" in shown
    assert all(f"{name:<17}: " in shown for name in ("teacher", "dq 8-8-8 6-3", "dq 2-2-8 6-3"))
    header, _, *rows = (tmp_path / "results" / "table.txt").read_text().splitlines()
    assert header.split()[:3] == ["model", "BLEU", "chrF"]
    scores = {row.split("  ")[0].strip(): row.split()[-7:-5] for row in rows}
    assert list(scores) == ["teacher (fp32)", "dq 8-8-8 6-3", "dq 2-2-8 6-3"]
    assert all(float(score) >= 0 for pair in scores.values() for score in pair)
    assert all("ctranslate2_int8" in row for row in rows[1:])
