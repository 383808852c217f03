"""The configuration file's schema (``bastion.yaml``), as pydantic models.

Every model forbids unknown keys: a misspelt setting is an error, never silently ignored.
Stage policies (``policies: {<stage>: {...}}``) are kept as plain mappings here and
validated against each stage's own schema once routes are resolved (see ``resolve.py``),
because the same policy can also come from the OpenAPI document.
"""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from bastion.config.audit import AuditSettings
from bastion.config.detectors import DetectorsSettings
from bastion.headernames import checked_fields

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
#: Methods a route without ``methods`` accepts. TRACE must be declared explicitly.
DEFAULT_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: Methods whose requests may carry a body on a hand-declared route (``request_body: by_method``).
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _policy_shape(value: Any) -> Any:
    # One clear error instead of one per member of the union below.
    if not isinstance(value, dict | list):
        raise ValueError("expected a mapping of stage settings (or, for ratelimit, a list of limits)")
    return value


#: A stage's settings, or a bare list where its stage takes one (``ratelimit: [{...}]``).
Policies = dict[str, Annotated[dict[str, Any] | list[Any], BeforeValidator(_policy_shape)]]
PositiveSeconds = Annotated[float, Field(gt=0, le=86400)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HSTS(Strict):
    """Strict-Transport-Security sent on responses served over TLS."""

    enabled: bool = Field(True, description="Send the header on HTTPS responses.")
    max_age: int = Field(63072000, ge=0, description="Seconds browsers remember to use HTTPS.")
    include_subdomains: bool = Field(True, description="Apply to every subdomain too.")
    preload: bool = Field(False, description="Ask to be preloaded in browsers (only if you mean it).")


class ServerTLS(Strict):
    """TLS termination on the listener."""

    cert: Path = Field(description="PEM certificate chain file.")
    key: Path = Field(description="PEM private key file.")
    min_version: Literal["1.2", "1.3"] = Field("1.2", description="Oldest TLS version accepted.")
    client_ca: Path | None = Field(None, description="Require client certificates signed by this CA (mTLS).")
    hsts: HSTS = Field(default_factory=HSTS, description="Strict-Transport-Security header settings.")


class Limits(Strict):
    """Bounds on what a client may send (beyond them the request is refused) and on what an
    upstream may answer."""

    max_body_bytes: int = Field(10 * 1024 * 1024, ge=0, description="Largest request body (413 beyond).")
    max_response_body_bytes: int = Field(
        10 * 1024 * 1024,
        ge=0,
        description=(
            "Largest upstream response body buffered whole for a stage that inspects the whole "
            "body (schema filtering); beyond it, 'response_body_over_limit' decides. Routes "
            "without such a stage stream responses of any size and never buffer them."
        ),
    )
    response_body_over_limit: Literal["block", "pass"] = Field(
        "block",
        description=(
            "A response body larger than 'max_response_body_bytes' on a route that inspects "
            "whole bodies: 'block' answers 502 problem+json (and closes the upstream connection), "
            "'pass' forwards it uninspected, recorded in the exchange's record as 'uninspected'."
        ),
    )
    max_upstream_response_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=0,
        description=(
            "Largest upstream response body forwarded, streamed or buffered. An upstream that "
            "announces more (Content-Length) gets its client a 502 problem+json; one that sends "
            "more once the answer is streaming has the client's connection cut before the body's "
            "end, so the client sees a truncated answer, never a complete one."
        ),
    )
    max_header_bytes: int = Field(32 * 1024, ge=1024, description="Largest request head (431 beyond).")
    max_headers: int = Field(100, ge=8, le=1000, description="Most header fields in a request.")
    max_url_bytes: int = Field(8192, ge=256, description="Longest request target (414 beyond).")
    max_query_bytes: int = Field(
        8192, ge=0, description="Longest query string (414 beyond); at most max_url_bytes in effect."
    )
    max_query_params: int = Field(
        256,
        ge=0,
        le=100_000,
        description="Most query parameters ('&'-separated pieces of the query string; 414 beyond).",
    )
    max_in_flight: int = Field(
        1024,
        ge=1,
        le=1_000_000,
        description=(
            "Most requests one worker process handles at once, from head to answer; beyond it a new "
            "request gets 503 with Retry-After (per worker: with --workers N the host takes N times this)."
        ),
    )
    max_json_depth: int = Field(
        64, ge=1, le=10_000, description="Deepest nesting of a JSON request body a stage parses (413 beyond)."
    )
    max_json_keys: int = Field(
        100_000, ge=0, description="Most object keys in a JSON request body, all objects together (413 beyond)."
    )
    max_json_array_items: int = Field(
        100_000, ge=0, description="Most array elements in a JSON request body, all arrays together (413 beyond)."
    )
    max_json_string_bytes: int = Field(
        1024 * 1024, ge=0, description="Longest string in a JSON request body, in bytes as sent (413 beyond)."
    )
    max_json_number_chars: int = Field(
        100, ge=1, le=100_000, description="Longest number in a JSON request body, in characters (413 beyond)."
    )


