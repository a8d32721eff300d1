"""The direction of imports between our packages (docs/architecture.md), read from the source: every
`import` and `from ... import` in every file counts, those inside functions included."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny import REPO

PACKAGES = ("compression", "store", "web", "worker", "serving", "api", "dqbart_client")
# What each package must never import. Arrows run one way: compression <- store <- web, worker,
# serving <- api; the client talks to the service over HTTP only.
FORBIDDEN = {
    "compression": {"store", "web", "worker", "serving", "api", "dqbart_client"},
    "store": {"web", "worker", "serving", "api", "dqbart_client"},
    "web": {"worker", "serving", "api", "dqbart_client"},
    "worker": {"web", "serving", "api", "dqbart_client"},
    "serving": {"worker", "api", "dqbart_client"},  # the API hosts serving's routes, never the reverse
    "api": set(),
    "dqbart_client": {"compression", "store", "web", "worker", "serving", "api"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level names a file imports (relative imports stay in their package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_none_of_the_packages_above_it(package: str) -> None:
    wrong = {f"{path.relative_to(REPO)} imports {name}"
             for path in sorted((REPO / package).rglob("*.py"))
             for name in imported_packages(path) & FORBIDDEN[package]}
    assert not wrong, sorted(wrong)


@pytest.mark.parametrize("module", ["api.main", "worker.app", "worker.tasks"])
def test_importing_a_module_creates_no_files(tmp_path: Path, module: str) -> None:
    """Importing builds nothing: no Celery app, no broker folders, no database, wherever the
    importer stands (a fresh interpreter in an empty folder, with settings from the defaults)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DQB_")}
    env["PYTHONPATH"] = str(REPO)
    subprocess.run([sys.executable, "-c", f"import {module}"], cwd=tmp_path, env=env, check=True, timeout=120)
    assert sorted(tmp_path.rglob("*")) == []
