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

from bastion.config.detectors import DetectorsSettings
from bastion.detect.alerts import Alert, AlertDelivery, new_alert_id
from bastion.detect.history import save_alert
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
        self.delivery = AlertDelivery(settings.webhooks, None, metrics)
        self._task: asyncio.Task[None] | None = None
        self._saving: set[asyncio.Task[None]] = set()
        self.use(services)
        self._stopping = asyncio.Event()
        self._logged_at = 0.0
        #: The blocks this worker placed: state key -> when it expires (monotonic seconds).
        self._blocks: dict[str, float] = {}
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
        if s.brute_force.enabled and (status == 401 or record.blocked_by == "auth"):
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


