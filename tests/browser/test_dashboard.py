"""The dashboard as a user sees it in Chromium: a key typed once, each page's rendered content, a
live job's progress moving, a download, and a screenshot of every page (test-output/screenshots/)."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium.common.exceptions import JavascriptException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import JOB_TIMEOUT_S, Dashboard, screenshot_dir
from tests.service.conftest import tiny_recipe

pytestmark = pytest.mark.slow
T = TypeVar("T")
WAIT_S = 30.0


def wait_for(browser: WebDriver, condition: Callable[[WebDriver], T], timeout: float = WAIT_S) -> T:
    ignored = (StaleElementReferenceException, JavascriptException)  # redrawn between two polls
    return WebDriverWait(browser, timeout, poll_frequency=0.2, ignored_exceptions=ignored).until(condition)


def text_of(browser: WebDriver, css: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, css).text


def visible(browser: WebDriver, element_id: str) -> bool:
    found = browser.find_elements(By.ID, element_id)
    return bool(found) and found[0].is_displayed()


def open_page(browser: WebDriver, dashboard: Dashboard, path: str) -> None:
    """Go to a page; type the key where the page asks for it (only the first page of the tab)."""
    console_errors(browser)  # read, so that only this page's errors are left to check
    browser.get(f"{dashboard.base_url}{path}")
    wait_for(browser, lambda b: visible(b, "main") or visible(b, "signin"))
    if visible(browser, "signin"):
        sign_in(browser, dashboard.key)


def sign_in(browser: WebDriver, key: str, remember: bool = False) -> None:
    browser.find_element(By.ID, "key-input").send_keys(key)
    if remember:
        browser.find_element(By.ID, "key-remember").click()
    browser.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()


def shoot(browser: WebDriver, name: str) -> Path:
    """A full-page screenshot: the window grown to the page's height for the shot."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    width = browser.get_window_size()["width"]
    browser.set_window_size(width, min(max(height + 120, 800), 4000))
    path = screenshot_dir() / f"{name}.png"
    browser.save_screenshot(str(path))
    browser.set_window_size(width, 1000)
    return path


def console_errors(browser: WebDriver) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def chart_labels(browser: WebDriver, canvas_id: str) -> list[str]:
    script = "const c = Chart.getChart(arguments[0]); return c ? c.data.datasets.map(d => d.label) : [];"
    return list(browser.execute_script(script, canvas_id))


def test_a_key_typed_once_opens_every_page_and_stays_out_of_urls(browser: WebDriver,
                                                                  dashboard: Dashboard) -> None:
    browser.get(f"{dashboard.base_url}/ui")
    wait_for(browser, lambda b: visible(b, "signin"))
    assert browser.current_url.endswith("/ui/jobs")
    shoot(browser, "0-sign-in")
    sign_in(browser, "dqb_not_a_key")
    wait_for(browser, lambda b: "unknown or revoked API key" in text_of(b, "#signin-error"))
    assert any("401" in error for error in console_errors(browser))  # the refused key's request
    sign_in(browser, dashboard.key)
    wait_for(browser, lambda b: visible(b, "main"))
    for path in ("/ui/models", "/ui/compare", f"/ui/jobs/{dashboard.finished_job['id']}"):
        browser.get(f"{dashboard.base_url}{path}")
        wait_for(browser, lambda b: visible(b, "main"))  # no second prompt
        assert dashboard.key not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('dqbart.apiKey')") == dashboard.key
    assert browser.execute_script("return localStorage.getItem('dqbart.apiKey')") is None
    assert text_of(browser, "#key-label") == f"key …{dashboard.key[-6:]}"