#: The limits the listener applies while it reads a head, before any route is known: a
#: service or route (``RequestLimits``) may only tighten them.
HEAD_LIMITS = ("max_headers", "max_header_bytes", "max_url_bytes")


class RequestLimits(Strict):
    """Limits on a service's or route's requests, checked once the request is routed and
    before any of its body is read (and on its upstream's response). Unset ones are the
    service's, then ``listen.limits``."""

    max_headers: int | None = Field(
        None, ge=1, description="Most header fields (431 beyond); at most listen.limits.max_headers."
    )
    max_header_bytes: int | None = Field(
        None, ge=1, description="Largest header fields, all together (431 beyond); at most listen.limits'."
    )
    max_url_bytes: int | None = Field(
        None, ge=1, description="Longest request target (414 beyond); at most listen.limits.max_url_bytes."
    )
    max_query_bytes: int | None = Field(None, ge=0, description="Longest query string (414 beyond).")
    max_query_params: int | None = Field(
        None, ge=0, le=100_000, description="Most query parameters (414 beyond)."
    )
    max_json_depth: int | None = Field(None, ge=1, le=10_000, description="Deepest nesting of a JSON body.")
    max_json_keys: int | None = Field(None, ge=0, description="Most object keys in a JSON body.")
    max_json_array_items: int | None = Field(None, ge=0, description="Most array elements in a JSON body.")
    max_json_string_bytes: int | None = Field(None, ge=0, description="Longest string in a JSON body, in bytes.")
    max_json_number_chars: int | None = Field(
        None, ge=1, le=100_000, description="Longest number in a JSON body, in characters."
    )
    max_upstream_response_bytes: int | None = Field(
        None, ge=0, description="Largest upstream response body forwarded (502, or the answer cut, beyond)."
    )


class Timeouts(Strict):
    """Client-side timeouts of the listener."""

    idle: PositiveSeconds = Field(60, description="Keep-alive connection with no request in flight.")
    header: PositiveSeconds = Field(10, description="From a request's first byte to the end of its head.")
    body: PositiveSeconds = Field(30, description="Longest wait for the next piece of a request body.")
    body_total: PositiveSeconds = Field(
        60,
        description=(
            "Longest time a request body may take to arrive in full, from the end of its head; "
            "beyond it the request gets 408 and its connection is closed. Bounds a body trickled "
            "just fast enough to beat 'body' (slowloris). Raise it on gateways that take large "
            "uploads over slow links."
        ),
    )
    drain: PositiveSeconds = Field(
        20,
        description=(
            "Graceful shutdown: how long in-flight requests may finish (and requests arriving on open "
            "connections are still answered, with Connection: close); what still runs then gets 503."
        ),
    )
    handshake: PositiveSeconds = Field(
        10,
        description=(
            "TLS listener: from accepting a connection to the end of its TLS handshake; a client "
            "that has not finished it by then is disconnected. Changes need a restart."
        ),
    )


class Listen(Strict):
    """The data-plane listener."""

    host: str = Field("127.0.0.1", description="Address to listen on (loopback by default).")
    port: int = Field(8080, ge=0, le=65535, description="TCP port of the gateway.")
    tls: ServerTLS | None = Field(None, description="Terminate TLS here (HTTPS) with this certificate.")
    trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        default_factory=list,
        description=(
            "CIDRs of load balancers in front of Bastion. Only from these are incoming "
            "X-Forwarded-*, Forwarded and X-Request-ID headers believed."
        ),
    )
    limits: Limits = Field(default_factory=Limits, description="Size limits on requests.")
    timeouts: Timeouts = Field(default_factory=Timeouts, description="Client-side timeouts.")


class AdminTLS(Strict):
    """TLS on the admin listener: required on any address but loopback."""

    cert: Path = Field(description="PEM certificate chain of the admin listener.")
    key: Path = Field(description="PEM private key of `cert`.")


