"""Alerts by e-mail: one plain-text message per alert, sent over SMTP.

:mod:`smtplib` blocks, so each message is sent in a thread of the loop's default executor:
the worker's loop (and so every request) never waits for the mail server. A failed attempt
(a server that is down, refuses the sender, or a TLS or sign-in failure) is retried with the
webhooks' back-off; a message still not sent after the last attempt is counted in
``bastion_alert_delivery_errors_total`` and logged.

The TLS context verifies the server's certificate (the configured CA file or the system's
CAs, and the host name): ``starttls`` refuses a server that does not offer STARTTLS rather
than sending the alert, or the credentials, in clear.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import orjson

from bastion.config.detectors import EmailAlerts

#: Seconds a connection, the TLS handshake or one SMTP reply may take.
TIMEOUT = 10.0
#: Severities in rising order: ``min_severity`` keeps an alert at or above its place.
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


class Mailer:
    """Builds and sends the message of an alert (its document: see :class:`~bastion.detect.alerts.Alert`)."""

    def __init__(self, settings: EmailAlerts) -> None:
        self.settings = settings
        self._rank = SEVERITY_RANK[settings.min_severity]
        self._tls: ssl.SSLContext | None = None
        if settings.security != "none":
            cafile = str(settings.ca_file) if settings.ca_file is not None else None
            self._tls = ssl.create_default_context(cafile=cafile)
            self._tls.minimum_version = ssl.TLSVersion.TLSv1_2

    def wants(self, severity: str) -> bool:
        """Whether an alert of ``severity`` is mailed (``min_severity``)."""
        return SEVERITY_RANK.get(severity, 3) >= self._rank

    def message(self, document: dict[str, object], text: str) -> EmailMessage:
        """The message of one alert: ``text`` (its human summary) and its JSON document."""
        settings = self.settings
        message = EmailMessage()
        message["From"] = settings.from_address
        message["To"] = ", ".join(settings.to)
        message["Subject"] = f"[{str(document['severity']).upper()}] Bastion alert: {document['detector']}"
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(idstring=str(document["id"]), domain="bastion.alerts")
        message["X-Bastion-Alert-Id"] = str(document["id"])
        message.set_content(text + "\n\n" + orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        return message

    def send(self, message: EmailMessage) -> None:
        """Send ``message`` (blocking: run it in a thread). ``smtplib.SMTPException``,
        ``ssl.SSLError`` or ``OSError`` when it was not accepted."""
        settings = self.settings
        smtp: smtplib.SMTP
        if settings.security == "tls":
            smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=TIMEOUT, context=self._tls)
        else:
            smtp = smtplib.SMTP(settings.host, settings.port, timeout=TIMEOUT)
        with smtp:
            if settings.security == "starttls":
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    raise smtplib.SMTPNotSupportedError(
                        f"{settings.host}:{settings.port} does not offer STARTTLS (security: starttls)"
                    )
                smtp.starttls(context=self._tls)
            if settings.username is not None and settings.password is not None:
                smtp.login(settings.username, settings.password)
            smtp.send_message(message)


__all__ = ["Mailer"]
