"""The ``detectors`` record sink: attack patterns counted over every exchange's record.

On the request path the sink only appends the (read-only) record to a bounded queue; a
task of the worker's loop takes the queue every ``TICK`` seconds and counts what each
detector looks for in the state backend -- fixed windows (a counter created with the
window's TTL), so every worker of every instance sharing a Redis counts together. When a
count reaches its threshold, the detector's *incident* key is created (one atomic
increment, with the window's TTL): whichever worker creates it raises the alert, the
others see it exists. One incident, one alert, with its count and time span.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial

from bastion.config.detectors import DetectorsSettings
from bastion.detect.alerts import Alert, AlertDelivery, new_alert_id
from bastion.detect.baseline import Baseline
from bastion.detect.history import save_alert
from bastion.detect.mail import Mailer
from bastion.proxy.metrics import METRICS, Metrics
from bastion.services import Services
from bastion.stages.blocklist import block_key
from bastion.state.interface import StateBackend
from bastion.types import ExchangeRecord

log = logging.getLogger("bastion.detectors")

#: How often the queue is read (seconds): an alert leaves well within 2 s of its request.
TICK = 0.05
#: A failing state backend is logged at most once per this many seconds.
ERROR_LOG_INTERVAL = 60.0
#: Where the detectors' keys live in the state backend.
PREFIX = "det:"
#: A baseline not updated for this many intervals is forgotten (its key expires).
BASELINE_INTERVALS = 100
#: Most baselines a worker keeps in memory; past it the cache starts again.
BASELINE_CACHE = 100_000


def _login_failure(record: ExchangeRecord) -> str | None:
    """The account (its hash, as the ``login`` stage records it) of a failed or locked-out
    login, else ``None``."""
    fact = record.facts.get("login")
    if not isinstance(fact, dict):
        return None
    account = fact.get("account")
    if not isinstance(account, str):
        return None
    # A try refused because the account is locked is one more try of the attack.
    return account if fact.get("failed") is True or record.blocked_by == "login" else None


def _digest(text: str) -> str:
    """A short, fixed-size key part for a client-chosen text (a path may be long)."""
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class Detectors:
    """The record sink of one worker. :meth:`start` starts its task on the running loop;
    :meth:`close` reads what is queued, lets alerts under way go out, and stops."""

    name = "detectors"

    def __init__(self, settings: DetectorsSettings, services: Services, metrics: Metrics = METRICS) -> None:
        self.settings = settings
        self._instance = services.identity.instance
        self._metrics = metrics
        self._queue: deque[ExchangeRecord] = deque()
        self._capacity = settings.queue_size
        mailer = Mailer(settings.email) if settings.email is not None else None
        self.delivery = AlertDelivery(settings.webhooks, None, metrics, mailer=mailer)
        self._task: asyncio.Task[None] | None = None
        self._saving: set[asyncio.Task[None]] = set()
        self.use(services)
        self._stopping = asyncio.Event()
        self._logged_at = 0.0
        #: The blocks this worker placed: state key -> when it expires (monotonic seconds).
        self._blocks: dict[str, float] = {}
        #: The baselines read this interval (a state read per interval, not per record).
        self._baselines: dict[str, Baseline] = {}
        scanner = settings.scanner
        self._probe_paths = scanner.probe_paths
        self._agents = scanner.user_agents

    # -- the request path -------------------------------------------------------------------
    def __call__(self, record: ExchangeRecord) -> None:
        queue = self._queue
        if len(queue) < self._capacity:
            queue.append(record)
        else:
            self._metrics.inc("bastion_detectors_dropped", ())

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
        task = asyncio.get_running_loop().create_task(self._incident(
            "audit_loss", f"audit:{instance}", {"instance": instance}, lost, time.time(), 60.0, "high", "alert",
            f"{lost} audit record(s) dropped on instance {instance}: the audit queue was full "
            "(bastion_audit_dropped_total)",
        ))
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    # -- the worker's start and stop ----------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="bastion-detectors")

    async def close(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.delivery.close()
        if self._saving:
            await asyncio.gather(*self._saving)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), TICK)
            await self.drain()

    async def drain(self) -> None:
        """Count every queued record (tests call it to skip the wait)."""
        queue = self._queue
        while queue:
            record = queue.popleft()
            try:
                await self.evaluate(record)
            except Exception as exc:  # the state backend unreachable: the record is not counted
                self._metrics.inc("bastion_detector_errors", ())
                now = time.monotonic()
                if now - self._logged_at >= ERROR_LOG_INTERVAL:
                    self._logged_at = now
                    log.error("the detectors could not count a record (%s: %s)", type(exc).__name__, exc)
        self._count_blocks(time.monotonic())

    def _count_blocks(self, now: float) -> None:
        """Forget the blocks that expired; the gauge of active blocks is how many are left."""
        blocks = self._blocks
        expired = [key for key, until in blocks.items() if until <= now]
        for key in expired:
            del blocks[key]
        self._metrics.gauge_set("bastion_blocks_active", float(len(blocks)))

    # -- the detectors ------------------------------------------------------------------------
    async def evaluate(self, record: ExchangeRecord) -> None:
        """Count what ``record`` shows to every enabled detector; raise the alerts it completes."""
        s = self.settings
        ip = record.client
        status = record.status
        login = _login_failure(record)
        if s.brute_force.enabled and (status == 401 or record.blocked_by == "auth" or login is not None):
            d = s.brute_force
            await self._threshold(
                "brute_force", f"bf:{ip}", {"ip": ip}, record.ts, d.threshold, d.window, d.severity, d.action,
                f"{{n}} failed authentications from {ip} within {d.window:g} s", d.block_ttl,
            )
        if s.scanner.enabled:
            d2 = s.scanner
            if self._is_probe(record):
                await self._threshold(
                    "scanner", f"sp:{ip}", {"ip": ip}, record.ts, d2.probe_threshold, d2.window, d2.severity,
                    d2.action, f"{{n}} scanner probes (probe paths, scanner user agents) from {ip}", d2.block_ttl,
                )
            if status in (404, 405):
                await self._threshold(
                    "scanner", f"se:{ip}", {"ip": ip}, record.ts, d2.error_threshold, d2.window, d2.severity,
                    d2.action, f"{{n}} answers 404/405 to {ip} within {d2.window:g} s", d2.block_ttl,
                )
        if s.injection.enabled and record.blocked_by == "detection":
            d3 = s.injection
            await self._threshold(
                "injection", f"in:{ip}", {"ip": ip}, record.ts, d3.threshold, d3.window, d3.severity, d3.action,
                f"{{n}} requests from {ip} blocked as attacks by the detection stage", d3.block_ttl,
            )
        if s.token_sharing.enabled and record.credential is not None:
            await self._token_sharing(record, record.credential)
        if s.enumeration.enabled and record.consumer is not None and record.route is not None:
            await self._enumeration(record, record.consumer, record.route)
        if s.account_brute_force.enabled and login is not None:
            await self._account(record, login)
        if s.traffic_spike.enabled and record.consumer is not None and record.route is not None:
            await self._traffic(record, record.consumer, record.route)
        if s.error_spike.enabled and record.route is not None:
            await self._errors(record, record.route)

    def _is_probe(self, record: ExchangeRecord) -> bool:
        path = record.path
        if path is not None and path.startswith(self._probe_paths):
            return True
        agent = record.user_agent
        if agent:
            lower = agent.lower()
            return any(name in lower for name in self._agents)
        return False

    async def _counted(self, key: str, ts: float, window: float) -> int:
        """Count one event under ``key`` in a window of ``window`` seconds; the window's first
        event also records when it happened (the incident's start)."""
        state = self._state
        n = await state.incr(PREFIX + key, 1, window)
        if n == 1:
            await state.set(PREFIX + "t0:" + key, ts, window)
        return n

    async def _threshold(
        self,
        detector: str,
        key: str,
        subject: dict[str, str],
        ts: float,
        threshold: int,
        window: float,
        severity: str,
        action: str,
        summary: str,
        block_ttl: float,
    ) -> None:
        n = await self._counted(key, ts, window)
        if n >= threshold:
            await self._incident(
                detector, key, subject, n, ts, window, severity, action, summary.format(n=n), block_ttl
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

    async def _token_sharing(self, record: ExchangeRecord, credential: str) -> None:
        d = self.settings.token_sharing
        state = self._state
        base = f"ts:{_digest(credential)}"
        # A client IP counts once per window: its own key says whether it was seen.
        if await state.incr(f"{PREFIX}{base}:{record.client}", 1, d.window) != 1:
            return
        n = await self._counted(base, record.ts, d.window)
        if n > d.max_ips:
            await self._incident(
                "token_sharing", base, {"credential": credential}, n, record.ts, d.window, d.severity, d.action,
                f"credential {credential} used from {n} client IPs within {d.window:g} s (at most {d.max_ips})",
                d.block_ttl,
            )

    async def _enumeration(self, record: ExchangeRecord, consumer: str, route: str) -> None:
        d = self.settings.enumeration
        state = self._state
        base = f"en:{_digest(consumer + chr(0) + route)}"
        total = await self._counted(base, record.ts, d.window)
        denied_key = f"{PREFIX}{base}:denied"
        if record.status in (403, 404):
            denied = await state.incr(denied_key, 1, d.window)
        else:
            value = await state.get(denied_key)
            denied = int(value) if value is not None else 0
        distinct = 0
        path = record.path
        if path is not None and await state.incr(f"{PREFIX}{base}:p:{_digest(path)}", 1, d.window) == 1:
            distinct = await state.incr(f"{PREFIX}{base}:distinct", 1, d.window)
        if distinct >= d.distinct and denied >= d.denied_ratio * total:
            await self._incident(
                "enumeration", base, {"consumer": consumer, "route": route}, distinct, record.ts, d.window,
                d.severity, d.action,
                f"consumer {consumer} asked route {route} for {distinct} distinct objects, {denied} of {total} "
                "answered 403/404",
                d.block_ttl,
            )

    async def _account(self, record: ExchangeRecord, account: str) -> None:
        d = self.settings.account_brute_force
        state = self._state
        base = f"ab:{account}"
        failures = await self._counted(base, record.ts, d.window)
        ips_key = f"{PREFIX}{base}:ips"
        if await state.incr(f"{PREFIX}{base}:{record.client}", 1, d.window) == 1:
            ips = await state.incr(ips_key, 1, d.window)
        else:
            ips = await self._int(ips_key)
        if failures >= d.threshold and ips >= d.min_ips:
            await self._incident(
                "account_brute_force", base, {"account": account}, failures, record.ts, d.window, d.severity,
                d.action, f"{failures} failed logins on one account from {ips} client IPs within {d.window:g} s",
            )

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

    async def _traffic(self, record: ExchangeRecord, consumer: str, route: str) -> None:
        d = self.settings.traffic_spike
        state = self._state
        base = f"tr:{_digest(consumer + chr(0) + route)}"
        bucket = int(record.ts // d.interval)
        n = await state.incr(f"{PREFIX}{base}:{bucket}", 1, d.interval * 2)
        baseline = await self._baseline(
            f"{base}:avg", bucket, n == 1, d.alpha, d.interval * BASELINE_INTERVALS,
            partial(self._number, f"{PREFIX}{base}:{bucket - 1}"), gaps=True,
        )
        usual = baseline.expected(d.alpha)
        if baseline.samples >= d.learn and n >= max(d.min_requests, d.factor * usual):
            await self._incident(
                "traffic_spike", base, {"consumer": consumer, "route": route}, n, record.ts, d.interval,
                d.severity, d.action,
                f"consumer {consumer} called route {route} {n} times within {d.interval:g} s "
                f"(usually {usual:.1f})",
                d.block_ttl,
            )

    async def _errors(self, record: ExchangeRecord, route: str) -> None:
        d = self.settings.error_spike
        state = self._state
        base = f"er:{_digest(route)}"
        bucket = int(record.ts // d.interval)
        ttl = d.interval * 2
        n = await state.incr(f"{PREFIX}{base}:{bucket}", 1, ttl)
        errors = await state.incr(f"{PREFIX}{base}:{bucket}:5xx", 1, ttl) if record.status >= 500 else 0
        if n != 1 and not errors:
            return  # nothing to fold, and no error to judge by
        baseline = await self._baseline(
            f"{base}:avg", bucket, n == 1, d.alpha, d.interval * BASELINE_INTERVALS,
            partial(self._ratio, f"{PREFIX}{base}:{bucket - 1}", d.min_requests), gaps=False,
        )
        if not errors or n < d.min_requests:
            return
        usual = baseline.expected(d.alpha)
        share = errors / n
        if share >= max(d.ratio, d.factor * usual):
            await self._incident(
                "error_spike", base, {"route": route}, errors, record.ts, d.interval, d.severity, d.action,
                f"route {route} answered {errors} of {n} requests with 5xx within {d.interval:g} s "
                f"({share:.0%}; usually {usual:.0%})",
            )

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