class AdminSessions(Strict):
    """Browser sessions of the dashboard and the developer portal."""

    ttl: int = Field(28800, ge=300, le=7 * 86400, description="Seconds a session lasts at most after sign-in.")
    idle: int = Field(1800, ge=60, le=86400, description="Seconds without a request after which a session ends.")


class AdminLogin(Strict):
    """Password logins (dashboard and portal): lockout after repeated failures."""

    max_failures: int = Field(5, ge=1, le=100, description="Failed passwords or codes in a row that lock an account.")
    lockout: int = Field(900, ge=10, le=86400, description="Seconds an account stays locked.")
    attempts_per_minute: int = Field(
        20, ge=1, le=10_000, description="Sign-in attempts (passwords and codes) one client address may make a minute."
    )


class Portal(Strict):
    """The self-service developer portal, served by the admin listener under `/portal`."""

    enabled: bool = Field(False, description="Serve the portal (consumers sign in with an invitation link).")
    registration: bool = Field(False, description="Let anyone register a new consumer from the portal's sign-up page.")
    plan: str | None = Field(None, description="Plan given to consumers who register themselves.")


class Admin(Strict):
    """The admin listener: the admin API, the dashboard, the developer portal, health and metrics.

    Everything but `/health`, `/ready`, `/version` (and `/metrics` while `public_metrics`
    holds) needs an admin token or a dashboard session. There are no default credentials:
    `bastion admin create` makes the first admin user."""

    host: str = Field("127.0.0.1", description="Keep it on loopback or a private interface.")
    port: int = Field(9090, ge=0, le=65535, description="TCP port of the admin API.")
    tls: AdminTLS | None = Field(
        None, description="Serve the admin listener over HTTPS; required when `host` is not a loopback address."
    )
    dashboard: bool = Field(True, description="Serve the web dashboard under `/ui`.")
    reports_dir: Path | None = Field(
        None, description="Folder of scan reports (`bastion scan --format json --output DIR/NAME.json`) "
                          "the dashboard's reports page lists (relative to this file).")
    portal: Portal = Field(default_factory=Portal, description="The developer portal.")
    sessions: AdminSessions = Field(default_factory=AdminSessions, description="Dashboard and portal sessions.")
    login: AdminLogin = Field(default_factory=AdminLogin, description="Password login lockout and rate limit.")
    public_metrics: bool = Field(
        True, description="Serve `/metrics` without a token (for Prometheus); false: a viewer token is needed."
    )
    config_writable: bool = Field(
        False, description="Let admins replace this file through `POST /api/v1/config` (validated, then reloaded); "
        "false: the file is the source of truth and the API only exports it."
    )


class UpstreamTLS(Strict):
    """TLS towards ``https://`` upstream targets."""

    verify: bool = Field(True, description="Verify the upstream's certificate and host name.")
    ca: Path | None = Field(None, description="CA bundle to verify against (system CAs when unset).")
    cert: Path | None = Field(None, description="Client certificate for mTLS to the upstream.")
    key: Path | None = Field(None, description="Private key of `cert`.")
    server_name: str | None = Field(None, description="SNI and verified name, when not the target's host.")

    @model_validator(mode="after")
    def _cert_and_key(self) -> UpstreamTLS:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key must be given together")
        return self


class UpstreamTimeouts(Strict):
    """Timeouts towards the upstream; exceeding them gives the client 504 (or 502 to connect)."""

    connect: PositiveSeconds = Field(3, description="Opening a connection (and TLS handshake).")
    read: PositiveSeconds = Field(30, description="Longest silence while waiting for the response.")
    total: PositiveSeconds = Field(60, description="Whole exchange with the upstream, retries included.")


class HealthCheck(Strict):
    """Active health checks: a GET to each target at an interval."""

    path: str = Field("/health", pattern=r"^/", description="Path requested on each target.")
    interval: PositiveSeconds = Field(5, description="Seconds between checks.")
    timeout: PositiveSeconds = Field(2, description="A check slower than this fails.")
    healthy_threshold: int = Field(2, ge=1, description="Passing checks in a row to mark a target healthy.")
    unhealthy_threshold: int = Field(3, ge=1, description="Failing checks in a row to mark it unhealthy.")
    expected_status: list[int] = Field(default_factory=lambda: [200], description="Statuses that pass.")


