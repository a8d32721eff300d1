"""The Celery app's configuration, from settings only: no training imports, and nothing built at
import (the API imports this to enqueue; `worker.main` builds the worker's app).

The database is the truth about jobs; messages only carry job ids, so results are ignored.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from store.settings import Settings
from worker.fsbroker import TRANSPORT


def broker_options(settings: Settings) -> dict[str, Any]:
    """Transport options: folders for the serverless filesystem broker (platform-notes §4)."""
    if settings.BROKER_URL.startswith("filesystem"):
        folders = {name: settings.broker_dir / name for name in ("queue", "processed", "control")}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)  # kombu writes into them but creates none but control
        return {"data_folder_in": str(folders["queue"]), "data_folder_out": str(folders["queue"]),
                "processed_folder": str(folders["processed"]), "control_folder": str(folders["control"]),
                "store_processed": False, "polling_interval": 0.1}
    if settings.BROKER_URL.startswith(("redis", "rediss")):
        # An unacked message comes back after this long. Long jobs get a redelivered copy while
        # they run; the claim makes that copy a no-op, and it rescues the job of a dead worker.
        return {"visibility_timeout": max(300, int(4 * settings.STALE_AFTER_SECONDS))}
    return {}


def make_celery(settings: Settings) -> Celery:
    app = Celery("dqbart", broker=settings.BROKER_URL, include=["worker.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_options(settings),
        # Our filesystem transport writes each message whole before consumers can see it.
        broker_transport=TRANSPORT if settings.BROKER_URL.startswith("filesystem") else None,
        task_default_queue="dqbart",
    )
    return app
