"""The ``detectors`` record sink: attack patterns counted over every exchange's record.

On the request path the sink only appends the (read-only) record to a bounded batch; the
first record of a batch sets a timer, and ``TICK`` seconds later the worker's loop counts
the whole batch (an idle worker never wakes up for the detectors). The batch is grouped
by each detector's key in one pass (:mod:`bastion.detect.batch`), then each detector
counts in the state backend once per key -- fixed windows (a counter created with the
window's TTL, incremented by the key's number of records), so every worker of every
instance sharing a Redis counts together. Knowing the count before and after, a detector
finds the record of the key that reached its threshold, and fires on it as it would have
counting one record at a time. When a count reaches its threshold, the detector's
*incident* key is created (one atomic increment, with the window's TTL): whichever worker
creates it raises the alert, the others see it exists. One incident, one alert, with its
count and time span.

On a backend that answers at once (memory: ``StateBackend.immediate``) the timer's callback
counts the batch itself: the detectors' coroutines run to their end in one step, without a
task or a lock. Only a backend that makes them wait (Redis) counts in a task of the loop,
one batch after the other.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

from bastion.config.detectors import DetectorsSettings
from bastion.detect.alerts import Alert, AlertDelivery, new_alert_id
from bastion.detect.baseline import Baseline
from bastion.detect.batch import Batch, Plan
from bastion.detect.history import save_alert
from bastion.detect.mail import Mailer
from bastion.proxy.metrics import METRICS, Metrics
from bastion.services import Services
from bastion.stages.blocklist import block_key
from bastion.state.interface import StateBackend
from bastion.types import ExchangeRecord

log = logging.getLogger("bastion.detectors")

#: How long a batch gathers records before it is counted (seconds): an alert leaves well
#: within 2 s of its request, and a busy worker counts many records per state call.
TICK = 0.05
#: A failing state backend is logged at most once per this many seconds.
ERROR_LOG_INTERVAL = 60.0
#: Where the detectors' keys live in the state backend.
PREFIX = "det:"
#: A baseline not updated for this many intervals is forgotten (its key expires).
BASELINE_INTERVALS = 100
#: Most baselines a worker keeps in memory; past it the cache starts again.
BASELINE_CACHE = 100_000


def _digest(text: str) -> str:
    """A short, fixed-size key part for a client-chosen text (a path may be long)."""
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _finish_now(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` to its end now: it only awaits a backend that answers at once."""
    try:
        work.send(None)
    except StopIteration:
        return
    work.close()
    raise RuntimeError("a state backend that answers at once (immediate) made the detectors wait")


def _reached(before: int, threshold: float) -> int:
    """Which of the records counted after ``before`` (0 for the first) brought the count to
    ``threshold``: the first of them once it was reached already."""
    return max(math.ceil(threshold) - before - 1, 0)