class CircuitBreaker(Strict):
    """Passive protection: after consecutive failures a target rests for ``cooldown``."""

    enabled: bool = Field(True, description="Stop sending to a target that keeps failing.")
    failures: int = Field(5, ge=1, description="Consecutive connect errors/timeouts/5xx that open it.")
    cooldown: PositiveSeconds = Field(10, description="Seconds before one trial request is let through.")


class Target(Strict):
    """One upstream address (a string is shorthand for ``{url: ...}``)."""

    url: str = Field(description="http:// or https:// URL, optionally with a base path.")
    weight: int = Field(1, ge=1, le=1000, description="Share of traffic relative to other targets.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_upstream_url(value)


def check_upstream_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    if not parts.hostname:
        raise ValueError(f"the URL {value!r} has no host")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"the URL {value!r} has an invalid port") from exc
    if parts.query or parts.fragment:
        raise ValueError(f"the URL {value!r} must not have a query or fragment")
    return value.rstrip("/")


class BasicCredentials(Strict):
    """HTTP Basic credentials the gateway sends upstream."""

    username: str = Field(min_length=1, description="The user name (no ':').")
    password: str = Field(description="The password: an ${ENV} reference or an enc:v1: value, never plain text.")

    @field_validator("username")
    @classmethod
    def _no_colon(cls, value: str) -> str:
        if ":" in value or any(c in value for c in "\r\n\x00"):
            raise ValueError("a Basic user name cannot hold ':', CR, LF or NUL")
        return value


