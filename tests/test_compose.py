"""docker-compose.yml and the Dockerfiles, checked against the code (Docker cannot run here)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.cli import build_parser
from store.settings import Settings

REPO = Path(__file__).resolve().parent.parent
Services = dict[str, dict[str, Any]]
OUR_SERVICES = {"migrate": "migrate", "api": "api", "worker": "worker"}  # service -> dqbart subcommand


@pytest.fixture(scope="module")
def services() -> Services:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


def test_compose_has_the_production_services(services: Services) -> None:
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker"}


def test_long_running_services_have_healthchecks(services: Services) -> None:
    for name in ("postgres", "redis", "api", "worker"):
        assert services[name]["healthcheck"]["test"], name


def test_every_dqb_variable_is_a_settings_field(services: Services) -> None:
    names = {key for service in services.values() for key in (service.get("environment") or {})
             if key.startswith("DQB_")}
    assert names, "the services take their settings from DQB_ variables"
    assert {name.removeprefix("DQB_") for name in names} <= set(Settings.model_fields)


def test_production_settings_point_at_postgres_and_redis(services: Services) -> None:
    for name in OUR_SERVICES:
        env = services[name]["environment"]
        assert env["DQB_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["DQB_BROKER_URL"].startswith("redis://redis:")


@pytest.mark.parametrize(("service", "subcommand"), OUR_SERVICES.items())
def test_commands_are_dqbart_subcommands(services: Services, service: str, subcommand: str) -> None:
    command = services[service]["command"]
    assert command[0] == "dqbart"
    assert build_parser().parse_args(command[1:]).command == subcommand


def test_api_and_worker_wait_for_the_migration_and_share_the_data_volume(
        services: Services) -> None:
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        data_dir = services[name]["environment"]["DQB_DATA_DIR"]
        assert f"dqbart-data:{data_dir}" in services[name]["volumes"]


def test_worker_reserves_one_gpu(services: Services) -> None:
    worker = services["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert worker["environment"]["DQB_DEVICE"] == "cuda"
    assert worker["build"]["dockerfile"] == "docker/Dockerfile.worker"


def dockerfile_cmd(path: Path) -> list[str]:
    match = re.search(r"^CMD (\[.*\])$", path.read_text(), re.MULTILINE)
    assert match, f"{path} has no exec-form CMD"
    return json.loads(match.group(1))


@pytest.mark.parametrize(("dockerfile", "subcommand"),
                         [("Dockerfile.api", "api"), ("Dockerfile.worker", "worker")])
def test_dockerfile_commands_are_dqbart_subcommands(dockerfile: str, subcommand: str) -> None:
    command = dockerfile_cmd(REPO / "docker" / dockerfile)
    assert command[0] == "dqbart"
    assert build_parser().parse_args(command[1:]).command == subcommand


def test_worker_image_is_cuda_and_api_image_is_cpu() -> None:
    worker = (REPO / "docker" / "Dockerfile.worker").read_text()
    api = (REPO / "docker" / "Dockerfile.api").read_text()
    assert re.search(r"^FROM nvidia/cuda:", worker, re.MULTILINE)
    assert "whl/cu" in worker and "whl/cpu" in api


def test_images_copy_every_package_the_code_imports() -> None:
    packages = {"compression", "store", "worker", "serving", "api", "migrations"}
    for dockerfile in ("Dockerfile.api", "Dockerfile.worker"):
        copied = set(re.findall(r"^COPY (\w+) \1$", (REPO / "docker" / dockerfile).read_text(), re.MULTILINE))
        assert packages <= copied, dockerfile