def test_the_jobs_page_lists_the_finished_job(browser: WebDriver, dashboard: Dashboard) -> None:
    job = dashboard.finished_job
    open_page(browser, dashboard, "/ui/jobs")
    row = f"tr[data-job='{job['id']}']"
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, row))
    assert text_of(browser, f"{row} .badge") == "succeeded"
    assert text_of(browser, f"{row} .stage") == "done"
    assert text_of(browser, f"{row} .progress-text") == "4 / 4 steps"
    bar = browser.find_element(By.CSS_SELECTOR, f"{row} [role=progressbar]")
    assert bar.get_attribute("aria-valuenow") == "100"
    assert job["result_model"] in text_of(browser, row)
    shoot(browser, "1-jobs")
    assert console_errors(browser) == []


def test_the_job_page_draws_every_loss_component_and_shows_the_result(browser: WebDriver,
                                                                      dashboard: Dashboard) -> None:
    job = dashboard.finished_job
    open_page(browser, dashboard, f"/ui/jobs/{job['id']}")
    wait_for(browser, lambda b: visible(b, "result-card") and len(chart_labels(b, "loss-chart")) > 1)
    losses = chart_labels(browser, "loss-chart")
    assert {"task", "logits", "total"} <= set(losses), losses
    assert any("hidden" in name for name in losses) and any("attn" in name for name in losses), losses
    assert "rougeLsum" in chart_labels(browser, "eval-chart")
    assert "teacher rougeLsum" in chart_labels(browser, "eval-chart")
    events = text_of(browser, "#events")
    assert "preparing" in events and "packing" in events
    assert str(dashboard.service.settings.DATA_DIR) not in events  # no server paths
    assert browser.find_elements(By.CSS_SELECTOR, "#checkpoints tbody tr")
    metrics = text_of(browser, "#result-metrics")
    assert "rougeLsum" in metrics
    assert "Smaller than the teacher" in text_of(browser, "#result-facts")
    recipe = browser.execute_script("return document.getElementById('recipe-json').textContent")
    assert '"max_steps": 4' in recipe
    shoot(browser, "2-job")
    assert console_errors(browser) == []


def test_the_download_button_saves_the_model_with_its_checksum(browser: WebDriver,
                                                               dashboard: Dashboard) -> None:
    job = dashboard.finished_job
    model = dashboard.service.owner.get(f"/v1/models/{job['result_model']}").json()
    open_page(browser, dashboard, f"/ui/jobs/{job['id']}")
    wait_for(browser, lambda b: visible(b, "result-card"))
    browser.find_element(By.ID, "download").click()
    wait_for(browser, lambda b: "SHA-256 checked" in text_of(b, "#download-status"))
    saved = browser.downloads / f"{model['id']}.tar"  # type: ignore[attr-defined]
    wait_for(browser, lambda b: saved.exists() and saved.stat().st_size == model["bytes"])
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == model["sha256"]


def test_the_models_page_lists_uploads_and_results_and_tries_a_model(browser: WebDriver,
                                                                     dashboard: Dashboard) -> None:
    result = dashboard.finished_job["result_model"]
    teacher = dashboard.finished_job["recipe"]["teacher"]["model"]
    open_page(browser, dashboard, f"/ui/models#{result}")
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, f"#results-table tr[data-model='{result}']"))
    assert browser.find_elements(By.CSS_SELECTOR, f"#uploads-table tr[data-model='{teacher}']")
    assert "document, summary" in text_of(browser, "#datasets-table")
    assert browser.execute_script("return document.getElementById('try-model').value") == result
    browser.find_element(By.ID, "try-text").send_keys("The quick brown fox jumps over the lazy dog. " * 3)
    browser.find_element(By.ID, "try-run").click()
    wait_for(browser, lambda b: visible(b, "try-answer"), timeout=60)
    assert text_of(browser, "#try-timing").endswith("ms")
    shoot(browser, "3-models")
    assert console_errors(browser) == []


def progress_seen(browser: WebDriver) -> tuple[int, str]:
    """The job page's step and status, read in one go: the page redraws them every poll."""
    script = """const text = document.getElementById("job-progress-text").textContent;
                const badge = document.querySelector("#job-status .badge");
                return [text, badge ? badge.dataset.status : ""];"""
    text, status = browser.execute_script(script)
    step = re.match(r"(\d+) / \d+ steps", text)
    return (int(step.group(1)) if step else 0), str(status)