class UpstreamCredentials(Strict):
    """Credentials the gateway adds to every request it forwards, so that clients never hold
    them (and a client's own value for those headers is dropped, never forwarded)."""

    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Header name -> value (secrets: ${ENV} references or enc:v1: values), e.g. X-Api-Key.",
    )
    basic: BasicCredentials | None = Field(None, description="HTTP Basic credentials (sets Authorization).")
    bearer_token: str | None = Field(None, description="A bearer token (sets Authorization: Bearer ...).")

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        out = checked_fields(value)
        for name in out:
            if name in ("host", "content-length", "transfer-encoding", "connection", "x-request-id"):
                raise ValueError(f"{name!r} is the gateway's to set, not a credential")
        return out

    @model_validator(mode="after")
    def _one_authorization(self) -> UpstreamCredentials:
        given = (self.basic is not None) + (self.bearer_token is not None) + ("authorization" in self.headers)
        if given > 1:
            raise ValueError("basic, bearer_token and an Authorization header each set Authorization: give one")
        if self.bearer_token is not None and any(c in self.bearer_token for c in "\r\n\x00 "):
            raise ValueError("bearer_token contains a space, CR, LF or NUL")
        return self

    def header_lines(self) -> tuple[frozenset[str], str]:
        """The names the gateway sets (a client's own are dropped) and their lines, as sent."""
        headers = dict(self.headers)
        if self.basic is not None:
            pair = f"{self.basic.username}:{self.basic.password}".encode()
            headers["authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        if self.bearer_token is not None:
            headers["authorization"] = "Bearer " + self.bearer_token
        return frozenset(headers), "".join(f"{k}: {v}\r\n" for k, v in headers.items())


class Upstream(Strict):
    """Where a service's requests go."""

    targets: list[Target] = Field(min_length=1, description="Where to send requests (URLs or objects).")
    balance: Literal["round_robin", "least_connections"] = Field(
        "round_robin", description="How a target is picked for each request."
    )
    timeouts: UpstreamTimeouts = Field(default_factory=UpstreamTimeouts, description="Upstream timeouts.")
    retries: int = Field(1, ge=0, le=5, description="Extra tries for idempotent requests that never got an answer.")
    max_idle_connections: int = Field(64, ge=0, description="Kept-alive connections per target and worker.")
    idle_timeout: PositiveSeconds = Field(30, description="Close pooled connections unused this long.")
    health_check: HealthCheck | None = Field(None, description="Active health checks (off when unset).")
    circuit_breaker: CircuitBreaker = Field(default_factory=CircuitBreaker, description="Passive failure detection.")
    tls: UpstreamTLS = Field(default_factory=UpstreamTLS, description="TLS settings for https:// targets.")
    credentials: UpstreamCredentials | None = Field(
        None,
        description="Credentials added to every forwarded request (header, Basic, bearer); clients never hold them.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand_targets(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("targets"), list):
            data = dict(data)
            data["targets"] = [{"url": t} if isinstance(t, str) else t for t in data["targets"]]
        return data


class Route(Strict):
    """A route declared by hand (OpenAPI operations become routes too)."""

    path: str = Field(description="Path template, e.g. /books/{id}; with prefix, everything under it.")
    methods: list[str] | None = Field(None, description="Allowed methods; all but TRACE when unset.")
    host: str | None = Field(None, description="Only for requests with this Host.")
    prefix: bool = Field(False, description="Match the path and everything below it.")
    public: bool = Field(False, description="Needs no authentication (routes require it otherwise).")
    operation_id: str | None = Field(None, description="Name of the route in logs and metrics.")
    max_body_bytes: int | None = Field(None, ge=0, description="Largest request body on this route.")
    max_response_body_bytes: int | None = Field(
        None, ge=0, description="Largest response body buffered whole for inspection on this route."
    )
    limits: RequestLimits = Field(
        default_factory=RequestLimits,
        description="Header, target and query limits of this route, over the service's (see docs/limits.md).",
    )
    response_body_over_limit: Literal["block", "pass"] | None = Field(
        None, description="What a response body over the route's limit gets: 'block' (502) or 'pass' (uninspected)."
    )
    request_body: Literal["by_method", "allowed", "refused"] = Field(
        "by_method",
        description=(
            "Which requests may carry a body. 'by_method': POST, PUT and PATCH; a body (a non-zero "
            "Content-Length, or Transfer-Encoding: chunked) on GET, HEAD, OPTIONS, DELETE or TRACE is "
            "refused with 400 before anything is forwarded, since a backend that does not read it "
            "would take it for the next request on the connection. 'allowed': every method "
            "(for a backend known to read such bodies). 'refused': none."
        ),
    )
    policies: Policies = Field(default_factory=dict, description="Stage settings for this route.")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_route_path(value)

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out = []
        for m in value:
            upper = m.upper()
            if upper not in HTTP_METHODS:
                raise ValueError(f"unknown method {m!r}; expected one of {', '.join(HTTP_METHODS)}")
            out.append(upper)
        if not out:
            raise ValueError("at least one method is needed (omit the field for all)")
        return out


def check_route_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"a route path must start with '/', got {value!r}")
    if "?" in value or "#" in value:
        raise ValueError(f"a route path must not contain '?' or '#': {value!r}")
    for seg in value.split("/")[1:]:
        if seg in (".", ".."):
            raise ValueError(f"a route path must not contain dot segments: {value!r}")
        if seg.count("{") != seg.count("}") or seg.count("{") > 1:
            raise ValueError(
                f"segment {seg!r} of {value!r}: at most one {{parameter}} per segment, with balanced braces"
            )
    return value


class Service(Strict):
    """An upstream API and the routes that lead to it."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", description="Unique name (logs, metrics).")
    upstream: Upstream = Field(description="A URL, a list of URLs, or an upstream object.")
    openapi: Path | None = Field(None, description="OpenAPI 3.0/3.1 document whose operations become routes.")
    base_path: str | None = Field(
        None, description="Prefix of the OpenAPI paths (default: the path of its first server URL)."
    )
    host: str | None = Field(None, description="Default Host for this service's routes.")
    routes: list[Route] = Field(default_factory=list, description="Routes declared by hand (besides OpenAPI).")
    max_body_bytes: int | None = Field(None, ge=0, description="Largest request body for the service.")
    max_response_body_bytes: int | None = Field(
        None, ge=0, description="Largest response body buffered whole for inspection, for the service."
    )
    limits: RequestLimits = Field(
        default_factory=RequestLimits,
        description="Header, target and query limits of the service's routes, over listen.limits.",
    )
    response_body_over_limit: Literal["block", "pass"] | None = Field(
        None, description="What a response body over the limit gets, for the service: 'block' or 'pass'."
    )
    policies: Policies = Field(default_factory=dict, description="Stage settings for the whole service.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand_upstream(cls, data: Any) -> Any:
        if isinstance(data, dict):
            up = data.get("upstream")
            if isinstance(up, str):
                data = {**data, "upstream": {"targets": [{"url": up}]}}
            elif isinstance(up, list):
                data = {**data, "upstream": {"targets": up}}
        return data

    @model_validator(mode="after")
    def _has_routes(self) -> Service:
        if self.openapi is None and not self.routes:
            raise ValueError("a service needs an 'openapi' document or at least one route in 'routes'")
        return self


class AccessLog(Strict):
    """Structured access log: one JSON object per line, written off the request path."""

    enabled: bool = Field(True, description="Write the access log.")
    path: str = Field("-", description="File to append to, or '-' for standard output.")
    redact_fields: list[str] = Field(
        default_factory=list,
        description=(
            "Field names or JSON paths (`pin`, `user.ssn`) whose values the stages' evidence in the exchange's "
            "record (a detection snippet, a validation message) never shows, in the access log and every other "
            "record sink; beside the ones always hidden: credential headers, cookies, secret-named parameters "
            "(`password`, `token`, `client_secret`...), and keys, tokens and card numbers anywhere (masked). "
            "Takes effect on restart, like `path`."
        ),
    )


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: safe for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def check_redis_url(value: str) -> str:
    parts = urlsplit(value)
    shown = redact_url(value)
    if parts.scheme == "redis+cluster":
        from bastion.state.cluster import parse_cluster_url

        try:
            parse_cluster_url(value)
        except ValueError as exc:
            raise ValueError(f"the URL {shown!r}: {exc}") from None
        return value
    if parts.scheme == "redis+sentinel":
        from bastion.state.sentinel import parse_sentinel_url

        try:
            parse_sentinel_url(value)
        except ValueError as exc:
            raise ValueError(f"the URL {shown!r}: {exc}") from None
        return value
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"expected a redis://, rediss://, unix://, redis+sentinel://host:port/mastername or "
            f"redis+cluster://host:port[,host:port] URL, got {shown!r}"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"the URL {shown!r} has no socket path")
        return value
    if not parts.hostname:
        raise ValueError(f"the URL {shown!r} has no host")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"the URL {shown!r} has an invalid port") from None
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError(f"the URL {shown!r}: the path must be a database number (like /0), got {'/' + db!r}")
    return value


class RedisSettings(Strict):
    """The Redis server the redis state backend uses (one pipelined connection per worker)."""

    url: str = Field(
        description=(
            "redis://[user:password@]host[:port][/db], rediss:// for TLS, unix:///path/to/socket, or "
            "redis+sentinel://[:password@]sentinel:26379[,sentinel2:26379]/mastername[/db] (the master asked of "
            "the Sentinels on every connection), or redis+cluster://[:password@]node:6379[,node2:6379] (Redis "
            "Cluster: every key of Bastion in the one hash slot of key_prefix, so scripts stay atomic). "
            "Put a password in an environment variable: redis://:${REDIS_PASSWORD}@host/0 "
            "(logs and messages never show it)."
        )
    )
    timeout: PositiveSeconds = Field(
        0.25,
        description=(
            "Longest wait for one command, connecting included. Beyond it the stage fails "
            "(its failure_mode applies: 503 when closed), so keep it well under clients' patience."
        ),
    )
    max_connections: int = Field(
        64, ge=1, le=10000, description="Connections per worker for publish/subscribe, at most (commands share one)."
    )
    key_prefix: str = Field(
        "bastion:", max_length=64, description="Prefix of every key and channel (to share one Redis database)."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_redis_url(value)


class Backends(Strict):
    """Shared resources of every worker, configured once for the whole gateway."""

    state: Literal["memory", "redis"] = Field(
        "memory",
        description=(
            "Where stages keep state (counters, revocations, blocks). 'memory': in each worker "
            "process, exact with one worker only (a stage that keeps state refuses to start with "
            "more); 'redis': shared by every worker of every instance (needs `redis`)."
        ),
    )
    redis: RedisSettings | None = Field(None, description="The Redis server, for `state: redis`.")

    @model_validator(mode="after")
    def _redis_needs_url(self) -> Backends:
        if self.state == "redis" and self.redis is None:
            raise ValueError("state is 'redis' but no server is configured: add redis: {url: redis://host:6379/0}")
        return self


#: Consumer names: what the CLI, logs and the access record call a consumer.
CONSUMER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$"
STORE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
#: The environment variable that holds the store's pepper (overrides ``store.pepper_file``).
PEPPER_ENV = "BASTION_PEPPER"


def check_store_url(value: str) -> str:
    parts = urlsplit(value)
    shown = redact_url(value)
    if parts.scheme not in STORE_SCHEMES:
        raise ValueError(f"expected a sqlite:///path or postgresql://user@host/db URL, got {shown!r}")
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path.lstrip("/"):
            raise ValueError(
                f"a SQLite URL is sqlite:///relative/file.db or sqlite:////absolute/file.db, got {shown!r}"
            )
        if parts.path.lstrip("/") == ":memory:":
            raise ValueError("an in-memory SQLite database forgets every key when the process ends; name a file")
        return value
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError(f"the URL {shown!r} has no host")
    if not parts.path.strip("/"):
        raise ValueError(f"the URL {shown!r} names no database (postgresql://user@host/bastion)")
    return value


class StoreSettings(Strict):
    """The durable store: consumers, API keys, OAuth clients, signing keys, learned ownership."""

    url: str | None = Field(
        None,
        description=(
            "sqlite:///file.db (relative to the config file's folder) or postgresql://user:pass@host/db "
            "(several gateway instances share one). Default: the SQLite file `bastion.db` beside the "
            "config file. Put a password in an environment variable: postgresql://bastion:${PGPASSWORD}@db/bastion."
        ),
    )
    pepper_file: Path | None = Field(
        None,
        description=(
            "File holding the secret pepper every API key and client secret hash is keyed with "
            "(HMAC-SHA-256); at least 32 bytes. The environment variable BASTION_PEPPER, when set, "
            "is used instead. Default with SQLite: `bastion.pepper` beside the config file, created "
            "(mode 0600, 32 random bytes) the first time it is needed. With PostgreSQL it must be "
            "given (this file or BASTION_PEPPER): every instance must use the same one."
        ),
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_store_url(value)


class ConsumerCertificate(Strict):
    """How a client certificate (mTLS) is recognised as a consumer's: exactly one of the fields."""

    fingerprint: str | None = Field(
        None,
        pattern=r"^sha256:[0-9A-Fa-f:]{64,95}$",
        description="The certificate's SHA-256 fingerprint, 'sha256:' and hex (colons allowed).",
    )
    subject: str | None = Field(None, min_length=1, description="The certificate's subject, e.g. 'CN=svc,O=Example'.")
    san: str | None = Field(None, min_length=1, description="A DNS name, URI or IP of its subjectAltName.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ConsumerCertificate:
        given = [f for f in ("fingerprint", "subject", "san") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of fingerprint, subject or san")
        return self


class Consumer(Strict):
    """A consumer declared in the configuration: synced into the store, read-only there."""

    name: str = Field(pattern=CONSUMER_NAME, description="Unique name (letters, digits, _ . @ -).")
    roles: list[str] = Field(default_factory=list, description="Roles it holds (for `access: {roles: [...]}`).")
    plan: str | None = Field(None, description="Its plan (for rate limits and quotas by plan).")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form data about it (team, contact).")
    ip_allow: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        default_factory=list, description="Only from these CIDRs may it call (empty: from anywhere)."
    )
    ip_deny: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        default_factory=list, description="Never from these CIDRs."
    )
    certificates: list[ConsumerCertificate] = Field(
        default_factory=list, description="Client certificates (mTLS) that identify it."
    )


class KeyRotation(Strict):
    """How often the OAuth server's signing key is replaced."""

    interval_hours: float = Field(
        24,
        ge=0.1,
        le=24 * 365,
        description=(
            "A new signing key is made every this many hours (at least 0.1). A replaced key stays in "
            "the JWKS until every token it signed has expired (token_ttl later), then it is deleted."
        ),
    )


class ClientAuthLimit(Strict):
    """Brute force on the OAuth endpoints: failed client authentications, counted in the state backend."""

    failures: int = Field(
        10, ge=1, le=10000, description="Failed client authentications allowed per client id and per client IP."
    )
    window: PositiveSeconds = Field(
        300, description="Seconds the failures are counted over; beyond the limit the client gets 429 until then."
    )


class OAuthServerSettings(Strict):
    """The built-in OAuth 2.0 authorization server for machine clients (client credentials).

    Enabled, the gateway itself answers ``/.well-known/oauth-authorization-server``,
    ``/.well-known/jwks.json``, ``/oauth/token``, ``/oauth/introspect`` and ``/oauth/revoke``
    on its own port (before any service's routes; never forwarded). Clients are created with
    ``bastion oauth clients create`` and kept in the store.
    """

    enabled: bool = Field(False, description="Serve the authorization server's endpoints on the gateway's port.")
    issuer: str | None = Field(
        None,
        description=(
            "The `iss` of issued tokens and the base of the endpoint URLs in the metadata: "
            "https://host[:port] (no path). Default: derived from `listen` (http, or https with "
            "listen.tls). Set it when clients reach the gateway under another name."
        ),
    )
    audience: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="The `aud` of issued tokens (what protected routes' jwt issuers expect). Default: the issuer.",
    )
    token_ttl: int = Field(300, ge=30, le=86400, description="Lifetime of an access token, in seconds.")
    algorithm: Literal["ES256", "EdDSA"] = Field(
        "ES256", description="Signature of access tokens: ES256 (P-256) or EdDSA (Ed25519)."
    )
    key_rotation: KeyRotation = Field(default_factory=KeyRotation, description="Rotation of the signing keys.")
    client_auth_limit: ClientAuthLimit = Field(
        default_factory=ClientAuthLimit, description="Limit on failed client authentications (secret guessing)."
    )

    @field_validator("issuer")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return value if value is None else check_issuer(value)


