"""The dashboard in a real browser: Debian's headless Chromium driven through chromium-driver
(selenium), against a real `dqbart api` + `dqbart worker` (embedded mode: SQLite and the filesystem
broker) holding a finished job. Screenshots go to test-output/screenshots/ (DQB_TEST_OUTPUT moves
test-output/).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.remote.webdriver import WebDriver

from store import tenants
from store.db import session_scope
from store.settings import Settings
from tests.service.conftest import (
    Service,
    client_for,
    free_port,
    print_logs,
    service_env,
    start,
    tiny_recipe,
    wait_healthy,
)
from tests.service.conftest import uploads as uploads  # noqa: F401  (a fixture, used through `service`)
from tests.services import migrated_database, require_or_skip

CHROMIUM = os.environ.get("DQB_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DQB_CHROMEDRIVER", "/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[2]
JOB_TIMEOUT_S = 300.0
WINDOW = (1360, 1000)


@dataclass
class Dashboard:
    service: Service
    key: str  # the owner's API key, typed into the page
    finished_job: dict[str, Any]

    @property
    def base_url(self) -> str:
        return self.service.base_url


def screenshot_dir() -> Path:
    out = Path(os.environ.get("DQB_TEST_OUTPUT", REPO / "test-output")) / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service's two processes, as tests/service starts them (embedded mode only: the browser
    checks the pages, and tests/service already runs both modes)."""
    data_dir = tmp_path_factory.mktemp("browser-service")
    with migrated_database("sqlite", data_dir) as migrated, ExitStack() as stack:
        settings = Settings(DATA_DIR=data_dir, DATABASE_URL=migrated.DATABASE_URL, BROKER_URL="filesystem://")
        env, port = service_env(settings), free_port()
        base_url = f"http://127.0.0.1:{port}"
        stack.callback(print_logs, data_dir)
        api = start(stack, ["api", "--host", "127.0.0.1", "--port", str(port)], env, data_dir / "api.log")
        start(stack, ["worker"], env, data_dir / "worker.log")
        wait_healthy(base_url, api, data_dir / "api.log")
        owner = stack.enter_context(client_for(settings, base_url, "owner"))
        stranger = stack.enter_context(client_for(settings, base_url, "stranger"))
        yield Service(base_url=base_url, settings=settings, owner=owner, stranger=stranger)


def owner_key(settings: Settings) -> str:
    """Another key of the tenant that `service.owner` speaks for: the one the user types."""
    with session_scope(settings) as session:
        tenant = tenants.get_or_create_tenant(session, name="owner")
        return tenants.create_key(session, tenant_id=tenant.id)[1]


@pytest.fixture(scope="module")
def dashboard(service: Service, uploads: dict[str, str]) -> Dashboard:  # noqa: F811
    """Two finished jobs, 2-bit and 8-bit weights (two sizes for Compare); the first is shown."""
    ids = []
    for weight_bits in (2, 8):
        recipe = tiny_recipe(uploads, max_steps=4)
        recipe["quantization"]["weight_bits"] = weight_bits
        response = service.owner.post("/v1/jobs", json=recipe)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    jobs = [service.wait_for_job(job_id, lambda job: False, timeout=JOB_TIMEOUT_S) for job_id in ids]
    assert [job["status"] for job in jobs] == ["succeeded", "succeeded"], jobs
    return Dashboard(service=service, key=owner_key(service.settings), finished_job=jobs[0])


def chromium_options(downloads: Path) -> Options:
    options = Options()
    options.binary_location = CHROMIUM
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--hide-scrollbars", "--force-device-scale-factor=1", "--lang=en-GB",
                f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, CSP violations
    return options


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    found = shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)
    require_or_skip(bool(found), f"Chromium ({CHROMIUM}) and chromium-driver ({CHROMEDRIVER}) are not "
                                 "installed: apt-get install chromium chromium-driver")
    downloads = tmp_path_factory.mktemp("downloads")
    driver = webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER),
                              options=chromium_options(downloads))
    driver.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()
