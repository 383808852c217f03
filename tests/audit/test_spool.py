"""The spool with a real AuditSink and a real SQLite store: what a dead worker left is
replayed into the store at start (once, however often), a spool held by another process is
not shared, and a graceful close leaves every record stored and the spool empty."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from types import MappingProxyType

import orjson
import pytest

from bastion.audit import AuditSink
from bastion.audit.spool import Spool, parse
from bastion.audit.storage import count
from bastion.config.audit import AuditSettings
from bastion.config.model import StoreSettings
from bastion.services import WorkerIdentity
from bastion.store import open_store
from bastion.types import ExchangeRecord


def _sink(folder: Path, index: int = 0) -> AuditSink:
    settings = AuditSettings(enabled=True, spool_dir=folder / "spool", flush_interval=0.05)
    store = StoreSettings(url=f"sqlite:///{folder / 'bastion.db'}", pepper_file=folder / "pepper")
    return AuditSink(settings, store, WorkerIdentity("test", index, 2, os.getpid()))


def _record(path: str) -> ExchangeRecord:
    return ExchangeRecord(time.time(), "rid", "127.0.0.1", "GET", path, "api:/", "api", 200, 0, 1, 0.001)


def _stored(folder: Path) -> int:
    store = open_store(StoreSettings(url=f"sqlite:///{folder / 'bastion.db'}", pepper_file=folder / "pepper"))
    try:
        return count(store.engine)
    finally:
        store.close()


def test_a_dead_workers_spool_is_replayed_once(tmp_path: Path) -> None:
    """Records a worker spooled but never stored (it was killed) -- its own index's spool and
    the spool of an index no longer running -- are in the store after the next start, each
    once, including a line cut short by the crash being skipped; both spools end empty."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    writer = _sink(tmp_path)
    lines = [orjson.dumps(writer._row(_record(f"/{i}"))) for i in range(6)]
    (spool_dir / "worker-0.spool").write_bytes(b"\n".join(lines[:3]) + b"\n")
    (spool_dir / "worker-1.spool").write_bytes(b"\n".join(lines[2:]) + b'\n{"id": "cut sh')
    sink = _sink(tmp_path)
    sink.start()
    sink.close()
    assert _stored(tmp_path) == 6
    assert [p.stat().st_size for p in sorted(spool_dir.iterdir())] == [0, 0]


def test_records_after_a_line_cut_by_a_crash_are_kept(tmp_path: Path) -> None:
    """A worker's spool whose last line a crash cut short: the records spooled after the
    restart are not glued to it (each is stored), only the cut line is skipped."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    writer = _sink(tmp_path)
    kept = orjson.dumps(writer._row(_record("/before")))
    (spool_dir / "worker-0.spool").write_bytes(kept + b'\n{"id": "cut sh')
    sink = _sink(tmp_path)
    sink.start()
    for i in range(3):
        sink(_record(f"/after/{i}"))
    sink.close()
    assert _stored(tmp_path) == 4
    assert (spool_dir / "worker-0.spool").stat().st_size == 0


def test_a_cut_line_stays_a_line_of_its_own(tmp_path: Path) -> None:
    """Reopening a spool whose last line was cut ends that line, so the next batch appended
    reads back whole (the cut line alone is skipped)."""
    folder = tmp_path / "spool"
    folder.mkdir()
    (folder / "worker-0.spool").write_bytes(b'{"id": "a"}\n{"id": "cut sh')
    spool = Spool(folder, 0)
    try:
        with spool.lock:
            spool.append(b'{"id": "b"}\n')
            data = spool.read_from(0)
    finally:
        spool.close()
    assert [row["id"] for row in parse(data, folder)] == ["a", "b"]


def test_a_held_spool_is_not_shared(tmp_path: Path) -> None:
    """A worker whose index's spool another process holds (an overlapping instance) writes a
    spool of its own, stores through it, and removes it when it closes empty."""
    held = Spool(tmp_path / "spool", 0)
    try:
        sink = _sink(tmp_path)
        sink.start()
        for i in range(5):
            sink(_record(f"/{i}"))
        sink.close()
        assert _stored(tmp_path) == 5
        assert sorted(p.name for p in (tmp_path / "spool").iterdir()) == ["worker-0.spool"]
    finally:
        held.close()


def test_worker_zero_enforces_retention_off_the_request_path(tmp_path: Path) -> None:
    """The store thread of worker 0 applies the retention as soon as it has the store: a
    record older than ``max_age`` is deleted, a recent one kept; worker 1 leaves it to 0."""
    from bastion.audit.storage import insert_rows

    sink = _sink(tmp_path, index=1)
    old = sink._row(_record("/old"))
    old["ts"] = time.time() - 40 * 86400
    store = open_store(StoreSettings(url=f"sqlite:///{tmp_path / 'bastion.db'}", pepper_file=tmp_path / "pepper"))
    try:
        insert_rows(store.engine, [old, sink._row(_record("/new"))])
    finally:
        store.close()
    sink.start()
    sink.close()
    assert _stored(tmp_path) == 2
    zero = _sink(tmp_path, index=0)
    zero.start()
    zero.close()
    assert _stored(tmp_path) == 1


def test_a_failing_batch_does_not_stop_the_writer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A batch the writer cannot encode (a stage left a fact that is not JSON) is logged
    with its traceback, and the writer goes on: the records after it are stored."""
    sink = _sink(tmp_path)
    sink.start()
    try:
        bad = ExchangeRecord(time.time(), "rid", "127.0.0.1", "GET", "/bad", "api:/", "api", 200, 0, 1, 0.001,
                             facts=MappingProxyType({"stage": object()}))
        with caplog.at_level(logging.ERROR, logger="bastion.audit"):
            sink(bad)
            deadline = time.monotonic() + 10
            while not any("failed a batch" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        for i in range(3):
            sink(_record(f"/after/{i}"))
    finally:
        sink.close()
    assert _stored(tmp_path) == 3
