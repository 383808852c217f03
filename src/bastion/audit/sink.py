"""The audit log's record sink and its two threads.

On the request path the sink only appends the (read-only) exchange record to a bounded
queue: O(1), never blocking, never awaiting. When the queue is full the record is dropped
and counted (``bastion_audit_dropped_total``); the writer logs how many, so a loss is never
silent. The *writer* thread takes the whole queue every ``flush_interval``, builds the
audit rows and appends them, as JSON lines, to the worker's spool (fsynced once a second)
and to the output. The *store* thread inserts what the spool holds into the store and then
empties it; a store that is slow or down only makes the spool grow, never the queue. At
stop, the writer writes everything still queued, and the store thread makes a last pass.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from bastion.audit.entry import audit_row, iso_time
from bastion.audit.output import JsonLinesOutput
from bastion.audit.spool import Spool, parse
from bastion.audit.syslog import SyslogOutput
from bastion.config.audit import AuditSettings
from bastion.config.model import StoreSettings
from bastion.proxy.metrics import METRICS, Metrics
from bastion.services import WorkerIdentity
from bastion.types import ExchangeRecord

log = logging.getLogger("bastion.audit")

#: Retention runs this often (seconds), in worker 0 of each instance.
RETENTION_INTERVAL = 60.0
#: A failing store or output is logged at most once per this many seconds.
ERROR_LOG_INTERVAL = 60.0


class AuditSink:
    """The ``audit`` record sink of one worker. :meth:`start` opens its files and starts the
    writer; :meth:`close` (blocking: call it in a thread) writes what is queued and stops."""

    name = "audit"

    def __init__(
        self,
        settings: AuditSettings,
        store: StoreSettings | None,
        identity: WorkerIdentity,
        metrics: Metrics = METRICS,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self._store_settings = store if settings.store else None
        self._metrics = metrics
        self._queue: deque[ExchangeRecord] = deque()
        self._capacity = settings.queue_size
        #: Records dropped for a full queue (written by the request path, read by the writer).
        self.dropped = 0
        self._dropped_logged = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._storer: threading.Thread | None = None
        #: Set once the writer wrote its last batch: the store thread makes its last pass.
        self._written = threading.Event()
        self._output: JsonLinesOutput | None = None
        self._syslog: SyslogOutput | None = None
        self._spool: Spool | None = None
        self._engine: Any = None
        self._store: Any = None
        self._retained_at = 0.0
        self._logged_at: dict[str, float] = {}
        self._prefix = os.urandom(6).hex()
        self._seq = 0
        self._second = -1
        self._second_text = ""
        #: Batches spooled and not yet stored, handed from the writer to the store thread
        #: (rows, start and end in the spool), and how many rows they hold.
        self._handoff: deque[tuple[list[dict[str, Any]], int, int]] = deque()
        self._handed = 0
        #: The store thread reads the spool itself (at start, and after a failed insert).
        self._replay = True
        #: Told, from the writer thread, how many records were just dropped (the worker
        #: raises an alert with it when the detectors run): a loss is never silent.
        self.on_loss: Callable[[int], None] | None = None

    # -- the request path -------------------------------------------------------------------
    def __call__(self, record: ExchangeRecord) -> None:
        queue = self._queue
        if len(queue) < self._capacity:
            queue.append(record)
        else:
            self.dropped += 1
            self._metrics.inc("bastion_audit_dropped", ())

    # -- the worker's start and stop ----------------------------------------------------------
    def start(self) -> None:
        """Open the output and the spool (an unwritable folder stops the worker's start)
        and start the writer, and the store thread, which first replays the spools."""
        settings = self.settings
        if settings.output is not None:
            self._output = JsonLinesOutput(settings.output, settings.rotate_bytes, settings.keep_files)
        if settings.syslog is not None:
            self._syslog = SyslogOutput(settings.syslog)
        if self._store_settings is not None:
            self._spool = Spool(settings.spool_dir, self.identity.index)
            self._storer = threading.Thread(target=self._run_store, name="bastion-audit-store", daemon=True)
            self._storer.start()
        self._thread = threading.Thread(target=self._run, name="bastion-audit", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write every queued record, then stop the threads and close the files."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._written.set()  # the writer is done: the store thread's last pass
        if self._storer is not None:
            self._storer.join()
            self._storer = None
        if self._spool is not None:
            self._spool.close()
        if self._output is not None:
            self._output.close()
        if self._syslog is not None:
            self._syslog.close()
        if self._store is not None:
            self._store.close()

    # -- the writer thread: queue -> rows -> spool and output -----------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.settings.flush_interval):
            self._guarded(self._batch)
        self._guarded(self._batch)
        if self._spool is not None:
            self._guarded(self._spool.sync)

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run a step of the writer; a failure is logged (once a minute) and the writer goes
        on: a writer that stopped would leave the queue to fill and every record dropped."""
        try:
            step()
        except Exception:
            now = time.monotonic()
            if now - self._logged_at.get("writer", -ERROR_LOG_INTERVAL) >= ERROR_LOG_INTERVAL:
                self._logged_at["writer"] = now
                log.exception("the audit writer failed a batch (it goes on)")

    def _batch(self) -> None:
        queue = self._queue
        n = len(queue)
        self._metrics.gauge_set("bastion_audit_queue_depth", float(n))
        self._report_drops()
        spool = self._spool
        if not n:
            if spool is not None:
                spool.sync_if_due()
            return
        newline = orjson.OPT_APPEND_NEWLINE
        rows = [self._row(queue.popleft()) for _ in range(n)]
        lines = b"".join([orjson.dumps(r, option=newline) for r in rows])
        if spool is not None:
            try:
                with spool.lock:
                    start, end = spool.append(lines)
                    self._hand_over(rows, start, end)
                spool.sync_if_due()
            except OSError as exc:  # a full disk: these may not reach the store; say so
                self._metrics.inc("bastion_audit_dropped", (), float(n))
                self._error("spool", "cannot write the audit spool %s (%d record(s) dropped): %s", spool.path, n, exc)
        if self._output is not None:
            try:
                self._output.write(lines)
            except OSError as exc:
                self._error("output", "cannot write the audit output %s: %s", self.settings.output, exc)
        if self._syslog is not None:
            self._send_syslog(self._syslog, rows)

    def _send_syslog(self, syslog: SyslogOutput, rows: list[dict[str, Any]]) -> None:
        """Send the batch to the syslog receiver; what it did not take is counted and logged."""
        try:
            lost = syslog.send(rows)
        except OSError as exc:
            lost = len(rows)
            self._error("syslog", "the syslog receiver %s did not take %d audit record(s): %s",
                        syslog.settings.address, lost, exc)
        else:
            if lost:
                self._error("syslog", "%d audit record(s) too large for a syslog datagram were not sent", lost)
        if lost:
            self._metrics.inc("bastion_audit_syslog_errors", (), float(lost))

    def _hand_over(self, rows: list[dict[str, Any]], start: int, end: int) -> None:
        """Give a spooled batch to the store thread (under the spool's lock). Beyond
        ``queue_size`` rows waiting (a store down for long) the oldest batches leave memory:
        the store thread finds the gap and reads them from the spool."""
        handoff = self._handoff
        handoff.append((rows, start, end))
        self._handed += len(rows)
        while self._handed > self._capacity and len(handoff) > 1:
            self._handed -= len(handoff.popleft()[0])

    def _row(self, record: ExchangeRecord) -> dict[str, Any]:
        self._seq += 1
        row = audit_row(record, f"{self._prefix}{self._seq:x}", self.identity.instance, self.identity.index)
        ts = record.ts
        second = int(ts)
        if second != self._second:  # the time's text, once a second (as the access log does)
            self._second = second
            self._second_text = iso_time(second)[:-5]
        row["time"] = f"{self._second_text}.{int(ts * 1000) % 1000:03d}Z"
        return row

    def _report_drops(self) -> None:
        dropped = self.dropped
        if dropped != self._dropped_logged:
            log.warning(
                "the audit queue was full (%d records): %d audit record(s) dropped (bastion_audit_dropped_total)",
                self._capacity,
                dropped - self._dropped_logged,
            )
            lost, self._dropped_logged = dropped - self._dropped_logged, dropped
            if self.on_loss is not None:
                self.on_loss(lost)

    # -- the store thread: spool -> store, retention ----------------------------------------------
    def _run_store(self) -> None:
        offset = 0
        replayed = False
        while True:
            last = self._written.wait(self.settings.flush_interval)
            try:
                engine = self._open_store()
                if not replayed:
                    self._replay_orphans(engine)
                    replayed = True
                offset = self._store_spool(engine, offset)
            except Exception as exc:  # the store's driver's, or StoreError: the spool keeps them
                self._metrics.inc("bastion_audit_store_errors", ())
                self._error("store", "the audit store did not take a batch (kept in the spool, written later): %s", exc)
            else:
                if self.identity.index == 0:
                    self._retain(engine)
            if last:
                return

    def _store_spool(self, engine: Any, offset: int) -> int:
        """Insert the batches the spool holds past ``offset``: those the writer handed over,
        or (after a failure, at start, or past a gap) what the file holds. Returns the
        offset to go on from (0 once the store has everything and the file is emptied)."""
        from bastion.audit.storage import insert_rows

        spool = self._spool
        assert spool is not None
        with spool.lock:
            batches = list(self._handoff)
            self._handoff.clear()
            self._handed = 0
            if self._replay or (batches and batches[0][1] != offset):
                data = spool.read_from(offset)
                batches = []
            else:
                data = b""
        if batches:
            self._replay = True  # until the store took them: a failure re-reads the file
            insert_rows(engine, [row for rows, _, _ in batches for row in rows])
            self._replay = False
            return self._stored(batches[-1][2])
        if not data:
            self._replay = False
            return offset
        # Appends happen under the lock, so the file holds whole batches past ``offset``
        # (but for a line a crash cut short, ended with a newline when the spool opened).
        insert_rows(engine, parse(data, spool.path))
        self._replay = False
        return self._stored(offset + len(data))

    def _stored(self, end: int) -> int:
        """The store has the spool up to ``end``: drop batches handed over meanwhile that it
        holds (read from the file), and empty the file if nothing came after ``end``."""
        spool = self._spool
        assert spool is not None
        with spool.lock:
            handoff = self._handoff
            while handoff and handoff[0][2] <= end:
                self._handed -= len(handoff.popleft()[0])
            return spool.stored(end)
    def _open_store(self) -> Any:
        if self._engine is None:
            from bastion.store import Store

            assert self._store_settings is not None
            if self._store is None:
                self._store = Store(self._store_settings)
            self._store.ready()
            self._engine = self._store.engine
        return self._engine

    def _replay_orphans(self, engine: Any) -> None:
        """The spools of workers that no longer run: into the store, then emptied."""
        from bastion.audit.storage import insert_rows

        spool = self._spool
        assert spool is not None
        with spool.orphans() as held:
            for path, fd in held:
                rows = parse(os.pread(fd, os.fstat(fd).st_size, 0), path)
                if rows:
                    insert_rows(engine, rows)
                    log.info("replayed %d audit record(s) from %s", len(rows), path)
                os.ftruncate(fd, 0)

    def _retain(self, engine: Any) -> None:
        from bastion.audit.storage import enforce_retention

        now = time.time()
        if now - self._retained_at < RETENTION_INTERVAL:
            return
        self._retained_at = now
        try:
            deleted = enforce_retention(engine, self.settings.retention, now)
        except Exception as exc:
            self._error("retention", "audit retention failed (tried again in a minute): %s", exc)
            return
        if deleted:
            log.info("audit retention deleted %d record(s)", deleted)

    def _error(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._logged_at.get(kind)
        if last is None or now - last >= ERROR_LOG_INTERVAL:
            self._logged_at[kind] = now
            log.error(message, *args)


__all__ = ["AuditSink"]
