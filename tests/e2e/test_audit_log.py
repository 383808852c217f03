"""The audit log with a real ``bastion serve`` of two workers, real requests and real signals:
N requests in, N records out after a SIGTERM; after a SIGKILL of every process, every
request answered more than a second before the kill is in the store once the gateway
restarts (its spool replayed); a full queue drops records, counts every one and says so."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import sqlite3
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bastion.certs import generate_self_signed
from bastion.testing import GatewayProcess
from tests.proxy.scripted import ScriptedUpstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


def _config(upstream: ScriptedUpstream, **audit: Any) -> dict[str, Any]:
    return {
        "access_log": {"enabled": False},
        "audit": {"enabled": True, "output": "audit.log", **audit},
        "services": [{"name": "api", "upstream": upstream.url,
                      "routes": [{"path": "/", "prefix": True, "public": True}]}],
    }


def _get(gw: GatewayProcess, path: str) -> int:
    """One GET on a new connection (so the kernel spreads them over the workers)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.request("GET", path, headers={"User-Agent": "audit-e2e/1", "Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _stored(folder: Path, run: str) -> list[sqlite3.Row]:
    """The store's audit rows of this test's requests (paths start with ``/<run>/``)."""
    db = folder / "bastion.db"
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute("SELECT * FROM audit_records WHERE path LIKE ?", (f"/{run}/%",)).fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return []


def _wait_stored(folder: Path, run: str, count: int, timeout: float = 15.0) -> list[sqlite3.Row]:
    deadline = time.monotonic() + timeout
    rows = _stored(folder, run)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = _stored(folder, run)
    return rows


def test_every_request_is_in_the_store_and_the_output_after_a_sigterm(
    upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    """200 requests over two workers, then SIGTERM: the gateway exits 0 and the store holds
    exactly one complete record per request (both workers' records, no duplicate), and the
    JSON lines output the same 200."""
    run = uuid.uuid4().hex[:12]
    n = 200
    gw = GatewayProcess(_config(upstream), workers=2, folder=tmp_path)
    with gw:
        for i in range(n):
            assert _get(gw, f"/{run}/{i}") == 200
    assert gw.proc is not None and gw.proc.returncode == 0, gw.stderr_text()
    rows = _stored(tmp_path, run)
    assert sorted(r["path"] for r in rows) == sorted(f"/{run}/{i}" for i in range(n))
    assert len({r["request_id"] for r in rows}) == n
    assert {r["worker"] for r in rows} == {0, 1}
    row = rows[0]
    assert (row["method"], row["status"], row["decision"], row["route"], row["service"]) == (
        "GET", 200, "allowed", "api:/", "api")
    assert (row["host"], row["user_agent"], row["client"], row["tls"]) == (
        f"127.0.0.1:{gw.port}", "audit-e2e/1", "127.0.0.1", None)
    assert row["upstream_ms"] is not None and 0 < row["upstream_ms"] <= row["latency_ms"]
    assert row["instance"] and row["bytes_out"] > 0
    lines = [orjson.loads(line) for line in (tmp_path / "audit.log").read_bytes().splitlines()]
    assert sorted(r["path"] for r in lines if r["path"].startswith(f"/{run}/")) == sorted(r["path"] for r in rows)
    assert {line["id"] for line in lines} == {r["id"] for r in rows}


def test_a_request_over_tls_records_its_version(upstream: ScriptedUpstream, tmp_path: Path) -> None:
    """Over HTTPS the record names the connection's TLS version (TLS 1.3 between Python's
    client and the gateway's defaults); a refusal by the core is recorded too, blocked by
    ``core`` with its reason."""
    cert, key = tmp_path / "gw.pem", tmp_path / "gw.key"
    generate_self_signed(cert, key, hosts=["127.0.0.1"])
    config = _config(upstream)
    config["listen"] = {"tls": {"cert": str(cert), "key": str(key)}}
    config["services"][0]["routes"] = [{"path": "/known", "prefix": True, "public": True}]
    with GatewayProcess(config, folder=tmp_path) as gw:
        ctx = ssl.create_default_context(cafile=str(cert))
        for path in ("/known/a", "/unknown"):
            conn = http.client.HTTPSConnection("127.0.0.1", gw.port, context=ctx, timeout=10)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
    with sqlite3.connect(tmp_path / "bastion.db") as db:
        rows = db.execute("SELECT path, status, tls, decision, stage, rule FROM audit_records ORDER BY ts").fetchall()
    assert rows == [
        ("/known/a", 200, "TLSv1.3", "allowed", None, None),
        ("/unknown", 404, "TLSv1.3", "blocked", "core", "route.not_found"),
    ]


def test_a_sigkill_loses_at_most_the_last_second(upstream: ScriptedUpstream, tmp_path: Path) -> None:
    """Requests for three seconds against two workers, the store locked by another writer
    for the last 1.5 s (so records wait in the spools), then SIGKILL to the supervisor and
    its workers at once; the gateway restarted on the same folder replays the spools: every
    request answered more than one second before the kill is in the store, exactly once."""
    run = uuid.uuid4().hex[:12]
    gw = GatewayProcess(_config(upstream), workers=2, folder=tmp_path)
    answered: list[tuple[float, str]] = []
    with gw:
        assert _get(gw, f"/{run}/first") == 200
        assert len(_wait_stored(tmp_path, run, 1)) == 1  # the store is migrated
        answered.append((time.monotonic(), f"/{run}/first"))
        lock = sqlite3.connect(tmp_path / "bastion.db", timeout=10, isolation_level=None)
        start = time.monotonic()
        locked = 0.0
        i = 0
        while time.monotonic() - start < 3.0:
            if not locked and time.monotonic() - start > 1.5:
                lock.execute("BEGIN EXCLUSIVE")
                locked = time.monotonic()
            path = f"/{run}/{i}"
            assert _get(gw, path) == 200
            answered.append((time.monotonic(), path))
            i += 1
        assert gw.proc is not None
        killed = time.monotonic()
        os.killpg(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait()
        lock.execute("ROLLBACK")
        lock.close()
    before = {p for t, p in answered if t < killed - 1.0}
    only_spooled = {p for t, p in answered if locked < t < killed - 1.0}
    assert only_spooled and not only_spooled & {r["path"] for r in _stored(tmp_path, run)}
    again = GatewayProcess(gw.config, workers=2, folder=tmp_path)
    with again:
        rows = _wait_stored(tmp_path, run, len(before))
        deadline = time.monotonic() + 15
        while not before <= {r["path"] for r in rows} and time.monotonic() < deadline:
            time.sleep(0.2)
            rows = _stored(tmp_path, run)
    paths = [r["path"] for r in rows]
    assert before <= set(paths), f"lost {len(before - set(paths))} of {len(before)}"
    assert len(paths) == len(set(paths)) <= len(answered)


def _metric(gw: GatewayProcess, name: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", gw.admin_port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_a_full_queue_drops_records_counted_and_logged(upstream: ScriptedUpstream, tmp_path: Path) -> None:
    """One worker whose JSON lines output is a pipe nobody reads (so its writer blocks and
    its queue of 100 fills): of 400 requests, every one is answered at once, the records
    that did not fit are counted in ``bastion_audit_dropped_total`` and logged, and once
    the pipe is read, stored + dropped is exactly 400 and the pipe got every stored one."""
    run = uuid.uuid4().hex[:12]
    n = 400
    pipe = tmp_path / "audit.pipe"
    os.mkfifo(pipe)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)  # the worker can open it; nobody reads yet
    gw = GatewayProcess(_config(upstream, queue_size=100, output="audit.pipe"), workers=1, folder=tmp_path)
    received = bytearray()
    try:
        with gw:
            for i in range(n):
                assert _get(gw, f"/{run}/{i}") == 200
            deadline = time.monotonic() + 20
            while True:
                with contextlib.suppress(BlockingIOError):
                    received += os.read(reader, 1 << 20)
                dropped = _metric(gw, "bastion_audit_dropped_total")
                stored = len(_stored(tmp_path, run))
                if (stored + dropped == n and received.count(b"\n") >= stored) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert dropped > 0 and stored + dropped == n
            assert "audit record(s) dropped" in gw.stderr_text()
    finally:
        os.close(reader)
    piped = {orjson.loads(line)["path"] for line in bytes(received).splitlines()}
    assert {r["path"] for r in _stored(tmp_path, run)} == piped
