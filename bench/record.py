"""Per-request cost of the exchange record, in process.

    python bench/record.py

An allowed request's record, as the proxy makes it: begun with the head (``new_record``),
filled in as the exchange goes (path, route, service, client, bytes, upstream, status),
completed into its read-only ``ExchangeRecord`` and handed to the worker's sinks (metrics,
then the access log, writing to /dev/null): the *request path* figure. Then the *batch*
figure: the access log turning each batch of 256 records into JSON lines and writing them,
off the request path but on the same event loop. Run it in a compiled install: in an
editable (pure-Python) one it measures the interpreter.

A CPU calibration figure (``sum(range(1000))``) lets numbers from different machines compare.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import statistics
import time
import timeit

from bastion.proxy import record
from bastion.proxy.accesslog import AccessLog
from bastion.proxy.http1 import Incoming
from bastion.proxy.metrics import CountMetrics
from bastion.types import Exchange, Request

BATCH = 256
ROUNDS = 400
REPEATS = 7
REQUEST_ID = "5f0c6d0e8d1a4b7c9e2f3a4b5c6d7e8f"


async def measure() -> tuple[list[float], list[float]]:
    log = AccessLog(os.devnull)
    sinks = record.RecordSinks([CountMetrics(), log])
    req = Incoming()
    request = Request("GET", "/v1/items/42", "/v1/items/42", "", [("host", "gw.test")])
    new_record, finish_record = record.new_record, record.finish_record

    def one_batch() -> float:
        t0 = time.perf_counter()
        for _ in range(BATCH):
            req.started = time.perf_counter()
            ex = Exchange(request, REQUEST_ID, "api", "api:/v1/items/{id}", req.started)
            draft = new_record(req, REQUEST_ID, "127.0.0.1")
            draft.path = "/v1/items/42"
            draft.route = "api:/v1/items/{id}"
            draft.service = "api"
            draft.client = "127.0.0.1"
            draft.bytes_in = 0
            draft.upstream = "http://127.0.0.1:9000"
            draft.status = 200
            draft.bytes_out = 512
            finish_record(sinks, ex, draft, req)
        return time.perf_counter() - t0

    path_runs, batch_runs = [], []
    for _ in range(REPEATS):
        path_total = batch_total = 0.0
        for _ in range(ROUNDS):
            path_total += one_batch()
            t0 = time.perf_counter()
            log.flush()
            batch_total += time.perf_counter() - t0
        path_runs.append(path_total / (ROUNDS * BATCH) * 1e6)
        batch_runs.append(batch_total / (ROUNDS * BATCH) * 1e6)
    log.close()
    return path_runs, batch_runs


def main() -> None:
    calibration = min(timeit.repeat("sum(range(1000))", number=10_000, repeat=5)) / 10_000 * 1e6
    compiled = inspect.getfile(record).endswith(".so")
    path_runs, batch_runs = asyncio.run(measure())
    print(f"{'compiled' if compiled else 'pure Python'}; calibration sum(range(1000)) = {calibration:.1f} µs")
    print(f"request path:   min {min(path_runs):.2f} µs, median {statistics.median(path_runs):.2f} µs per record")
    print(f"batch encoding: min {min(batch_runs):.2f} µs, median {statistics.median(batch_runs):.2f} µs per record")


if __name__ == "__main__":
    main()
