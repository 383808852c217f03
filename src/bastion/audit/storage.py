"""The audit log in the store: batches in, retention, and the queries of ``bastion logs``.

Synchronous (SQLAlchemy core): called by the audit writer thread and by the CLI, never on
the request path.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, Table, delete, func, literal_column, select
from sqlalchemy.sql import Select

from bastion.config.audit import AuditRetention
from bastion.store.models import AuditRecord

#: Rows per INSERT statement.
_CHUNK = 500
_TABLE: Table = AuditRecord.__table__  # type: ignore[assignment]  # declared: a Table
_COLUMNS = frozenset(c.name for c in _TABLE.columns)


def _db_row(row: dict[str, Any]) -> dict[str, Any]:
    values = {k: v for k, v in row.items() if k in _COLUMNS}
    values["ts"] = datetime.fromtimestamp(float(row["ts"]), UTC)
    return values


def insert_rows(engine: Engine, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (audit rows, see :func:`bastion.audit.entry.audit_row`) in one
    transaction; a row whose id is in the store already (a spool replayed twice) is skipped."""
    if not rows:
        return
    if engine.dialect.name == "sqlite":
        _insert_sqlite(engine, rows)
        return
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement: Any = pg_insert(_TABLE).on_conflict_do_nothing(index_elements=["id"])
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(_TABLE).on_conflict_do_nothing(index_elements=["id"])
    values = [_db_row(r) for r in rows]
    with engine.execution_options(bastion_write=True).begin() as conn:
        for start in range(0, len(values), _CHUNK):
            conn.execute(statement, values[start : start + _CHUNK])


def _sqlite_insert() -> tuple[str, tuple[str, ...]]:
    """The SQLite insert's text and the columns it takes from a row as they are (every one
    but ``ts`` and ``details``, which come last, converted)."""
    from sqlalchemy.dialects import sqlite

    quote = sqlite.dialect().identifier_preparer.quote
    plain = tuple(c.name for c in _TABLE.columns if c.name not in ("ts", "details"))
    names = ", ".join(quote(name) for name in (*plain, "ts", "details"))
    marks = ", ".join("?" * (len(plain) + 2))
    # Only the model's own table and column names go into the text; the values are bound.
    insert = f"INSERT INTO {quote(_TABLE.name)} ({names}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING"  # noqa: S608
    return insert, plain


_SQLITE_INSERT, _PLAIN = _sqlite_insert()
#: A row's plain columns in one call (the store thread converts every request's row).
_PLAIN_VALUES = operator.itemgetter(*_PLAIN)
#: What the SQLite insert binds for a None: SQLite stores a NaN bound as a double as NULL.
#: The driver binds an int, float or str directly but tries to adapt anything else first,
#: None included (Python 3.11: two failed attribute lookups whose errors are formatted and
#: dropped, ~3,300 instructions); an audit row holds about ten None.
_NULL = math.nan


def _seconds_micros(ts: float) -> tuple[float, int]:
    """``ts`` in whole seconds and microseconds, rounded as ``datetime.fromtimestamp`` rounds
    (half to even): the time SQLAlchemy would store, as text (``"%Y-%m-%d %H:%M:%S.%f"``)
    the store thread formats for less than ``datetime.isoformat`` costs (~11,600 instructions
    a row), the date and time of day once a second."""
    fraction, whole = math.modf(ts)
    micro = round(fraction * 1_000_000)
    if micro >= 1_000_000:
        return whole + 1, micro - 1_000_000
    if micro < 0:
        return whole - 1, micro + 1_000_000
    return whole, micro


def _insert_sqlite(engine: Engine, rows: Sequence[dict[str, Any]]) -> None:
    """The SQLite store's insert, through the driver: SQLAlchemy's per-row parameter
    processing cost more than the insert itself (the default store takes every request's
    record). The values are stored as SQLAlchemy stores them (the time as its DATETIME
    text in UTC, ``details`` as JSON text), so the models read them back alike."""
    params = []
    second, second_text = math.nan, ""
    for row in rows:
        try:
            plain = _PLAIN_VALUES(row)
        except KeyError:  # a row spooled by an older version, without a newer column
            plain = tuple(row.get(name) for name in _PLAIN)
        whole, micro = _seconds_micros(float(row["ts"]))
        if whole != second:  # the date and time of day, once a second
            second, second_text = whole, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole))
        ts = f"{second_text}.{micro:06d}"
        details = orjson.dumps(row.get("details") or {}).decode()
        params.append((*[_NULL if v is None else v for v in plain], ts, details))
    with engine.execution_options(bastion_write=True).begin() as conn:
        conn.exec_driver_sql(_SQLITE_INSERT, params)


def enforce_retention(engine: Engine, retention: AuditRetention, now: float) -> int:
    """Delete the records older than ``max_age`` and the oldest beyond ``max_rows``; return
    how many were deleted."""
    ts = AuditRecord.ts
    cutoff = datetime.fromtimestamp(now - retention.max_age, UTC)
    with engine.execution_options(bastion_write=True).begin() as conn:
        deleted = conn.execute(delete(_TABLE).where(ts < cutoff)).rowcount
        # The newest max_rows stay (and any older one of the same instant, as the edge's).
        edge = conn.execute(select(ts).order_by(ts.desc()).offset(retention.max_rows - 1).limit(1)).scalar()
        if edge is not None:
            deleted += conn.execute(delete(_TABLE).where(ts < edge)).rowcount
    return int(deleted)


@dataclass(frozen=True)
class AuditQuery:
    """What ``bastion logs`` asks for; ``None``: any."""

    since: datetime | None = None
    until: datetime | None = None
    consumer: str | None = None
    route: str | None = None
    status: int | None = None
    decision: str | None = None
    rule: str | None = None

    def select(self) -> Select[AuditRecord]:
        q = select(AuditRecord)
        if self.since is not None:
            q = q.where(AuditRecord.ts >= self.since)
        if self.until is not None:
            q = q.where(AuditRecord.ts < self.until)
        if self.consumer is not None:
            q = q.where(AuditRecord.consumer == self.consumer)
        if self.route is not None:
            q = q.where(AuditRecord.route == self.route)
        if self.status is not None:
            q = q.where(AuditRecord.status == self.status)
        if self.decision is not None:
            q = q.where(AuditRecord.decision == self.decision)
            if self.decision != "allowed":
                q = q.where(NOT_ALLOWED)
        if self.rule is not None:
            q = q.where(AuditRecord.rule == self.rule)
        return q


#: The condition of the partial index on ``decision`` (migration 0005), said beside a query
#: for blocked or monitored records: SQLite uses a partial index only for a query that states
#: its condition (PostgreSQL infers it from ``decision = 'blocked'``).
NOT_ALLOWED = AuditRecord.decision != literal_column("'allowed'")


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(_TABLE)).scalar_one())


def row_dict(record: AuditRecord) -> dict[str, Any]:
    """A stored record as ``bastion logs --json`` prints it (the JSON line's fields)."""
    out: dict[str, Any] = {c: getattr(record, c) for c in sorted(_COLUMNS)}
    out["time"] = record.ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{record.ts.microsecond // 1000:03d}Z"
    out["ts"] = record.ts.timestamp()
    return out


__all__ = ["NOT_ALLOWED", "AuditQuery", "count", "enforce_retention", "insert_rows", "row_dict"]
