"""Object ids: a type prefix plus a 26-character ULID (time-sortable, so id order = creation order).

python-ulid counts up the random part within one millisecond, so the ids one process makes are
strictly increasing.
"""

from __future__ import annotations

from ulid import ULID


def new_id(prefix: str) -> str:
    """E.g. new_id("job") -> "job_01JDX..."."""
    return f"{prefix}_{ULID()}"