def check_issuer(value: str) -> str:
    """An issuer (RFC 8414 2): an http(s) URL without query, fragment or path."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an https:// (or http://) URL with a host, got {value!r}")
    if parts.query or parts.fragment or parts.path.rstrip("/"):
        raise ValueError(
            f"the URL {value!r} must have no path, query or fragment: the endpoints are served at the gateway's root"
        )
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"the URL {value!r} has an invalid port") from exc
    return value.rstrip("/")


class GatewayConfig(Strict):
    """The whole ``bastion.yaml``."""

    listen: Listen = Field(default_factory=Listen, description="The gateway's listener.")
    admin: Admin = Field(default_factory=Admin, description="The admin API's listener.")
    services: list[Service] = Field(min_length=1, description="The APIs behind the gateway.")
    access_log: AccessLog = Field(default_factory=AccessLog, description="The structured access log.")
    audit: AuditSettings = Field(
        default_factory=AuditSettings, description="The audit log: one record per request, kept in the store."
    )
    detectors: DetectorsSettings = Field(
        default_factory=DetectorsSettings,
        description="Threat detectors over every request's record (brute force, scanners...), and their alerts.",
    )
    policies: Policies = Field(default_factory=dict, description="Defaults for every service.")
    backends: Backends = Field(
        default_factory=Backends, description="Shared resources of the workers: the state backend and its server."
    )
    store: StoreSettings = Field(
        default_factory=StoreSettings,
        description="The durable store of consumers and credentials (SQLite beside the config by default).",
    )
    consumers: list[Consumer] = Field(
        default_factory=list, description="Consumers declared here (read-only in the store and the CLI)."
    )
    plans: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description=(
            "Plans a consumer's `plan` picks: `{free: {quotas: [{limit: 1000, window: 1d}], rate_limits: "
            "[{limit: 5, window: 1s}], scopes: [books:read]}}`, held per consumer over every route (see "
            "`policies.ratelimit.plans`); `scopes` bounds the keys its developers create in the portal."
        ),
    )
    oauth_server: OAuthServerSettings = Field(
        default_factory=OAuthServerSettings,
        description="The built-in OAuth 2.0 authorization server (client credentials, JWT access tokens).",
    )

    @model_validator(mode="after")
    def _unique_services(self) -> GatewayConfig:
        seen: set[str] = set()
        for svc in self.services:
            if svc.name in seen:
                raise ValueError(f"two services are named {svc.name!r}; names must be unique")
            seen.add(svc.name)
        return self

    @model_validator(mode="after")
    def _known_plans(self) -> GatewayConfig:
        # Only once plans are defined: before, `plan` was a label with no effect.
        if self.plans:
            for consumer in self.consumers:
                if consumer.plan is not None and consumer.plan not in self.plans:
                    raise ValueError(
                        f"consumer {consumer.name!r} is on the plan {consumer.plan!r}, which `plans` does not "
                        f"define (it defines: {', '.join(sorted(self.plans))})"
                    )
            plan = self.admin.portal.plan
            if plan is not None and plan not in self.plans:
                raise ValueError(
                    f"admin.portal.plan is {plan!r}, which `plans` does not define (it defines: "
                    f"{', '.join(sorted(self.plans))})"
                )
        return self

    @field_validator("consumers")
    @classmethod
    def _unique_consumers(cls, value: list[Consumer]) -> list[Consumer]:
        names: set[str] = set()
        for consumer in value:
            if consumer.name in names:
                raise ValueError(f"two consumers are named {consumer.name!r}; names must be unique")
            names.add(consumer.name)
        return value