@pytest.fixture(scope="module")
def live_job(dashboard: Dashboard, uploads: dict[str, str]) -> dict[str, Any]:
    """A job far too long to finish here: the test watches it move, then cancels it."""
    recipe = tiny_recipe(uploads, max_steps=5000)
    recipe["training"].update(log_every=5, checkpoint_every=5000, eval_every=5000)
    response = dashboard.service.owner.post("/v1/jobs", json=recipe)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_live_job_page_shows_its_progress_moving_and_cancels_it(browser: WebDriver, dashboard: Dashboard,
                                                                   live_job: dict[str, Any]) -> None:
    open_page(browser, dashboard, f"/ui/jobs/{live_job['id']}")
    steps: list[int] = []
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while len([s for s in steps if s > 0]) < 3 and time.monotonic() < deadline:
        step, status = progress_seen(browser)
        assert status in ("queued", "running"), status
        if not steps or step != steps[-1]:
            steps.append(step)
        time.sleep(0.25)
    assert len([s for s in steps if s > 0]) == 3 and steps == sorted(steps), steps  # seen moving, 3 times
    shoot(browser, "4-job-running")
    browser.find_element(By.ID, "job-cancel").click()
    browser.switch_to.alert.accept()
    wait_for(browser, lambda b: progress_seen(b)[1] == "cancelled", timeout=60)
    assert not visible(browser, "job-cancel")


def test_the_compare_page_marks_the_pareto_front_against_the_teacher(browser: WebDriver,
                                                                      dashboard: Dashboard) -> None:
    jobs = [j for j in dashboard.service.owner.get("/v1/jobs").json()["data"] if j["status"] == "succeeded"]
    assert len(jobs) == 2  # 2-bit and 8-bit weights: two sizes
    open_page(browser, dashboard, "/ui/compare")
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")) == len(jobs))
    labels = chart_labels(browser, "compare-chart")
    assert {"Pareto front", "teacher", "teacher (fp32)"} <= set(labels), labels
    front = browser.find_elements(By.CSS_SELECTOR, "#compare-table .badge.front")
    assert 1 <= len(front) <= len(jobs)
    assert browser.find_element(By.ID, "metric-head").get_attribute("textContent") == "rougeLsum"
    shoot(browser, "5-compare")
    browser.find_element(By.ID, "select-none").click()
    wait_for(browser, lambda b: not b.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr"))
    browser.find_element(By.ID, "select-all").click()
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")) == len(jobs))
    assert console_errors(browser) == []


def test_the_compare_page_draws_a_sweeps_front_and_marks_its_recommendation(browser: WebDriver,
                                                                             dashboard: Dashboard,
                                                                             uploads: dict[str, str]) -> None:
    owner = dashboard.service.owner
    axes = {"bits": ["8-8-8", "2-2-8"], "layers": ["1-1"]}
    body = {"recipe": tiny_recipe(uploads, max_steps=2), "axes": axes, "gate": {"max_drop": 1.0}}
    sweep = owner.post("/v1/sweeps", json=body).json()
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while sweep["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
        sweep = owner.get(f"/v1/sweeps/{sweep['id']}").json()
    assert sweep["status"] == "succeeded" and sweep["recommended"], sweep
    open_page(browser, dashboard, f"/ui/compare?sweep={sweep['id']}")
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")) == 2)
    assert {"recommended", "Pareto front", "teacher"} <= set(chart_labels(browser, "compare-chart"))
    marked = browser.find_element(By.CSS_SELECTOR, "#compare-table .badge.recommended")
    row = marked.find_element(By.XPATH, "./ancestor::tr")
    assert row.get_attribute("data-job") == sweep["points"][sweep["recommended"]["index"]]["job_id"]
    assert sweep["recommended"]["model_id"] in text_of(browser, "#chart-note")
    shoot(browser, "6-compare-sweep")
    assert console_errors(browser) == []
