"""The worker process's entry point: `celery -A worker.main worker` (what `dqbart worker` runs).

The one module that builds a Celery app at import, from the process's settings, because the
celery command looks the app up by module; nothing else imports it.
"""

from __future__ import annotations

from store.settings import get_settings
from worker.app import make_celery

app = make_celery(get_settings())
