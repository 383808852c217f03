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
from typing import Any

import orjson

from bastion.audit.entry import audit_row, iso_time
from bastion.audit.output import JsonLinesOutput
from bastion.audit.spool import Spool, parse
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
        self._spool: Spool | None = None
        self._engine: Any = None
        self._store: Any = None
        self._retained_at = 0.0
        self._logged_at: dict[str, float] = {}
        self._prefix = os.urandom(6).hex()
        self._seq = 0

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
        if self._store is not None:
            self._store.close()

    # -- the writer thread: queue -> rows -> spool and output -----------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.wait(self.settings.flush_interval):
                self._batch()
            self._batch()
            if self._spool is not None:
                self._spool.sync()
        except BaseException:  # never silent; what reached the spool is safe
            log.exception("the audit writer stopped")
            raise

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
        lines = b"".join(orjson.dumps(self._row(queue.popleft()), option=newline) for _ in range(n))
        if spool is not None:
            spool.append(lines)
        if self._output is not None:
            try:
                self._output.write(lines)
            except OSError as exc:
                self._error("output", "cannot write the audit output %s: %s", self.settings.output, exc)

    def _row(self, record: ExchangeRecord) -> dict[str, Any]:
        self._seq += 1
        row = audit_row(record, f"{self._prefix}{self._seq:x}", self.identity.instance, self.identity.index)
        row["time"] = iso_time(record.ts)
        return row

    def _report_drops(self) -> None:
        dropped = self.dropped
        if dropped != self._dropped_logged:
            log.warning(
                "the audit queue was full (%d records): %d audit record(s) dropped (bastion_audit_dropped_total)",
                self._capacity,
                dropped - self._dropped_logged,
            )
            self._dropped_logged = dropped

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
        """Insert what the spool holds past ``offset``; the offset to read from next."""
        from bastion.audit.storage import insert_rows

        spool = self._spool
        assert spool is not None
        data = spool.read_from(offset)
        if not data:
            return offset
        # A line being appended right now is read whole next time: take whole lines only.
        whole = data.rfind(b"\n") + 1
        insert_rows(engine, parse(data[:whole], spool.path))
        return spool.stored(offset + whole)

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
