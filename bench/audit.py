"""Per-request cost of the audit log, in process, against the access log alone, same run.

    python bench/audit.py

An allowed request's record, as the proxy makes it (``bench/record.py``'s loop: begun with
the head, filled in, completed and handed to the worker's sinks), with the sinks of a worker
without the audit log (metrics, the access log writing to /dev/null) and with it (the same,
then the ``AuditSink``), the two interleaved in each repeat: the difference is the audit
log's *request path* cost (target: at most 10 µs). Then, *off the request path*, the CPU the
sink's writer and store threads spend per record to take all those records to the spool, the
JSON lines (/dev/null) and the store (a SQLite file): work that competes with the event loop
for the interpreter, so it bounds the throughput, not the latency of a request. Run it in a
compiled install: in an editable (pure-Python) one it measures the interpreter.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import statistics
import tempfile
import time
import timeit
from pathlib import Path

from bastion.audit import AuditSink
from bastion.audit.storage import count
from bastion.config.audit import AuditSettings
from bastion.config.model import StoreSettings
from bastion.proxy import record
from bastion.proxy.accesslog import AccessLog
from bastion.proxy.http1 import Incoming
from bastion.proxy.metrics import CountMetrics
from bastion.services import WorkerIdentity
from bastion.types import Exchange, ExchangeRecord, Request

BATCH = 256
ROUNDS = 100
REPEATS = 5
REQUEST_ID = "5f0c6d0e8d1a4b7c9e2f3a4b5c6d7e8f"


def one_batch(sinks: record.RecordSinks, req: Incoming, request: Request) -> float:
    """Seconds for BATCH records, built and handed to ``sinks`` as the proxy does."""
    new_record, finish_record = record.new_record, record.finish_record
    t0 = time.perf_counter()
    for _ in range(BATCH):
        req.started = time.perf_counter()
        ex = Exchange(request, REQUEST_ID, "api", "api:/v1/items/{id}", req.started)
        draft = new_record(req, REQUEST_ID, "127.0.0.1")
        draft.path = "/v1/items/42"
        draft.route = "api:/v1/items/{id}"
        draft.service = "api"
        draft.bytes_in = 0
        draft.upstream = "http://127.0.0.1:9000"
        draft.status = 200
        draft.bytes_out = 512
        finish_record(sinks, ex, draft, req)
    return time.perf_counter() - t0


def sink_call(audit: AuditSink) -> float:
    """µs of the sink's own call (the bounded queue's append), the queue emptied after each
    batch as its writer does: the part of the request path that is the audit log's alone."""
    rec = ExchangeRecord(
        time.time(), REQUEST_ID, "127.0.0.1", "GET", "/v1/items/42", "api:/", "api", 200, 0, 512, 0.001
    )
    queue = audit._queue
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for _ in range(ROUNDS):
            for _ in range(BATCH):
                audit(rec)
            queue.clear()
        best = min(best, (time.perf_counter() - t0) / (ROUNDS * BATCH) * 1e6)
    return best


async def measure(folder: Path) -> tuple[list[float], list[float], float, float, float, int]:
    total = REPEATS * ROUNDS * BATCH
    settings = AuditSettings(enabled=True, output=os.devnull, spool_dir=folder / "spool", queue_size=total + 1)
    store = StoreSettings(url=f"sqlite:///{folder / 'bastion.db'}", pepper_file=folder / "pepper")
    audit = AuditSink(settings, store, WorkerIdentity("bench", 0, 1, os.getpid()))
    log = AccessLog(os.devnull)
    without = record.RecordSinks([CountMetrics(), log])
    with_audit = record.RecordSinks([CountMetrics(), log, audit])
    req = Incoming()
    req.host = "gw.test"
    req.headers = [("host", "gw.test"), ("user-agent", "bench/1.0"), ("accept", "*/*")]
    request = Request("GET", "/v1/items/42", "/v1/items/42", "", req.headers)
    base_runs, audit_runs = [], []
    # The writer is not started yet: the loops measure the request path alone.
    for _ in range(REPEATS):
        base = audited = 0.0
        for _ in range(ROUNDS):
            base += one_batch(without, req, request)
            audited += one_batch(with_audit, req, request)
            audit._queue.clear()  # as its writer takes it: a worker holds no backlog
            log.flush()
            await asyncio.sleep(0)  # the access log's timer, as on a worker's loop
        base_runs.append(base / (ROUNDS * BATCH) * 1e6)
        audit_runs.append(audited / (ROUNDS * BATCH) * 1e6)
    log.close()
    # Off the request path: the writer and store threads take a queue of as many records to
    # the spool, the output and the store. Their CPU competes with the event loop for the GIL.
    for _ in range(REPEATS * ROUNDS):
        one_batch(with_audit, req, request)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    audit.start()
    await asyncio.to_thread(audit.close)
    cpu = (time.process_time() - cpu0) / total * 1e6
    wall = (time.perf_counter() - wall0) / total * 1e6
    stored = count(audit._store.engine) if audit._store is not None else 0
    return base_runs, audit_runs, sink_call(audit), cpu, wall, stored


def main() -> None:
    calibration = min(timeit.repeat("sum(range(1000))", number=10_000, repeat=5)) / 10_000 * 1e6
    compiled = inspect.getfile(record).endswith(".so")
    with tempfile.TemporaryDirectory(prefix="bastion-audit-bench-") as folder:
        base_runs, audit_runs, call, cpu, wall, stored = asyncio.run(measure(Path(folder)))
    diffs = [a - b for a, b in zip(audit_runs, base_runs, strict=True)]
    print(f"{'compiled' if compiled else 'pure Python'}; calibration sum(range(1000)) = {calibration:.1f} µs")
    print(f"request path, metrics + access log:         min {min(base_runs):.2f} µs, "
          f"median {statistics.median(base_runs):.2f} µs per record")
    print(f"request path, metrics + access log + audit: min {min(audit_runs):.2f} µs, "
          f"median {statistics.median(audit_runs):.2f} µs per record")
    print(f"audit log on the request path:              median {statistics.median(diffs):.2f} µs per record "
          f"(target <= 10 µs); the sink's own call: min {call:.2f} µs")
    print(f"off the request path (writer + store threads): {cpu:.1f} µs CPU, {wall:.1f} µs wall per record; "
          f"{stored} of {REPEATS * ROUNDS * BATCH} records stored")


if __name__ == "__main__":
    main()
