"""Alerts by e-mail, against a real SMTP server (aiosmtpd) on a free port of 127.0.0.1:
STARTTLS verified against a throwaway CA, SMTP AUTH over it, retries after a refusal, a
server without STARTTLS refused rather than spoken to in clear, and a real gateway whose
scanner detector mails its alert."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import ssl
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from bastion.certs import generate_self_signed
from bastion.config.detectors import EmailAlerts
from bastion.detect.alerts import Alert, AlertDelivery
from bastion.detect.mail import Mailer
from bastion.proxy.metrics import Metrics
from bastion.testing import GatewayProcess, free_port, raw_request
from tests.config.util import errors_of, write
from tests.proxy.scripted import ScriptedUpstream

USER, PASSWORD = "alerts", "smtp-test-password-9f2"


class Inbox:
    """The SMTP handler: keeps each accepted message, with whether its session was over TLS
    and signed in; refuses the first ``refuse_first`` messages with a 451 (try again later)."""

    def __init__(self, refuse_first: int = 0) -> None:
        self.messages: list[tuple[EmailMessage, Envelope, bool, bool]] = []
        self.refusals = 0
        self._refuse = refuse_first
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        with self._lock:
            if self.refusals < self._refuse:
                self.refusals += 1
                return "451 4.3.0 try again later"
            assert isinstance(envelope.content, bytes)
            parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            self.messages.append((parsed, envelope, session.ssl is not None, session.authenticated))
        return "250 OK"

    def wait(self, count: int = 1, timeout: float = 10.0) -> list[tuple[EmailMessage, Envelope, bool, bool]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.messages)


def _authenticator(server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok)


@pytest.fixture
def ca(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA's file and a server context with a certificate for 127.0.0.1 it issued."""
    cert, key, ca_file = tmp_path / "smtp.pem", tmp_path / "smtp.key", tmp_path / "ca.pem"
    generate_self_signed(cert, key, hosts=("127.0.0.1",), ca_path=ca_file)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return ca_file, context


def _serve(inbox: Inbox, **kwargs: Any) -> Iterator[int]:
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def tls_server(inbox: Inbox, ca: tuple[Path, ssl.SSLContext]) -> Iterator[int]:
    """A submission server that requires STARTTLS and signs in ``USER`` over it only."""
    yield from _serve(inbox, tls_context=ca[1], require_starttls=True, authenticator=_authenticator,
                      auth_require_tls=True)


def _alert(severity: str = "high") -> Alert:
    return Alert(id="a1b2c3", detector="brute_force", severity=severity, action="alert",
                 summary="20 failed logins from 203.0.113.9 within 60s", subject={"ip": "203.0.113.9"},
                 count=20, window=60.0, first_seen=1765100000.0, last_seen=1765100042.5, instance="gw-1")


def _deliver(settings: EmailAlerts, alert: Alert, metrics: Metrics) -> None:
    """Send ``alert`` as a worker does (a task on the loop), and let the delivery finish."""
    async def run() -> None:
        delivery = AlertDelivery((), None, metrics, delays=(0.05, 0.05), mailer=Mailer(settings))
        delivery.send(alert)
        await delivery.close(grace=20)

    asyncio.run(run())


def test_an_alert_is_mailed_over_starttls_signed_in(tls_server: int, inbox: Inbox,
                                                    ca: tuple[Path, ssl.SSLContext]) -> None:
    """With ``security: starttls``, the CA file and credentials, the alert reaches the server
    as one message over TLS after SMTP AUTH: sender and recipients as configured, a subject
    naming severity and detector, the summary in words, and the alert's JSON document."""
    settings = EmailAlerts(host="127.0.0.1", port=tls_server, ca_file=ca[0], username=USER, password=PASSWORD,
                           from_address="bastion@example.com", to=("soc@example.com", "oncall@example.com"))
    metrics = Metrics()
    _deliver(settings, _alert(), metrics)
    ((message, envelope, over_tls, signed_in),) = inbox.wait()
    assert (over_tls, signed_in) == (True, True)
    assert envelope.mail_from == "bastion@example.com"
    assert envelope.rcpt_tos == ["soc@example.com", "oncall@example.com"]
    assert message["Subject"] == "[HIGH] Bastion alert: brute_force"
    assert message["X-Bastion-Alert-Id"] == "a1b2c3"
    body = message.get_content().replace("\r\n", "\n")  # as sent: CRLF line ends
    assert body.startswith("[HIGH] Bastion: brute_force (ip 203.0.113.9)\n20 failed logins from 203.0.113.9")
    document = json.loads(body[body.index("{"):])
    assert (document["id"], document["count"], document["subject"]) == ("a1b2c3", 20, {"ip": "203.0.113.9"})
    assert not metrics.counters.get("bastion_alert_delivery_errors")


