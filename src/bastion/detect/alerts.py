"""Alerts: one per incident, signed and delivered to every configured webhook (and by
e-mail, when configured) with retries.

An alert is built once, when a detector's counter reaches its threshold; the body sent to
a webhook is Bastion's JSON document or a Slack-compatible ``{"text": ...}``. With a
secret, the body is signed (``X-Bastion-Signature: sha256=<hex HMAC-SHA256>``) so the
receiver can tell an alert from a forgery. Delivery runs in tasks of the worker's loop:
a webhook that is down delays nothing but its own retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import smtplib
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from bastion.config.detectors import Webhook
from bastion.detect.mail import Mailer
from bastion.proxy.metrics import METRICS, Metrics

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("bastion.alerts")

#: Seconds between attempts of one delivery: the first retry is quick, the last a few seconds later.
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True, slots=True)
class Alert:
    """One incident: which detector, who (``subject``: ``{"ip": ...}``, ``{"credential": ...}``),
    how many events within the window, and from when to when."""

    id: str
    detector: str
    severity: str
    action: str
    summary: str
    subject: dict[str, str]
    count: int
    window: float
    first_seen: float
    last_seen: float
    instance: str

    def document(self) -> dict[str, Any]:
        """The JSON document a ``json`` webhook receives."""
        return {
            "id": self.id,
            "type": "bastion.alert",
            "detector": self.detector,
            "severity": self.severity,
            "action": self.action,
            "summary": self.summary,
            "subject": self.subject,
            "count": self.count,
            "window_seconds": self.window,
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "instance": self.instance,
        }

    def slack(self) -> dict[str, Any]:
        """A Slack incoming-webhook message (``text``, in Slack's markdown)."""
        who = ", ".join(f"{k} `{v}`" for k, v in self.subject.items())
        return {
            "text": (
                f"*[{self.severity.upper()}] Bastion: {self.detector}* ({who})\n{self.summary}\n"
                f"{self.count} events from {_iso(self.first_seen)} to {_iso(self.last_seen)}"
            )
        }

    def text(self) -> str:
        """The alert in plain text (an e-mail's opening lines)."""
        who = ", ".join(f"{k} {v}" for k, v in self.subject.items())
        return (
            f"[{self.severity.upper()}] Bastion: {self.detector} ({who})\n{self.summary}\n"
            f"{self.count} events from {_iso(self.first_seen)} to {_iso(self.last_seen)}, "
            f"instance {self.instance}, action {self.action}."
        )


def new_alert_id() -> str:
    return uuid.uuid4().hex


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _where(url: str) -> str:
    """A webhook's scheme and host, for the log: its path may be its secret (Slack's are)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def signature(secret: str, body: bytes) -> str:
    """The ``X-Bastion-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class AlertDelivery:
    """Sends alerts to the webhooks and the mailer, each in a task of its own, retrying with back-off."""

    def __init__(
        self,
        webhooks: tuple[Webhook, ...],
        http: httpx.AsyncClient | None,
        metrics: Metrics = METRICS,
        delays: tuple[float, ...] = RETRY_DELAYS,
        mailer: Mailer | None = None,
    ) -> None:
        self.webhooks = webhooks
        self.http = http
        self.mailer = mailer
        self._metrics = metrics
        self._delays = delays
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, alert: Alert) -> None:
        """Start delivering ``alert`` to every webhook (returns at once)."""
        log.warning("alert %s: %s %s (%d events)", alert.id, alert.detector, alert.subject, alert.count)
        self._metrics.inc("bastion_alerts", (alert.detector, alert.severity))
        http = self.http
        if http is not None:
            for hook in self.webhooks:
                self._start(self._deliver(http, hook, alert))
        mailer = self.mailer
        if mailer is not None and mailer.wants(alert.severity):
            self._start(self._mail(mailer, alert))

    def _start(self, delivery: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(delivery)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _mail(self, mailer: Mailer, alert: Alert) -> None:
        """Send the alert's e-mail in a thread (smtplib blocks), retrying with back-off."""
        message = mailer.message(alert.document(), alert.text())
        where = f"smtp://{mailer.settings.host}:{mailer.settings.port}"
        for attempt, delay in enumerate((0.0, *self._delays)):
            if delay:
                await asyncio.sleep(delay)
            try:
                await asyncio.to_thread(mailer.send, message)
            except (smtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
                log.info("alert %s to %s: attempt %d failed (%s: %s)", alert.id, where, attempt + 1,
                         type(exc).__name__, exc)
            else:
                return
        self._metrics.inc("bastion_alert_delivery_errors", (alert.detector,))
        log.error("alert %s could not be mailed through %s after %d attempts", alert.id, where, len(self._delays) + 1)

    async def _deliver(self, http: httpx.AsyncClient, hook: Webhook, alert: Alert) -> None:
        body = orjson.dumps(alert.slack() if hook.format == "slack" else alert.document())
        headers = {"Content-Type": "application/json", "User-Agent": "Bastion-Alerts"}
        if hook.secret is not None:
            headers["X-Bastion-Signature"] = signature(hook.secret, body)
        for attempt, delay in enumerate((0.0, *self._delays)):
            if delay:
                await asyncio.sleep(delay)
            try:
                response = await http.post(hook.url, content=body, headers=headers)
            except Exception as exc:  # httpx's transport errors: retry
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 300:
                    return
                problem = f"HTTP {response.status_code}"
            log.info("alert %s to %s: attempt %d failed (%s)", alert.id, _where(hook.url), attempt + 1, problem)
        self._metrics.inc("bastion_alert_delivery_errors", (alert.detector,))
        log.error(
            "alert %s could not be delivered to %s after %d attempts", alert.id, _where(hook.url), len(self._delays) + 1
        )

    async def close(self, grace: float = 2.0) -> None:
        """Let deliveries under way finish for up to ``grace`` seconds, then cancel them."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
