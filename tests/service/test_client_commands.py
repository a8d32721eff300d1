"""`dqbart models|datasets|jobs|summarize` against a real API process and worker (embedded)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from dqbart_client.cli import client_cli
from store import tenants
from store.db import session_scope
from tests.service.conftest import DQBART, Service, sample_rows, tiny_recipe
from tests.tiny import make_tiny_teacher

# One mode is enough here: what these tests check is the commands, not the backends.
pytestmark = [pytest.mark.slow, pytest.mark.parametrize("service", ["embedded"], indirect=True)]


@pytest.fixture(scope="module")
def env(service: Service) -> dict[str, str]:
    with session_scope(service.settings) as session:
        tenant = tenants.get_or_create_tenant(session, name="cli-user")
        key = tenants.create_key(session, tenant_id=tenant.id)[1]
    return {"DQB_API_URL": service.base_url, "DQB_API_KEY": key}


def dqbart(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(client_cli, list(args), env=env, catch_exceptions=False)


def as_json(env: dict[str, str], *args: str) -> Any:
    result = dqbart(env, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def uploaded(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("cli-uploads")
    teacher = make_tiny_teacher(folder / "tiny-bart", encoder_layers=2, decoder_layers=2)
    ids = {"model": as_json(env, "models", "upload", str(teacher))["id"]}
    for split, count in (("train", 48), ("validation", 12)):
        (folder / f"{split}.jsonl").write_bytes(sample_rows(split, count))
        ids[split] = as_json(env, "datasets", "upload", str(folder / f"{split}.jsonl"))["id"]
    return ids


@pytest.fixture(scope="module")
def waited(env: dict[str, str], uploaded: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Result:
    recipe = tmp_path_factory.mktemp("recipe") / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(uploaded, max_steps=4)))
    return dqbart(env, "jobs", "create", str(recipe), "--wait", "--json")


@pytest.fixture(scope="module")
def job(waited: Result) -> dict[str, Any]:
    return dict(json.loads(waited.stdout))


def test_uploads_are_listed_as_tables(env: dict[str, str], uploaded: dict[str, str]) -> None:
    models, datasets = dqbart(env, "models", "list"), dqbart(env, "datasets", "list")
    assert uploaded["model"] in models.stdout and "tiny-bart" in models.stdout
    assert uploaded["train"] in datasets.stdout and "document, summary" in datasets.stdout


def test_create_wait_ends_succeeded_with_one_line_per_event(waited: Result, job: dict[str, Any]) -> None:
    assert waited.exit_code == 0, waited.output
    assert job["status"] == "succeeded" and job["result_model"].startswith("mdl_")
    assert f"[{job['id']}] stage: preparing" in waited.stderr
    assert f"[{job['id']}] succeeded" in waited.stderr.splitlines()[-1]


def test_a_finished_job_reads_a_terminal_stage(env: dict[str, str], job: dict[str, Any]) -> None:
    assert as_json(env, "jobs", "get", job["id"])["stage"] == "done"


def test_events_show_no_server_paths(env: dict[str, str], service: Service, job: dict[str, Any]) -> None:
    events = as_json(env, "jobs", "events", job["id"])
    assert {"preparing", "packing"} <= {e["stage"] for e in events}
    assert not [e["message"] for e in events if str(service.settings.DATA_DIR) in e["message"]]


def test_jobs_list_shows_the_job(env: dict[str, str], job: dict[str, Any]) -> None:
    assert job["id"] in dqbart(env, "jobs", "list").stdout


def test_metrics_plot_writes_a_png(env: dict[str, str], job: dict[str, Any], tmp_path: Path) -> None:
    result = dqbart(env, "jobs", "metrics", job["id"], "--plot", str(tmp_path / "curves.png"))
    assert result.exit_code == 0, result.output
    assert "loss/total" in result.stdout
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_download_checks_the_result(env: dict[str, str], job: dict[str, Any], tmp_path: Path) -> None:
    done = as_json(env, "models", "download", job["result_model"], str(tmp_path / "model.tar"))
    model = as_json(env, "models", "get", job["result_model"])
    assert done["sha256"] == model["sha256"] and (tmp_path / "model.tar").stat().st_size == model["bytes"]


def test_summarize_prints_one_summary_per_text(env: dict[str, str], job: dict[str, Any]) -> None:
    summaries = as_json(env, "summarize", job["result_model"], "a tool to compress files", "a text editor",
                        "-p", "max_length=8")
    assert len(summaries) == 2 and all(isinstance(s, str) for s in summaries)


def test_an_api_error_is_one_line_and_exit_1(env: dict[str, str]) -> None:
    result = CliRunner().invoke(client_cli, ["jobs", "get", "job_missing"], env=env)
    assert result.exit_code == 1
    assert "404 not_found [id]: no job with id 'job_missing'" in result.stderr


def test_the_console_script_runs_client_commands(env: dict[str, str], uploaded: dict[str, str]) -> None:
    done = subprocess.run([DQBART, "models", "get", uploaded["model"], "--json"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == uploaded["model"]
