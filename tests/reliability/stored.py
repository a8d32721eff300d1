"""What an installation has stored: row counts of every table and the files below DATA_DIR.

A refused request must leave both exactly as they were (nothing half-stored).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from store.db import session_scope
from store.models import Base
from store.settings import Settings

_DATABASE_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal")


@dataclass(frozen=True)
class Stored:
    rows: dict[str, int]
    files: frozenset[str]


def stored(settings: Settings) -> Stored:
    with session_scope(settings) as session:
        rows = {t.name: int(session.scalar(select(func.count()).select_from(t)) or 0)
                for t in Base.metadata.sorted_tables}
    files = frozenset(_files(settings.DATA_DIR))
    return Stored(rows=rows, files=files)


def _files(root: Path) -> list[str]:
    if not root.exists():
        return []
    return [p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and not p.name.endswith(_DATABASE_SUFFIXES)]
