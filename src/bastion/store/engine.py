"""Opening the store: the engine, the schema migrations, sessions for reads and for writes.

The store is synchronous (SQLAlchemy's sync engine): the CLI calls it directly, and workers
call it in a thread (``asyncio.to_thread``), never on the request path. Opening it upgrades
the schema to the newest migration shipped with Bastion, once per process, under a lock
that makes concurrent workers wait for one another (SQLite: ``BEGIN IMMEDIATE``;
PostgreSQL: an advisory lock), so a fleet starting at once migrates once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bastion.config.model import Consumer as DeclaredConsumerSettings
from bastion.config.model import StoreSettings
from bastion.store.errors import StoreError, StoreUnavailable
from bastion.store.models import Generation
from bastion.store.pepper import load_pepper

MIGRATIONS = Path(__file__).with_name("migrations")
#: The advisory lock PostgreSQL migrations run under (any constant; "bastion" in ASCII).
_MIGRATION_LOCK = 0x62617374696F6E
#: SQLite waits this long for another writer (a CLI command, another worker) to finish.
_SQLITE_BUSY_SECONDS = 10.0


def engine_url(url: str) -> str:
    """The SQLAlchemy URL for a store URL: ``postgresql://`` means psycopg 3 here."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def shown_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets real transactions and waits for other writers."""
    if not url.startswith("sqlite"):
        return create_engine(engine_url(url), pool_pre_ping=True, pool_size=2, max_overflow=4)
    engine = create_engine(url, connect_args={"timeout": _SQLITE_BUSY_SECONDS})

    # pysqlite begins transactions lazily and only before writes, so a read-then-write could
    # interleave with another process's; let SQLAlchemy emit BEGIN itself (the SQLAlchemy
    # documentation's recipe), IMMEDIATE for writes so writers queue instead of failing.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")  # readers (workers' polls) never wait for a writer
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("bastion_write") else "BEGIN")

    return engine


class Store:
    """The durable store of one configuration (``store:``), with its declared consumers.

    Nothing is opened by the constructor: the first use (or :meth:`ready`) migrates the
    schema and syncs the declared consumers, once.
    """

    def __init__(self, settings: StoreSettings, declared: Sequence[DeclaredConsumerSettings] = ()) -> None:
        if settings.url is None:
            raise StoreError("the store's URL is not resolved (load the configuration with load_config)")
        self.settings = settings
        self.url: str = settings.url
        #: The URL as messages show it (no password).
        self.shown = shown_url(settings.url)
        self.declared = tuple(declared)
        self.engine = make_engine(settings.url)
        self._ready = False
        self._lock = threading.Lock()
        self._pepper: bytes | None = None

    def ready(self) -> None:
        """Migrate the schema to the newest revision and sync the declared consumers (once)."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            self._prepare_sqlite_file()
            try:
                with self._locked() as conn:
                    config = Config()
                    config.set_main_option("script_location", str(MIGRATIONS))
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
                    self._sync(conn, self.declared)
            except SQLAlchemyError as exc:
                raise StoreUnavailable(f"the store {self.shown} cannot be opened: {_cause(exc)}") from None
            self._ready = True

    def sync_declared(self, declared: Sequence[DeclaredConsumerSettings]) -> bool:
        """Make the store's consumers match a (reloaded) configuration's; tell whether
        anything changed."""
        self.ready()
        self.declared = tuple(declared)
        try:
            with self._locked() as conn:
                return self._sync(conn, self.declared)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"the store {self.shown} cannot be written: {_cause(exc)}") from None

    @staticmethod
    def _sync(conn: Connection, declared: Sequence[DeclaredConsumerSettings]) -> bool:
        from bastion.store.consumers import sync_declared

        # The session joins the connection's transaction: committed with the migration.
        with Session(bind=conn, expire_on_commit=False) as session:
            changed = sync_declared(session, declared)
            session.flush()
        return changed

    @contextmanager
    def _locked(self) -> Iterator[Connection]:
        """A write transaction no other process's migration or sync runs beside (two
        workers syncing the same new consumer would otherwise both insert it)."""
        with self.engine.connect().execution_options(bastion_write=True) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            yield conn

    def _prepare_sqlite_file(self) -> None:
        """Name what is wrong with a SQLite path before SQLite says 'unable to open database
        file', and create a new database file readable by its owner only (SQLite gives its
        journal files the same mode)."""
        database = make_url(self.url).database
        if not self.url.startswith("sqlite") or not database:
            return
        path = Path(database)
        if not path.parent.is_dir():
            raise StoreUnavailable(
                f"the store {self.shown} cannot be opened: the folder {str(path.parent)!r} does not exist"
            )
        if path.exists() and not path.is_file():
            raise StoreUnavailable(f"the store {self.shown} cannot be opened: {str(path)!r} is not a file")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        except OSError as exc:
            raise StoreUnavailable(f"the store {self.shown} cannot be created: {exc.strerror}") from None

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading (rolled back at the end)."""
        self.ready()
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose changes are committed together at the end, or not at all."""
        self.ready()
        with self._writing() as session:
            yield session

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        bind = self.engine.execution_options(bastion_write=True)
        with Session(bind, expire_on_commit=False) as session, session.begin():
            yield session

    def generation(self) -> int:
        """The counter every write the data plane must notice bumps."""
        with self.read() as session:
            return session.execute(select(Generation.value).where(Generation.id == 1)).scalar_one()

    @property
    def pepper(self) -> bytes:
        """The pepper credential hashes are keyed with (read, or created, on first use)."""
        if self._pepper is None:
            self._pepper = load_pepper(self.settings)
        return self._pepper

    def close(self) -> None:
        self.engine.dispose()

    async def aclose(self) -> None:
        self.close()


def _cause(exc: SQLAlchemyError) -> str:
    """The driver's own words, first line, without SQLAlchemy's statement and links."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_store(settings: StoreSettings, declared: Sequence[DeclaredConsumerSettings] = ()) -> Store:
    """The store ``settings`` describes, migrated and synced; :class:`StoreUnavailable` if it
    cannot be opened."""
    store = Store(settings, declared)
    try:
        store.ready()
    except BaseException:
        store.close()
        raise
    return store
