"""The web dashboard at /ui: server-rendered page shells plus static scripts.

The pages hold no tenant data, so they need no key: the browser asks the user for an API key once,
keeps it in sessionStorage (or localStorage, if asked to remember it) and sends it as a bearer header
on every /v1 call. A key never travels in a URL, where logs and browser history would keep it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
STATIC_URL = "/ui/static"
JOB_ID = r"^job_[0-9A-HJKMNP-TV-Z]{26}$"  # store/ids.py: a prefix and a Crockford ULID

# A stored key is only as safe as the scripts on the page: allow our own files and nothing inline,
# nothing from elsewhere, and no framing (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
                                "base-uri 'none'; form-action 'self'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
NAV = (("jobs", "Jobs", "/ui/jobs"), ("models", "Models", "/ui/models"),
       ("compare", "Compare", "/ui/compare"))

router = APIRouter(prefix="/ui", include_in_schema=False)


def _page(request: Request, template: str, section: str, title: str, **context: str) -> HTMLResponse:
    version = request.app.version  # in the static URLs, so a new release is not served from cache
    response = TEMPLATES.TemplateResponse(request, template, {
        "section": section, "title": title, "nav": NAV, "static": STATIC_URL, "version": version,
        "script": template.removesuffix(".html"), **context})
    response.headers.update(SECURITY_HEADERS)
    return response


@router.get("")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=307)


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request) -> HTMLResponse:
    return _page(request, "jobs.html", "jobs", "Jobs")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: Annotated[str, PathParam(pattern=JOB_ID)]) -> HTMLResponse:
    return _page(request, "job.html", "jobs", job_id, job_id=job_id)


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request) -> HTMLResponse:
    return _page(request, "models.html", "models", "Models")


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request) -> HTMLResponse:
    return _page(request, "compare.html", "compare", "Compare")


def install_ui(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=HERE / "static"), name="ui-static")