class Detectors:
    """The record sink of one worker. :meth:`start` lets its batches be counted on the running
    loop; :meth:`close` counts what is left, lets alerts under way go out, and stops."""

    name = "detectors"

    def __init__(self, settings: DetectorsSettings, services: Services, metrics: Metrics = METRICS) -> None:
        self.settings = settings
        self._plan = Plan(settings)
        self._instance = services.identity.instance
        self._metrics = metrics
        self._batch: list[ExchangeRecord] = []
        self._capacity = settings.queue_size
        mailer = Mailer(settings.email) if settings.email is not None else None
        self.delivery = AlertDelivery(settings.webhooks, None, metrics, mailer=mailer)
        #: The loop batches are counted on, once started (until then, :meth:`drain` counts).
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The timer of the batch being gathered (``None``: no record since the last count).
        self._timer: asyncio.TimerHandle | None = None
        #: Batches are counted one after the other (a count may wait for Redis meanwhile; on
        #: the memory backend a count never waits, and runs in the timer's callback).
        self._counting = asyncio.Lock()
        self._saving: set[asyncio.Task[None]] = set()
        self.use(services)
        self._logged_at = 0.0
        #: The blocks this worker placed: state key -> when it expires (monotonic seconds).
        self._blocks: dict[str, float] = {}
        #: The baselines read this interval (a state read per interval, not per record).
        self._baselines: dict[str, Baseline] = {}

    # -- the request path -------------------------------------------------------------------
    def __call__(self, record: ExchangeRecord) -> None:
        batch = self._batch
        if len(batch) >= self._capacity:
            self._metrics.inc("bastion_detectors_dropped", ())
            return
        batch.append(record)
        if self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(TICK, self._due)

    def use(self, services: Services) -> None:
        """Count in ``services``' state backend, deliver with its HTTP client and keep alerts in
        its store from now on (a reload that changed the backends gives new services)."""
        settings = self.settings
        self._state: StateBackend = services.state
        self.delivery.http = services.http if settings.webhooks else None
        #: Where alerts are kept (``None``: no history).
        self._services: Services | None = services if settings.history and services.store_settings else None

    def audit_loss(self, lost: int) -> None:
        """Raise an alert for ``lost`` audit records dropped (the audit queue was full): one per
        instance and minute, however many batches lost records meanwhile. Called on the loop
        (the audit writer thread hands it over with ``call_soon_threadsafe``)."""
        instance = self._instance
        self._keep(self._incident(
            "audit_loss", f"audit:{instance}", {"instance": instance}, lost, time.time(), 60.0, "high", "alert",
            f"{lost} audit record(s) dropped on instance {instance}: the audit queue was full "
            "(bastion_audit_dropped_total)",
        ))

    def _keep(self, work: Awaitable[None]) -> None:
        """Run ``work`` in a task of the loop that :meth:`close` waits for."""
        task = asyncio.ensure_future(work)
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    # -- the worker's start and stop ----------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._batch and self._timer is None:
            self._timer = self._loop.call_later(TICK, self._due)

    async def close(self) -> None:
        self._loop = None  # records still handed over wait for the count below
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.drain()
        await self.delivery.close()
        while self._saving:
            await asyncio.gather(*self._saving)

    def _due(self) -> None:
        self._timer = None
        if self._state.immediate and not self._counting.locked():
            # Nothing to wait for: counted here, no task and no lock (a batch of one record
            # costs less than the task would).
            _finish_now(self._count_all())
        else:
            self._keep(self.drain())

    async def drain(self) -> None:
        """Count every record handed over so far (tests call it to skip the wait)."""
        async with self._counting:
            await self._count_all()

    async def _count_all(self) -> None:
        """Count the batches handed over (with the records added meanwhile, when the state
        backend made the count wait), then the blocks still active."""
        while self._batch:
            batch, self._batch = self._batch, []
            await self._count_batch(batch)
        self._count_blocks(time.monotonic())

    async def _count_batch(self, records: list[ExchangeRecord]) -> None:
        plan = self._plan
        batch = Batch()
        for record in records:
            batch.add(plan, record)
        try:
            await self._count(batch)
        except Exception as exc:  # the state backend unreachable: the batch is not counted
            self._metrics.inc("bastion_detector_errors", (), float(len(records)))
            now = time.monotonic()
            if now - self._logged_at >= ERROR_LOG_INTERVAL:
                self._logged_at = now
                log.error("the detectors could not count %d record(s) (%s: %s)", len(records),
                          type(exc).__name__, exc)

    def _count_blocks(self, now: float) -> None:
        """Forget the blocks that expired; the gauge of active blocks is how many are left."""
        blocks = self._blocks
        expired = [key for key, until in blocks.items() if until <= now]
        for key in expired:
            del blocks[key]
        self._metrics.gauge_set("bastion_blocks_active", float(len(blocks)))

    # -- the detectors ------------------------------------------------------------------------
    async def _count(self, batch: Batch) -> None:
        """Count a batch for every enabled detector, key by key; raise the alerts it completes."""
        s = self.settings
        d = s.brute_force
        for ip, times in batch.failures.items():
            await self._threshold(
                "brute_force", f"bf:{ip}", {"ip": ip}, times, d.threshold, d.window, d.severity, d.action,
                f"{{n}} failed authentications from {ip} within {d.window:g} s", d.block_ttl,
            )
        d2 = s.scanner
        for ip, times in batch.probes.items():
            await self._threshold(
                "scanner", f"sp:{ip}", {"ip": ip}, times, d2.probe_threshold, d2.window, d2.severity,
                d2.action, f"{{n}} scanner probes (probe paths, scanner user agents) from {ip}", d2.block_ttl,
            )
        for ip, times in batch.not_found.items():
            await self._threshold(
                "scanner", f"se:{ip}", {"ip": ip}, times, d2.error_threshold, d2.window, d2.severity,
                d2.action, f"{{n}} answers 404/405 to {ip} within {d2.window:g} s", d2.block_ttl,
            )
        d3 = s.injection
        for ip, times in batch.attacks.items():
            await self._threshold(
                "injection", f"in:{ip}", {"ip": ip}, times, d3.threshold, d3.window, d3.severity, d3.action,
                f"{{n}} requests from {ip} blocked as attacks by the detection stage", d3.block_ttl,
            )
        for credential, records in batch.credentials.items():
            await self._token_sharing(credential, records)
        for (consumer, route), records in batch.objects.items():
            await self._enumeration(consumer, route, records)
        for account, records in batch.accounts.items():
            await self._account(account, records)
        for (consumer, route, bucket), records in batch.traffic.items():
            await self._traffic(consumer, route, bucket, records)
        for (route, bucket), records in batch.answers.items():
            await self._errors(route, bucket, records)

    async def _counted(self, key: str, times: list[float], window: float) -> int:
        """Count the events at ``times`` under ``key`` in a window of ``window`` seconds (one
        increment); the window's first event also records when it happened (the incident's
        start). The count after them."""
        state = self._state
        n = await state.incr(PREFIX + key, len(times), window)
        if n == len(times):
            await state.set(PREFIX + "t0:" + key, times[0], window)
        return n

    async def _threshold(
        self,
        detector: str,
        key: str,
        subject: dict[str, str],
        times: list[float],
        threshold: int,
        window: float,
        severity: str,
        action: str,
        summary: str,
        block_ttl: float,
    ) -> None:
        n = await self._counted(key, times, window)
        if n >= threshold:
            i = _reached(n - len(times), threshold)  # the event that reached it
            count = n - len(times) + i + 1
            await self._incident(
                detector, key, subject, count, times[i], window, severity, action, summary.format(n=count),
                block_ttl,
            )

    async def _incident(
        self,
        detector: str,
        key: str,
        subject: dict[str, str],
        count: int,
        ts: float,
        window: float,
        severity: str,
        action: str,
        summary: str,
        block_ttl: float = 0.0,
    ) -> None:
        """Raise the alert (and, with ``action: block``, block its subject for ``block_ttl``),
        unless this incident (detector and key, within the window) already has one."""
        state = self._state
        if await state.incr(PREFIX + "inc:" + key, 1, window) != 1:
            return
        if action == "block":
            # The subject's one entry names what it is: {"ip": ...}, {"credential": ...}, or
            # {"consumer": ..., "route": ...} (the consumer is blocked, on every route).
            kind, value = next(iter(subject.items()))
            key = block_key(kind, value)
            await state.set(key, detector, block_ttl)
            self._metrics.inc("bastion_detector_blocks", (detector, kind))
            self._blocks[key] = time.monotonic() + block_ttl
        first = await state.get(PREFIX + "t0:" + key)
        first_seen = float(first) if first is not None else ts
        alert = Alert(
            id=new_alert_id(),
            detector=detector,
            severity=severity,
            action=action,
            summary=summary,
            subject=subject,
            count=count,
            window=window,
            first_seen=min(first_seen, ts),
            last_seen=ts,
            instance=self._instance,
        )
        self.delivery.send(alert)
        if self._services is not None:
            task = asyncio.get_running_loop().create_task(self._save(self._services, alert))
            self._saving.add(task)
            task.add_done_callback(self._saving.discard)

    async def _save(self, services: Services, alert: Alert) -> None:
        """Keep ``alert`` in the store (in a thread: the store's driver blocks)."""
        try:
            await asyncio.to_thread(save_alert, services.store, alert)
        except Exception as exc:  # the store down: the alert went out, its history misses it
            log.error("alert %s could not be kept in the store (%s: %s)", alert.id, type(exc).__name__, exc)

    async def _fresh_ips(self, base: str, records: list[ExchangeRecord], window: float) -> list[ExchangeRecord]:
        """The first record of each client IP of ``records`` not seen under ``base`` within the
        window (each IP's own key says whether it was: one increment per IP), in order."""
        firsts: dict[str, ExchangeRecord] = {}
        counts: dict[str, int] = {}
        for record in records:
            ip = record.client
            seen = counts.get(ip, 0)
            if not seen:
                firsts[ip] = record
            counts[ip] = seen + 1
        state = self._state
        fresh: list[ExchangeRecord] = []
        for ip, record in firsts.items():
            amount = counts[ip]
            if await state.incr(f"{PREFIX}{base}:{ip}", amount, window) == amount:
                fresh.append(record)
        return fresh

    async def _token_sharing(self, credential: str, records: list[ExchangeRecord]) -> None:
        d = self.settings.token_sharing
        base = f"ts:{_digest(credential)}"
        # A client IP counts once per window.
        fresh = await self._fresh_ips(base, records, d.window)
        if not fresh:
            return
        n = await self._counted(base, [record.ts for record in fresh], d.window)
        if n > d.max_ips:
            i = _reached(n - len(fresh), d.max_ips + 1)
            count = n - len(fresh) + i + 1
            await self._incident(
                "token_sharing", base, {"credential": credential}, count, fresh[i].ts, d.window, d.severity,
                d.action,
                f"credential {credential} used from {count} client IPs within {d.window:g} s (at most {d.max_ips})",
                d.block_ttl,
            )

    async def _enumeration(self, consumer: str, route: str, records: list[ExchangeRecord]) -> None:
        d = self.settings.enumeration
        state = self._state
        base = f"en:{_digest(consumer + chr(0) + route)}"
        total = await self._counted(base, [record.ts for record in records], d.window) - len(records)
        denied_key = f"{PREFIX}{base}:denied"
        refused = sum(1 for record in records if record.status in (403, 404))
        if refused:
            denied = await state.incr(denied_key, refused, d.window) - refused
        else:
            denied = await self._int(denied_key)
        # The first record of each path not asked within the window adds a distinct object.
        firsts: dict[str, ExchangeRecord] = {}
        counts: dict[str, int] = {}
        for record in records:
            path = record.path
            if path is not None:
                seen = counts.get(path, 0)
                if not seen:
                    firsts[path] = record
                counts[path] = seen + 1
        fresh: list[ExchangeRecord] = []
        for path, record in firsts.items():
            amount = counts[path]
            if await state.incr(f"{PREFIX}{base}:p:{_digest(path)}", amount, d.window) == amount:
                fresh.append(record)
        if not fresh:
            return  # only a new object can complete an enumeration
        distinct = await state.incr(f"{PREFIX}{base}:distinct", len(fresh), d.window) - len(fresh)
        # The records again, in order, with the counts each one saw.
        j = 0
        for record in records:
            total += 1
            if record.status in (403, 404):
                denied += 1
            if j < len(fresh) and record is fresh[j]:
                j += 1
                distinct += 1
                if distinct >= d.distinct and denied >= d.denied_ratio * total:
                    await self._incident(
                        "enumeration", base, {"consumer": consumer, "route": route}, distinct, record.ts,
                        d.window, d.severity, d.action,
                        f"consumer {consumer} asked route {route} for {distinct} distinct objects, {denied} of "
                        f"{total} answered 403/404",
                        d.block_ttl,
                    )
                    return

    async def _account(self, account: str, records: list[ExchangeRecord]) -> None:
        d = self.settings.account_brute_force
        state = self._state
        base = f"ab:{account}"
        failures = await self._counted(base, [record.ts for record in records], d.window) - len(records)
        fresh = await self._fresh_ips(base, records, d.window)
        ips_key = f"{PREFIX}{base}:ips"
        if fresh:
            ips = await state.incr(ips_key, len(fresh), d.window) - len(fresh)
        else:
            ips = await self._int(ips_key)
        # The records again, in order, with the counts each one saw.
        j = 0
        for record in records:
            failures += 1
            if j < len(fresh) and record is fresh[j]:
                j += 1
                ips += 1
            if failures >= d.threshold and ips >= d.min_ips:
                await self._incident(
                    "account_brute_force", base, {"account": account}, failures, record.ts, d.window, d.severity,
                    d.action, f"{failures} failed logins on one account from {ips} client IPs within {d.window:g} s",
                )
                return

    async def _baseline(self, key: str, bucket: int, first: bool, alpha: float, ttl: float,
                        previous: Callable[[], Awaitable[float | None]], *, gaps: bool) -> Baseline:
        """The baseline under ``key`` as of ``bucket``; the first event of an interval (``first``)
        folds the previous interval's number (``previous``, ``None``: nothing to fold) into it."""
        cached = self._baselines.get(key)
        if cached is not None and cached.last == bucket - 1 and not first:
            return cached
        state = self._state
        baseline = Baseline.decode(await state.get(PREFIX + key))
        if first:
            sample = await previous()
            if sample is not None:
                baseline = baseline.fold(bucket - 1, sample, alpha, gaps=gaps)
                await state.set(PREFIX + key, baseline.encode(), ttl)
        # Kept for the rest of the interval once it includes the previous one (the worker that
        # folds it may not have written it yet: a baseline older than that is read again).
        if baseline.last == bucket - 1:
            if len(self._baselines) >= BASELINE_CACHE:
                self._baselines.clear()
            self._baselines[key] = baseline
        return baseline

    async def _traffic(self, consumer: str, route: str, bucket: int, records: list[ExchangeRecord]) -> None:
        d = self.settings.traffic_spike
        state = self._state
        base = f"tr:{_digest(consumer + chr(0) + route)}"
        k = len(records)
        n = await state.incr(f"{PREFIX}{base}:{bucket}", k, d.interval * 2)
        baseline = await self._baseline(
            f"{base}:avg", bucket, n == k, d.alpha, d.interval * BASELINE_INTERVALS,
            partial(self._number, f"{PREFIX}{base}:{bucket - 1}"), gaps=True,
        )
        usual = baseline.expected(d.alpha)
        limit = max(d.min_requests, d.factor * usual)
        if baseline.samples >= d.learn and n >= limit:
            i = _reached(n - k, limit)
            count = n - k + i + 1
            await self._incident(
                "traffic_spike", base, {"consumer": consumer, "route": route}, count, records[i].ts, d.interval,
                d.severity, d.action,
                f"consumer {consumer} called route {route} {count} times within {d.interval:g} s "
                f"(usually {usual:.1f})",
                d.block_ttl,
            )

    async def _errors(self, route: str, bucket: int, records: list[ExchangeRecord]) -> None:
        d = self.settings.error_spike
        state = self._state
        base = f"er:{_digest(route)}"
        ttl = d.interval * 2
        k = len(records)
        failed = sum(1 for record in records if record.status >= 500)
        n = await state.incr(f"{PREFIX}{base}:{bucket}", k, ttl) - k
        if n and not failed:
            return  # nothing to fold, and no error to judge by
        errors = await state.incr(f"{PREFIX}{base}:{bucket}:5xx", failed, ttl) - failed if failed else 0
        baseline = await self._baseline(
            f"{base}:avg", bucket, n == 0, d.alpha, d.interval * BASELINE_INTERVALS,
            partial(self._ratio, f"{PREFIX}{base}:{bucket - 1}", d.min_requests), gaps=False,
        )
        if not failed:
            return
        usual = baseline.expected(d.alpha)
        floor = max(d.ratio, d.factor * usual)
        # The records again, in order: each 5xx is judged with the counts it saw.
        for record in records:
            n += 1
            if record.status >= 500:
                errors += 1
                share = errors / n
                if n >= d.min_requests and share >= floor:
                    await self._incident(
                        "error_spike", base, {"route": route}, errors, record.ts, d.interval, d.severity, d.action,
                        f"route {route} answered {errors} of {n} requests with 5xx within {d.interval:g} s "
                        f"({share:.0%}; usually {usual:.0%})",
                    )
                    return

    async def _int(self, key: str) -> int:
        value = await self._state.get(key)
        return 0 if value is None else int(value)

    async def _number(self, key: str) -> float | None:
        """An interval's count, ``None`` when it had no event: a quiet interval is folded as a
        zero with the next busy one (a gap), and none is folded before the first busy one."""
        count = await self._int(key)
        return float(count) if count else None

    async def _ratio(self, key: str, least: int) -> float | None:
        """An interval's share of 5xx, ``None`` when it had fewer than ``least`` requests (too
        few to say what is usual)."""
        requests = await self._int(key)
        if requests < least:
            return None
        return await self._int(key + ":5xx") / requests
