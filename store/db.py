"""Engines and sessions from settings, and the schema upgrade that runs before anything else."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from store.settings import Settings, get_settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the worker writes; the busy timeout makes writers wait
    # for each other instead of failing; SQLite leaves foreign keys off unless asked.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class _Engines:
    """One engine (and pool) per database URL per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: dict[str, Engine] = {}
        self._factories: dict[str, sessionmaker[Session]] = {}

    def engine(self, url: str) -> Engine:
        with self._lock:
            if url not in self._engines:
                self._engines[url] = make_engine(url)
                self._factories[url] = sessionmaker(bind=self._engines[url], expire_on_commit=False)
            return self._engines[url]

    def factory(self, url: str) -> sessionmaker[Session]:
        self.engine(url)
        return self._factories[url]

    def forget(self, close: bool) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.dispose(close=close)
            self._engines.clear()
            self._factories.clear()


_engines = _Engines()


def get_engine(url: str) -> Engine:
    return _engines.engine(url)


def session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    return _engines.factory((settings or get_settings()).DATABASE_URL)


def forget_engines(close: bool = False) -> None:
    """Drop every pool. After a fork, call it with close=False: the child must not use (or close)
    connections whose sockets it shares with its parent."""
    _engines.forget(close)


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A session that commits when the block ends normally and rolls back on an exception."""
    session = session_factory(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(settings: Settings) -> Any:
    from alembic.config import Config

    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = settings.DATABASE_URL
    config.attributes["skip_logging_config"] = True  # the host process owns its logging setup
    return config


def upgrade_database(settings: Settings | None = None, revision: str = "head") -> None:
    """`alembic upgrade head` against the settings' database (creating a SQLite file's folder)."""
    from alembic import command

    settings = settings or get_settings()
    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), revision)


Row = TypeVar("Row")


def add_once(session: Session, row: Row, earlier: Callable[[], Row | None]) -> tuple[Row, bool]:
    """(row, True) once committed; or (the earlier row, False) where `earlier` finds one made by a
    request with the same idempotency key, before our insert or racing it (the unique key refuses
    the second insert, and the first row is then read back)."""
    if (found := earlier()) is not None:
        return found, False
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        if (found := earlier()) is None:
            raise
        return found, False
    return row, True
