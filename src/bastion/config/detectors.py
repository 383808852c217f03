"""Settings of the threat detectors (``detectors:``) and where their alerts go.

A module of its own beside :mod:`bastion.config.model`, which holds the one field that
refers to it: detectors are a record sink of the worker (they read every exchange's record
after the answer is out), not a stage of a route.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from bastion.config.audit import _seconds

Severity = Literal["low", "medium", "high", "critical"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: A counting window: a second to a day, such as `60s` or `10m`, in seconds once parsed.
Window = Annotated[float, BeforeValidator(_seconds), Field(ge=1, le=86400)]


#: How long a block lasts: a second to a week.
BlockTTL = Annotated[float, BeforeValidator(_seconds), Field(ge=1, le=7 * 86400)]


class _Detector(_Strict):
    enabled: bool = Field(True, description="Run this detector.")
    action: Literal["alert", "block"] = Field(
        "alert",
        description=(
            "What happens when the detector fires: `alert` (an alert goes to every webhook), or `block`: "
            "the alert, and what it names (the client IP; the credential for `token_sharing`, the consumer "
            "for `enumeration` and `traffic_spike`) is refused with 403 `blocked.<detector>` on every route "
            "for `block_ttl`."
        ),
    )
    block_ttl: BlockTTL = Field(900.0, description="How long `action: block` blocks, such as `15m` or `1h`.")


class BruteForce(_Detector):
    """Failed logins (401, or a failure the ``login`` stage saw) from one client IP."""

    threshold: int = Field(20, ge=2, le=1_000_000, description="Failures from one IP within the window that fire.")
    window: Window = Field(60.0, description="The counting window, such as `60s` or `10m`.")
    severity: Severity = Field("high", description="The alert's severity.")


#: Paths only a scanner asks for on an API: secrets, source control, admin consoles.
DEFAULT_PROBE_PATHS = (
    "/.env",
    "/.git/",
    "/.git/config",
    "/.aws/credentials",
    "/.ssh/",
    "/.DS_Store",
    "/wp-admin",
    "/wp-login.php",
    "/xmlrpc.php",
    "/phpmyadmin",
    "/actuator",
    "/server-status",
    "/config.json",
    "/.htaccess",
    "/web.config",
)
#: Substrings of the User-Agent of well-known scanners (matched case-insensitively).
DEFAULT_SCANNER_AGENTS = (
    "sqlmap",
    "nikto",
    "nuclei",
    "masscan",
    "zgrab",
    "gobuster",
    "dirbuster",
    "wpscan",
    "nmap",
    "acunetix",
    "feroxbuster",
    "ffuf",
)


class Scanner(_Detector):
    """Scanners: probe paths, scanner user agents, and spikes of 404/405 from one client IP."""

    probe_paths: tuple[str, ...] = Field(
        DEFAULT_PROBE_PATHS,
        description="A request whose path starts with one of these is a probe.",
    )
    user_agents: tuple[str, ...] = Field(
        DEFAULT_SCANNER_AGENTS,
        description="A request whose User-Agent contains one of these (any case) is a probe.",
    )
    probe_threshold: int = Field(3, ge=1, le=1_000_000, description="Probes from one IP within the window that fire.")
    error_threshold: int = Field(
        50, ge=2, le=1_000_000, description="404 and 405 answers to one IP within the window that fire."
    )
    window: Window = Field(60.0, description="The counting window, such as `60s` or `10m`.")
    severity: Severity = Field("medium", description="The alert's severity.")

    @field_validator("probe_paths")
    @classmethod
    def _absolute(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"a probe path starts with '/', got {path!r}")
        return value

    @field_validator("user_agents")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for agent in value:
            if not agent.strip():
                raise ValueError("a scanner user agent may not be empty (it would match every request)")
        return tuple(agent.lower() for agent in value)


class TokenSharing(_Detector):
    """One credential (API key, token) used from more than ``max_ips`` client IPs."""

    max_ips: int = Field(5, ge=1, le=100_000, description="Distinct client IPs a credential may use within the window.")
    window: Window = Field(600.0, description="The counting window, such as `60s` or `10m`.")
    severity: Severity = Field("high", description="The alert's severity.")


class Injection(_Detector):
    """An injection campaign: requests from one IP that the detection stage blocked."""

    threshold: int = Field(
        5, ge=1, le=1_000_000, description="Blocked requests from one IP within the window that fire."
    )
    window: Window = Field(300.0, description="The counting window, such as `60s` or `10m`.")
    severity: Severity = Field("high", description="The alert's severity.")


class Enumeration(_Detector):
    """Object enumeration (BOLA probing): one consumer asking a route for many distinct
    objects (paths), most of which answer 403 or 404."""

    distinct: int = Field(
        30, ge=2, le=1_000_000, description="Distinct paths of one route asked by one consumer within the window."
    )
    denied_ratio: float = Field(
        0.5, gt=0, le=1, description="The share of those requests answered 403 or 404 that fires, from 0 to 1."
    )
    window: Window = Field(300.0, description="The counting window, such as `60s` or `10m`.")
    severity: Severity = Field("high", description="The alert's severity.")


class _AlertOnly(_Detector):
    action: Literal["alert"] = Field(
        "alert", description="`alert` only: what this detector names cannot be blocked by the block list."
    )


class AccountBruteForce(_AlertOnly):
    """Failed logins on one account from many client IPs (credential stuffing, password
    spraying from a botnet): the tries the ``login`` stage counts (``policies.login``)."""

    threshold: int = Field(
        10, ge=2, le=1_000_000, description="Failed logins on one account within the window that fire (from `min_ips`)."
    )
    min_ips: int = Field(
        3, ge=1, le=100_000, description="Distinct client IPs the failures come from, at least (one IP: `brute_force`)."
    )
    window: Window = Field(600.0, description="The counting window, such as `60s` or `10m`.")
    severity: Severity = Field("high", description="The alert's severity.")


#: A baseline's interval: ten seconds to a day.
Interval = Annotated[float, BeforeValidator(_seconds), Field(ge=10, le=86400)]


class _Baselined(_Detector):
    interval: Interval = Field(60.0, description="The interval counted and averaged, such as `60s` or `5m`.")
    alpha: float = Field(
        0.3,
        gt=0,
        le=1,
        description=(
            "The weight of the last interval in the baseline (EWMA), from 0 to 1: higher forgets the past faster."
        ),
    )
    factor: float = Field(
        3.0, ge=1, le=1000, description="Fires at this many times the baseline (and at least the floor below)."
    )


class TrafficSpike(_Baselined):
    """Scraping and abuse: a consumer calling a route far more, within an interval, than it
    usually does (its own baseline: the EWMA of its past intervals)."""

    min_requests: int = Field(
        100, ge=2, le=100_000_000, description="The floor: fewer requests in an interval never fire."
    )
    learn: int = Field(
        3,
        ge=1,
        le=1000,
        description=(
            "Intervals of a consumer's traffic on a route before it is judged: a baseline needs a history "
            "(a consumer busy from its first request is for rate limits)."
        ),
    )
    severity: Severity = Field("medium", description="The alert's severity.")


class ErrorSpike(_AlertOnly, _Baselined):
    """A route's share of 5xx answers within an interval far above its usual share (an
    upstream failing, or requests crafted to break it)."""

    ratio: float = Field(
        0.2, gt=0, le=1, description="The floor: a smaller share of 5xx in an interval never fires, from 0 to 1."
    )
    min_requests: int = Field(
        20, ge=1, le=100_000_000, description="Requests of the route in the interval before its share counts."
    )
    severity: Severity = Field("high", description="The alert's severity.")


class Webhook(_Strict):
    """A URL every alert is POSTed to."""

    url: str = Field(description="The webhook's http(s) URL.")
    format: Literal["json", "slack"] = Field(
        "json", description="`json` (Bastion's alert document) or `slack` (an incoming-webhook `{text: ...}`)."
    )
    secret: str | None = Field(
        None,
        description=(
            "Signs each body: `X-Bastion-Signature: sha256=<hex HMAC-SHA256 of the body>`. Write it as "
            "`${ENV_VAR}` (or encrypted); a plain value is refused."
        ),
    )

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"a webhook URL starts with http:// or https://, got {value!r}")
        return value


#: An e-mail address as SMTP takes it: local part, @, domain; no spaces, angle brackets or commas.
_ADDRESS = re.compile(r"^[^\s@<>,;]+@[^\s@<>,;]+$")


def _address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not an e-mail address (such as alerts@example.com)")
    return value


class EmailAlerts(_Strict):
    """Alerts by e-mail: one message per alert, sent through an SMTP server (a relay or your
    provider's submission port), off the request path, with retries."""

    host: str = Field(min_length=1, max_length=255, description="The SMTP server's host name or address.")
    port: int = Field(587, gt=0, lt=65536, description="Its port: 587 (submission, STARTTLS), 465 (`tls`) or 25.")
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls",
        description=(
            "`starttls` (the default: plain connection upgraded to TLS, refused if the server does not offer it), "
            "`tls` (TLS from the first byte, port 465), or `none` (no encryption: a relay on this machine only, "
            "and never with credentials)."
        ),
    )
    ca_file: Path | None = Field(
        None,
        description=(
            "The PEM file of the CA(s) the server's certificate must chain to (relative to the config file's "
            "folder; default: the system's trusted CAs). The certificate must also name `host`."
        ),
    )
    username: str | None = Field(None, description="Signs in (SMTP AUTH) with this user name, over TLS only.")
    password: str | None = Field(
        None, description="The password of `username`: `${ENV_VAR}` or an encrypted value; a plain value is refused."
    )
    from_address: str = Field(description="The sender, such as `bastion@example.com`.")
    to: tuple[str, ...] = Field(min_length=1, max_length=100, description="The recipients.")
    min_severity: Severity = Field("low", description="Only alerts of this severity or higher are mailed.")

    @field_validator("from_address")
    @classmethod
    def _from(cls, value: str) -> str:
        return _address(value)

    @field_validator("to")
    @classmethod
    def _to(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_address(v) for v in value)

    @model_validator(mode="after")
    def _credentials(self) -> EmailAlerts:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: set both, or neither")
        if self.username is not None and self.security == "none":
            raise ValueError("credentials over an unencrypted connection would be readable on the way: "
                             "use security: starttls or tls")
        if self.ca_file is not None and self.security == "none":
            raise ValueError("ca_file is for a TLS connection, and security is none")
        return self