def test_a_refused_message_is_sent_again(ca: tuple[Path, ssl.SSLContext]) -> None:
    """A server answering 451 (try again later) twice gets the alert on the third attempt,
    and no delivery error is counted."""
    inbox = Inbox(refuse_first=2)
    for port in _serve(inbox, tls_context=ca[1], require_starttls=True):
        settings = EmailAlerts(host="127.0.0.1", port=port, ca_file=ca[0], from_address="bastion@example.com",
                               to=("soc@example.com",))
        metrics = Metrics()
        _deliver(settings, _alert(), metrics)
        assert inbox.refusals == 2
        assert len(inbox.wait()) == 1
        assert not metrics.counters.get("bastion_alert_delivery_errors")


def test_a_server_without_starttls_never_gets_the_alert_or_the_password() -> None:
    """``security: starttls`` (the default) against a server that does not offer STARTTLS:
    nothing is sent in clear, every attempt fails, and the loss is counted."""
    inbox = Inbox()
    for port in _serve(inbox, auth_require_tls=False, authenticator=_authenticator):
        settings = EmailAlerts(host="127.0.0.1", port=port, username=USER, password=PASSWORD,
                               from_address="bastion@example.com", to=("soc@example.com",))
        metrics = Metrics()
        _deliver(settings, _alert(), metrics)
        assert inbox.messages == []
        assert metrics.counters["bastion_alert_delivery_errors"] == {("brute_force",): 1.0}


def test_a_server_certificate_from_another_ca_is_refused(tls_server: int, inbox: Inbox) -> None:
    """Without the server's CA file (the system's CAs do not know the throwaway one), the
    STARTTLS handshake fails and nothing is delivered."""
    settings = EmailAlerts(host="127.0.0.1", port=tls_server, from_address="bastion@example.com",
                           to=("soc@example.com",))
    metrics = Metrics()
    _deliver(settings, _alert(), metrics)
    assert inbox.messages == []
    assert metrics.counters["bastion_alert_delivery_errors"] == {("brute_force",): 1.0}


def test_alerts_below_min_severity_are_not_mailed(tls_server: int, inbox: Inbox,
                                                  ca: tuple[Path, ssl.SSLContext]) -> None:
    """With ``min_severity: high``, a medium alert is not mailed and a critical one is."""
    settings = EmailAlerts(host="127.0.0.1", port=tls_server, ca_file=ca[0], from_address="bastion@example.com",
                           to=("soc@example.com",), min_severity="high")
    _deliver(settings, _alert("medium"), Metrics())
    _deliver(settings, _alert("critical"), Metrics())
    assert [m["Subject"] for m, *_ in inbox.wait()] == ["[CRITICAL] Bastion alert: brute_force"]


@pytest.mark.parametrize(("email_yaml", "field", "message"), [
    ("{host: smtp.example.com, from_address: b@example.com, to: [s@example.com], username: u, password: hunter2}",
     "detectors.email.password", "plain text"),
    ("{host: 127.0.0.1, security: none, from_address: b@example.com, to: [s@example.com], username: u, "
     "password: '${SMTP_PW}'}", "detectors.email", "credentials over an unencrypted connection"),
    ("{host: smtp.example.com, from_address: bastion, to: [s@example.com]}",
     "detectors.email.from_address", "'bastion' is not an e-mail address"),
])
def test_unsafe_or_wrong_email_settings_are_load_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, email_yaml: str, field: str, message: str,
) -> None:
    """A plain-text password, credentials without TLS, or a sender that is not an address are
    load errors naming the file, the line and the field."""
    monkeypatch.setenv("SMTP_PW", "x" * 12)
    path = write(tmp_path, f"""\
        services: [{{name: a, upstream: 'http://127.0.0.1:9', routes: [{{path: /, public: true}}]}}]
        detectors:
          enabled: true
          email: {email_yaml}
        """)
    errors = errors_of(path)
    assert any(e.startswith(f"{path}:4: {field}") and message in e for e in errors), errors


def test_a_gateway_mails_its_scanner_alert(inbox: Inbox) -> None:
    """A real gateway with ``detectors.email`` (a relay on this machine, ``security: none``)
    mails the scanner alert three probe requests raise, naming the client."""
    for port in _serve(inbox):
        config = {
            "services": [{"name": "api", "upstream": "http://127.0.0.1:9",
                          "routes": [{"path": "/orders", "public": True}]}],
            "detectors": {"enabled": True, "scanner": {"probe_threshold": 3},
                          "email": {"host": "127.0.0.1", "port": port, "security": "none",
                                    "from_address": "bastion@example.com", "to": ["soc@example.com"]}},
        }
        with ScriptedUpstream() as upstream:
            config["services"][0]["upstream"] = upstream.url  # type: ignore[index]
            with GatewayProcess(config) as gw:
                for probe in ("/.env", "/.git/config", "/wp-admin"):
                    raw_request(gw.host, gw.port, f"GET {probe} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                .encode())
                received = inbox.wait()
        ((message, _, _, _),) = received
        assert message["Subject"] == "[MEDIUM] Bastion alert: scanner"
        assert "(ip 127.0.0.1)" in message.get_content()
