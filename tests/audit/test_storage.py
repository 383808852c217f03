"""The audit table on SQLite and on a real PostgreSQL: batches inserted once however often
they are replayed, the queries ``bastion logs`` makes, and retention by age and row count."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bastion.audit.storage import AuditQuery, _seconds_micros, count, enforce_retention, insert_rows, row_dict
from bastion.config.audit import AuditRetention
from bastion.config.model import StoreSettings
from bastion.store import Store, open_store
from bastion.store.models import AuditRecord


@pytest.fixture
def store(store_settings: StoreSettings) -> Iterator[Store]:
    store = open_store(store_settings)
    try:
        yield store
    finally:
        store.close()


def _row(i: int, ts: float, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": f"r{i}", "ts": ts, "request_id": f"q{i}", "instance": "gw", "worker": 0, "consumer": None,
        "credential": None, "client": "127.0.0.1", "method": "GET", "host": "h", "path": f"/{i}", "route": "api:/",
        "service": "api", "status": 200, "bytes_in": 0, "bytes_out": 5, "latency_ms": 1.5, "upstream_ms": 1.0,
        "decision": "allowed", "stage": None, "rule": None, "category": None, "reason": None, "ratelimit": None,
        "tls": None, "user_agent": None, "upstream": None, "upstream_error": None, "details": {}, "time": "-",
    }
    row.update(fields)
    return row


def test_a_replayed_batch_is_stored_once(store: Store) -> None:
    """Inserting the same rows again (a spool replayed after a crash) adds nothing."""
    now = time.time()
    rows = [_row(i, now) for i in range(3)]
    insert_rows(store.engine, rows)
    insert_rows(store.engine, [*rows, _row(3, now)])
    assert count(store.engine) == 4


def test_queries_filter_by_time_consumer_route_status_decision_and_rule(store: Store) -> None:
    """Each filter of ``bastion logs`` selects exactly the matching records; a stored record
    reads back as its JSON line (``ts`` and ``time`` in UTC)."""
    now = time.time()
    insert_rows(store.engine, [
        _row(1, now - 7200),
        _row(2, now - 60, consumer="c-1"),
        _row(3, now - 30, route="getOrder", status=403, decision="blocked", stage="detection", rule="942100"),
    ])

    def ids(query: AuditQuery) -> list[str]:
        with store.read() as session:
            return [r.id for r in session.scalars(query.select().order_by(AuditRecord.ts))]

    since = datetime.fromtimestamp(now - 3600, UTC)
    assert ids(AuditQuery(since=since)) == ["r2", "r3"]
    assert ids(AuditQuery(until=since)) == ["r1"]
    assert ids(AuditQuery(consumer="c-1")) == ["r2"]
    assert ids(AuditQuery(route="getOrder")) == ids(AuditQuery(status=403)) == ["r3"]
    assert ids(AuditQuery(decision="blocked")) == ids(AuditQuery(rule="942100")) == ["r3"]
    with store.read() as session:
        line = row_dict(session.scalars(select(AuditRecord).where(AuditRecord.id == "r3")).one())
    assert line["ts"] == pytest.approx(now - 30, abs=0.001) and line["time"].endswith("Z")
    assert (line["decision"], line["details"]) == ("blocked", {})


def test_retention_by_age_and_by_rows(store: Store) -> None:
    """Records older than ``max_age`` go; then only the newest ``max_rows`` stay."""
    now = time.time()
    insert_rows(store.engine, [_row(i, now - 100 * 86400 + i) for i in range(5)])
    insert_rows(store.engine, [_row(100 + i, now - 1000 + i) for i in range(1200)])
    deleted = enforce_retention(store.engine, AuditRetention(max_age=30 * 86400, max_rows=1000), now)
    assert deleted == 5 + 200
    with store.read() as session:
        kept = sorted(session.scalars(select(AuditRecord.id)))
    assert kept == sorted(f"r{100 + i}" for i in range(200, 1200))


def test_a_stored_time_reads_back_to_the_microsecond(store: Store) -> None:
    """A row's time is stored as the model stores it: read back, it is the row's time to
    the microsecond, also on a whole second (no fraction) and a whole millisecond. On SQLite
    a row without a column (spooled by an older version) is stored with it empty."""
    times = (1_765_000_000.0, 1_765_000_000.5, 1_765_000_000.123456, 1_765_000_001.000001)
    rows = [_row(i, ts, details={"decisions": [{"stage": "auth"}]}) for i, ts in enumerate(times)]
    sqlite = store.engine.dialect.name == "sqlite"
    older = _row(9, 1_765_000_002.25)
    del older["upstream_error"]
    insert_rows(store.engine, [*rows, older] if sqlite else rows)
    with store.read() as session:
        stored = {r.id: r for r in session.scalars(select(AuditRecord))}
    for i, ts in enumerate(times):
        assert stored[f"r{i}"].ts.replace(tzinfo=UTC) == datetime.fromtimestamp(ts, UTC)
        assert stored[f"r{i}"].details == {"decisions": [{"stage": "auth"}]}
    if sqlite:
        assert stored["r9"].upstream_error is None
        assert row_dict(stored["r9"])["ts"] == 1_765_000_002.25


def test_an_empty_field_is_stored_as_null_and_every_value_as_it_is(store: Store) -> None:
    """A row's None is stored as SQL NULL (the filters' ``IS NULL`` finds it), while values
    that look empty or numeric (``"0"``, ``""``, ``"nan"``, a latency of 0.0) are stored as
    they are; a None in a required column still fails the insert, as the store demands."""
    now = time.time()
    insert_rows(store.engine, [
        _row(1, now),
        _row(2, now, consumer="0", credential="", rule="nan", upstream_ms=0.0, user_agent="None"),
    ])
    with store.read() as session:
        nulls = session.scalars(select(AuditRecord.id).where(
            AuditRecord.consumer.is_(None), AuditRecord.credential.is_(None), AuditRecord.rule.is_(None),
            AuditRecord.upstream_ms.is_not(None), AuditRecord.user_agent.is_(None))).all()
        second = session.scalars(select(AuditRecord).where(AuditRecord.id == "r2")).one()
    assert nulls == ["r1"]
    assert (second.consumer, second.credential, second.rule, second.upstream_ms, second.user_agent) == (
        "0", "", "nan", 0.0, "None")
    with pytest.raises(IntegrityError):
        insert_rows(store.engine, [_row(3, now, status=None)])
    assert count(store.engine) == 2


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=4_102_444_800) | st.integers(0, 4_102_444_800 * 2).map(lambda n: n / 2)
       | st.integers(0, 4_102_444_800_000_000).map(lambda n: n / 1_000_000 + 5e-7))
def test_the_sqlite_time_text_is_the_one_datetime_gives(ts: float) -> None:
    """The SQLite insert's time text (formatted a second at a time) is the text SQLAlchemy
    stores for ``datetime.fromtimestamp(ts, UTC)``: the same rounding to the microsecond
    (half to even, also on a half microsecond and on a carry into the next second)."""
    whole, micro = _seconds_micros(ts)
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole)) + f".{micro:06d}"
    assert text == datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def test_queries_by_consumer_and_by_blocked_decision_use_their_partial_indexes(store: Store) -> None:
    """The consumer and decision indexes hold only records with a consumer and records not
    allowed (migration 0005), and still serve what they are for: on SQLite, a query by
    consumer and the dashboard's blocked requests read through them, and find their records."""
    now = time.time()
    insert_rows(store.engine, [_row(1, now), _row(2, now, consumer="c-1"),
                               _row(3, now, decision="blocked", stage="auth", reason="auth.missing")])
    blocked = AuditQuery(decision="blocked").select().order_by(AuditRecord.ts.desc()).limit(200)
    by_consumer = AuditQuery(consumer="c-1").select()
    with store.read() as session:
        assert [r.id for r in session.scalars(blocked)] == ["r3"]
        assert [r.id for r in session.scalars(by_consumer)] == ["r2"]
        assert [r.id for r in session.scalars(AuditQuery(decision="allowed").select().order_by(AuditRecord.id))] == [
            "r1", "r2"]
    if store.engine.dialect.name != "sqlite":
        return
    with store.engine.connect() as conn:
        for query, index in ((blocked, "ix_audit_records_decision"), (by_consumer, "ix_audit_records_consumer")):
            sql = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
            plan = " ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert f"USING INDEX {index} " in plan