class DetectorsSettings(_Strict):
    """Threat detectors over every exchange's record, off the request path, counting in the
    state backend (so instances sharing Redis count together), and where their alerts go."""

    enabled: bool = Field(False, description="Run the detectors.")
    brute_force: BruteForce = Field(default_factory=BruteForce, description="Failed logins from one IP.")
    scanner: Scanner = Field(default_factory=Scanner, description="Probe paths, scanner user agents, 404/405 spikes.")
    token_sharing: TokenSharing = Field(default_factory=TokenSharing, description="One credential from many IPs.")
    injection: Injection = Field(default_factory=Injection, description="Repeated detection-stage blocks from one IP.")
    enumeration: Enumeration = Field(
        default_factory=Enumeration, description="One consumer probing many objects of a route."
    )
    account_brute_force: AccountBruteForce = Field(
        default_factory=AccountBruteForce, description="Failed logins on one account from many IPs."
    )
    traffic_spike: TrafficSpike = Field(
        default_factory=TrafficSpike, description="A consumer far above its own baseline on a route."
    )
    error_spike: ErrorSpike = Field(default_factory=ErrorSpike, description="A route's 5xx share far above usual.")
    webhooks: tuple[Webhook, ...] = Field((), description="Where alerts are delivered.")
    email: EmailAlerts | None = Field(None, description="Also send each alert by e-mail (optional).")
    history: bool = Field(
        True, description="Keep every alert in the store's `alerts` table (what `bastion alerts` lists)."
    )
    @property
    def blocks(self) -> bool:
        """Whether a detector may block (the ``blocklist`` stage is then on every route)."""
        detectors = (self.brute_force, self.scanner, self.token_sharing, self.injection, self.enumeration,
                     self.traffic_spike)
        return self.enabled and any(d.enabled and d.action == "block" for d in detectors)

    queue_size: int = Field(
        100_000,
        ge=100,
        le=10_000_000,
        description=(
            "Records waiting for the detectors, per worker. A request never waits: beyond this, records "
            "are dropped and counted in `bastion_detectors_dropped_total`."
        ),
    )
