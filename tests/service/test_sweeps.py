"""Sweeps through a real API process and two real Celery workers, in both run modes: every point
runs once as its own job, the children spread over both workers, successive halving drops points
and saves steps, and a cancel stops the rest."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bench.quality import main as bench_quality
from compression.sweep import Outcome, dominates, survivors
from dqbart_client.cli import client_cli
from store.db import session_scope
from store.models import Job
from tests.service.conftest import Service, sample_rows, service_env, start, tiny_recipe
from tests.tiny import make_tiny_teacher

pytestmark = pytest.mark.slow
# The grid runs in both modes; the rest exercises the sweep logic, which is the same on both.
embedded_only = pytest.mark.parametrize("service", ["embedded"], indirect=True)
SWEEP_TIMEOUT_S = 900.0
WORKER_READY_S = 180.0


@pytest.fixture(scope="module")
def second_worker(service: Service) -> Iterator[None]:
    """Another `dqbart worker` on the same database and broker, ready before any sweep is sent."""
    log = service.settings.DATA_DIR / "worker-2.log"
    with ExitStack() as stack:
        process = start(stack, ["worker"], service_env(service.settings), log)
        deadline = time.monotonic() + WORKER_READY_S
        while " ready." not in (log.read_text(errors="replace") if log.exists() else ""):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield


def sweep_body(uploads: dict[str, str], **changes: Any) -> dict[str, Any]:
    # A relative max_drop of 1 lets every student pass: the recommendation is then the smallest.
    return {"recipe": tiny_recipe(uploads, max_steps=4), "axes": {"bits": ["8-8-8", "2-2-8"],
                                                                  "layers": ["2-2", "1-1"]},
            "gate": {"max_drop": 1.0}, "budget": {"max_parallel": 2}, **changes}


def create(service: Service, body: dict[str, Any]) -> dict[str, Any]:
    response = service.owner.post("/v1/sweeps", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def wait_for(service: Service, sweep_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + SWEEP_TIMEOUT_S
    while True:
        sweep = dict(service.owner.get(f"/v1/sweeps/{sweep_id}").json())
        if done(sweep) or time.monotonic() > deadline:
            return sweep
        time.sleep(0.5)


def finished(sweep: dict[str, Any]) -> bool:
    return sweep["status"] != "running"


def children(service: Service, sweep_id: str) -> list[Job]:
    with session_scope(service.settings) as session:
        rows = list(session.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.id)))
        session.expunge_all()
        return rows


@pytest.fixture(scope="module")
def grid(service: Service, uploads: dict[str, str], second_worker: None) -> dict[str, Any]:
    sweep = create(service, sweep_body(uploads))
    return wait_for(service, sweep["id"], finished)


@pytest.fixture(scope="module")
def halving(service: Service, uploads: dict[str, str], second_worker: None) -> dict[str, Any]:
    # eta 4 over 4 points: two rungs, all four for 1 step, then one of them for 4
    sweep = create(service, sweep_body(uploads, strategy="successive_halving", eta=4,
                                       budget={"max_parallel": 4}))
    return wait_for(service, sweep["id"], finished)


def test_a_grid_sweep_runs_every_point_once_as_its_own_job(service: Service, grid: dict[str, Any]) -> None:
    assert grid["status"] == "succeeded", grid
    kids = children(service, grid["id"])
    assert sorted(k.sweep_point for k in kids) == [0, 1, 2, 3]
    for point in grid["points"]:
        job = service.owner.get(f"/v1/jobs/{point['job_id']}").json()
        assert (job["status"], job["sweep"]) == ("succeeded", grid["id"])
        weight, embedding, activation = (int(b) for b in point["bits"].split("-"))
        assert job["recipe"]["quantization"]["weight_bits"] == weight
        assert job["result"]["bytes"] == point["bytes"] > 0


def test_the_children_ran_on_both_workers(service: Service, grid: dict[str, Any]) -> None:
    processes = {k.worker_id.split(":")[1] for k in children(service, grid["id"]) if k.worker_id}
    assert len(processes) == 2, processes


def test_the_sweep_recommends_the_smallest_point_that_passed(service: Service, grid: dict[str, Any]) -> None:
    passed = [p for p in grid["points"] if p["gate"] == "passed"]
    smallest = min(passed, key=lambda p: (p["bytes"], p["index"]))
    assert grid["recommended"]["index"] == smallest["index"] and grid["reason"] is None
    model = service.owner.get(f"/v1/models/{grid['recommended']['model_id']}")
    assert model.status_code == 200 and model.json()["bytes"] > 0


def test_the_front_is_the_measured_points_no_other_beats(grid: dict[str, Any]) -> None:
    outcomes = {p["index"]: Outcome(p["index"], p["bytes"], p["metric"]) for p in grid["points"]}
    expected = {i for i, o in outcomes.items() if not any(dominates(other, o) for other in outcomes.values())}
    assert set(grid["front"]) == expected == {p["index"] for p in grid["points"] if p["on_front"]}


def test_the_teacher_is_scored_once_for_the_whole_sweep(service: Service, grid: dict[str, Any]) -> None:
    kids = children(service, grid["id"])
    sources = Counter(k.result["teacher_metrics_source"] for k in kids if k.result)
    assert sources["evaluated"] <= 1 and sources["given"] >= 1, sources
    assert all(k.result and k.result["teacher_metrics"] == grid["teacher_metrics"] for k in kids)


@embedded_only
def test_successive_halving_trains_fewer_points_longer_and_saves_steps(service: Service,
                                                                        halving: dict[str, Any]) -> None:
    assert halving["status"] == "succeeded", halving
    assert [(r["steps"], r["points"]) for r in halving["rungs"]] == [(1, 4), (4, 1)]
    kids = children(service, halving["id"])
    assert Counter(k.sweep_rung for k in kids) == {0: 4, 1: 1}
    assert Counter(p["status"] for p in halving["points"]) == {"stopped": 3, "succeeded": 1}
    assert halving["steps"] == {"planned": 8, "used": 8, "grid": 16, "saved": 8}


@embedded_only
def test_successive_halving_continues_the_points_its_rule_keeps(service: Service,
                                                                 halving: dict[str, Any]) -> None:
    kids = children(service, halving["id"])
    first = [Outcome(k.sweep_point or 0, k.result["bytes"], k.result["metrics"]["rougeLsum"])
             for k in kids if k.sweep_rung == 0 and k.result]
    second = [k.sweep_point for k in kids if k.sweep_rung == 1]
    assert second == survivors(first, keep=1)
    assert not any(dominates(other, next(o for o in first if o.point == second[0])) for other in first)


@embedded_only
def test_cancelling_a_sweep_cancels_its_running_child_and_starts_no_other(service: Service,
                                                                          uploads: dict[str, str]) -> None:
    body = sweep_body(uploads, budget={"max_parallel": 1})
    body["recipe"]["training"]["max_steps"] = 2000
    sweep = create(service, body)
    wait_for(service, sweep["id"], lambda s: s["progress"]["running"] == 1)
    response = service.owner.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    settled = wait_for(service, sweep["id"], lambda s: s["progress"]["running"] == 0)
    assert Counter(p["status"] for p in settled["points"]) == {"cancelled": 1, "pending": 3}
    again = service.owner.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "sweep_not_cancellable"


def test_the_sweep_commands_show_the_points_and_the_recommendation(service: Service,
                                                                   grid: dict[str, Any]) -> None:
    env = {"DQB_API_URL": service.base_url,
           "DQB_API_KEY": service.owner.headers["Authorization"].removeprefix("Bearer ")}
    shown = CliRunner().invoke(client_cli, ["sweeps", "get", grid["id"]], env=env)
    assert shown.exit_code == 0 and f"model {grid['recommended']['model_id']}" in shown.stdout, shown.output
    listed = CliRunner().invoke(client_cli, ["sweeps", "list", "--json"], env=env)
    assert grid["id"] in [s["id"] for s in json.loads(listed.stdout)]
    again = CliRunner().invoke(client_cli, ["sweeps", "cancel", grid["id"]], env=env)
    assert again.exit_code == 1 and "sweep_not_cancellable" in again.output


@embedded_only
def test_the_quality_benchmark_runs_its_matrix_as_a_sweep_of_the_service(
        service: Service, second_worker: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    teacher = make_tiny_teacher(tmp_path / "teacher")
    for split, count in (("train", 48), ("validation", 8)):
        (tmp_path / f"{split}.jsonl").write_bytes(sample_rows(split, count))
    monkeypatch.setenv("DQB_API_KEY", service.owner.headers["Authorization"].removeprefix("Bearer "))
    bench_quality(["--teacher", str(teacher), "--train", str(tmp_path / "train.jsonl"),
                   "--validation", str(tmp_path / "validation.jsonl"), "--configs",
                   "qat_only:8-8-8:1-1 dq:8-8-8:1-1", "--steps", "2", "--max-val", "4", "--batch-size", "4",
                   "--num-beams", "1", "--out", str(tmp_path / "out"), "--api-url", service.base_url])
    sweep = json.loads((tmp_path / "out" / "sweep.json").read_text())
    rows = {r["name"]: r for r in json.loads((tmp_path / "out" / "quality.json").read_text())["rows"]}
    assert sweep["status"] == "succeeded"
    assert set(rows) == {"teacher:fp32", "qat_only:8-8-8:1-1", "dq:8-8-8:1-1"}
    for point in sweep["points"]:
        row = rows[f"{point['method']}:{point['bits']}:{point['layers']}"]
        assert (row["bytes"], row["metrics"]["rougeLsum"]) == (point["bytes"], point["metric"])
