"""API8:2023 Security Misconfiguration: headers, CORS, verbose errors, debug endpoints, TRACE, plain HTTP.

Heuristics:

* *Security headers*: the responses of up to :data:`MAX_SAMPLED` GET operations and of an
  unknown path are looked at; each header kind is one finding (not one per operation):
  ``X-Content-Type-Options: nosniff``; a ``Content-Security-Policy`` or ``X-Frame-Options``;
  ``Cache-Control: no-store`` on 2xx responses to authenticated requests; and
  ``Strict-Transport-Security`` when the base URL is https.
* *CORS*: a GET and a preflight (OPTIONS) from ``Origin: https://evil.example``; the origin
  reflected in ``Access-Control-Allow-Origin`` with ``Access-Control-Allow-Credentials: true``
  is one finding (high), reflected without credentials another (low). ``*`` without
  credentials is the normal setting for public APIs and is not reported.
* *Verbose errors*: wrong-typed parameters (text where an integer/number/boolean is declared), a random
  word in a free-text query parameter (dates and IDs the code parses itself) and a malformed JSON body;
  a response containing a stack trace, an exception name or a database error (signatures of Python,
  Java, .NET, Node, PHP, Ruby, Go and SQL engines) that the normal response does not contain is the
  finding.
* *Debug endpoints*: a short list of well-known debug/admin paths at the origin and under the
  base path; a 2xx answer whose body differs from the answer for a random path (soft 404s), for
  a path the spec does not declare, is a finding.
* *TRACE*: a TRACE request with a marker header; the marker echoed back in a 2xx body is the
  finding. *Plain HTTP*: the base URL is ``http://`` and the API answers on it.
"""

from __future__ import annotations

import re

from bastion.tester.audit.context import Operation, types_of
from bastion.tester.audit.interface import Severity
from bastion.tester.scan.checks.probing import (
    caller,
    declared_path,
    finding,
    json_request_schema,
    normalized,
    random_marker,
    skip,
    success,
)
from bastion.tester.scan.interface import Check, CheckInfo, Exchange, ScanContext, ScanFinding, Skip

__all__ = ["CHECKS", "STACK_TRACE", "CorsCredentials", "CorsReflect", "DebugEndpoints", "PlainHttp",
           "RevealingHeaders", "SecurityHeaders", "TraceEnabled", "VerboseErrors", "error_signature"]

MAX_SAMPLED = 6
MAX_ERROR_PROBES = 24
EVIL_ORIGIN = "https://evil.example"

HEADERS = CheckInfo(
    id="API8-SECURITY-HEADERS",
    title="Security headers missing",
    category="API8:2023",
    cwe=693,
    severity=Severity.LOW,
    phase="misconfiguration",
    checks="Looks at responses for X-Content-Type-Options: nosniff, a Content-Security-Policy or "
    "X-Frame-Options, Cache-Control: no-store on authenticated responses, and HSTS over https; one finding "
    "per missing header.",
    advice="Bastion's `policies.headers` stage (on by default) sets `X-Content-Type-Options: nosniff`, "
    "`X-Frame-Options: DENY`, a `Content-Security-Policy` with `frame-ancestors 'none'` and more on every "
    "response of a declared route, and `Cache-Control: no-store` on every authenticated one; "
    "HSTS comes with `listen.tls.hsts` when Bastion terminates TLS.",
)

CORS_CREDENTIALS = CheckInfo(
    id="API8-CORS-CREDENTIALS",
    title="CORS reflects any origin with credentials",
    category="API8:2023",
    cwe=942,
    severity=Severity.HIGH,
    phase="misconfiguration",
    checks=f"Sends a request and a preflight with `Origin: {EVIL_ORIGIN}`; the origin echoed in "
    "Access-Control-Allow-Origin together with Access-Control-Allow-Credentials: true is a finding.",
    advice="Allow-list the origins that may call the API with credentials; never echo the Origin header. "
    "With Bastion, list them in `policies.cors.allow_origins`: its cors stage answers preflights itself and "
    "drops the API's own CORS headers; otherwise remove the reflection in the API (or its framework's CORS "
    "middleware configuration). Prefer bearer tokens over cookies.",
)

CORS_REFLECT = CheckInfo(
    id="API8-CORS-REFLECT",
    title="CORS reflects any origin",
    category="API8:2023",
    cwe=942,
    severity=Severity.LOW,
    phase="misconfiguration",
    checks=f"Sends a request and a preflight with `Origin: {EVIL_ORIGIN}`; the origin echoed in "
    "Access-Control-Allow-Origin (without credentials) is a finding.",
    advice="Allow-list the origins that need the API, or answer `*` for a deliberately public API; do not "
    "echo the Origin header.",
)

VERBOSE = CheckInfo(
    id="API8-VERBOSE-ERRORS",
    title="Verbose error messages",
    category="API8:2023",
    cwe=209,
    severity=Severity.MEDIUM,
    phase="misconfiguration",
    checks="Sends wrong-typed parameters, random words in free-text query parameters and malformed JSON bodies; "
    "stack traces, exception names or database errors in the response are a finding.",
    advice="Answer errors with a generic problem document (RFC 9457) and log the details server-side; turn "
    "debug mode off. Bastion's `policies.validation` (on by default for OpenAPI routes) answers wrong-typed "
    "parameters and malformed bodies with its own 400 before they reach the API.",
)

DEBUG = CheckInfo(
    id="API8-DEBUG-ENDPOINT",
    title="Debug or management endpoint exposed",
    category="API8:2023",
    cwe=489,
    severity=Severity.HIGH,
    phase="misconfiguration",
    checks="Probes well-known debug and management paths (/debug/vars, /actuator/env, /.env, /server-status...) "
    "at the origin and under the base path; a 2xx answer that is not the soft-404 page is a finding.",
    advice="Disable debug endpoints in production or bind them to a management port. Bastion's routes derived "
    "from the OpenAPI document deny every undeclared path and method (404/405), so such paths never reach "
    "the API behind it.",
)

TRACE = CheckInfo(
    id="API8-TRACE-ENABLED",
    title="HTTP TRACE enabled",
    category="API8:2023",
    cwe=693,
    severity=Severity.LOW,
    phase="misconfiguration",
    checks="Sends TRACE with a marker header; the request echoed back is a finding (cross-site tracing).",
    advice="Disable TRACE on the server. Bastion's routes never allow TRACE unless a hand-written route lists "
    "it (405 otherwise).",
)

PLAIN_HTTP = CheckInfo(
    id="API8-PLAIN-HTTP",
    title="API served over plain HTTP",
    category="API8:2023",
    cwe=319,
    severity=Severity.MEDIUM,
    phase="misconfiguration",
    checks="The base URL is http:// and the API answers on it: credentials and data travel in clear text.",
    advice="Serve the API over HTTPS only. Bastion terminates TLS with `listen.tls` (cert, key, "
    "`min_version`) and sends HSTS (`listen.tls.hsts`).",
)

REVEALING = CheckInfo(
    id="API8-REVEALING-HEADERS",
    title="Response headers reveal the backend's software",
    category="API8:2023",
    cwe=200,
    severity=Severity.LOW,
    phase="misconfiguration",
    checks="Looks at the sampled responses for X-Powered-By, X-AspNet-Version, X-AspNetMvc-Version, "
    "X-Generator and X-Runtime, and a Server header naming a version: each tells an attacker which "
    "vulnerabilities to try.",
    advice="Stop the framework from sending these headers. Bastion's `policies.headers` stage removes "
    "`Server`, `X-Powered-By`, `X-AspNet-Version` and `X-AspNetMvc-Version` from responses by default "
    "(`remove`).",
)
#: Headers that name the software behind the API whatever their value.
REVEALING_HEADERS = ("x-powered-by", "x-aspnet-version", "x-aspnetmvc-version", "x-generator", "x-runtime")
_VERSION = re.compile(r"\d+\.\d+")

#: Stack traces, exception names and database errors; each a sign of an unhandled error shown to clients.
STACK_TRACE: list[tuple[str, re.Pattern[str]]] = [
    ("a Python traceback", re.compile(r"Traceback \(most recent call last\)|File \"[^\"\n]+\", line \d+")),
    ("a Java stack trace", re.compile(r"\bat (?:java|javax|jdk|sun|org|com)\.[\w$.]+\([\w$]+\.java:\d+\)")),
    ("a .NET stack trace", re.compile(r"\bat [\w.<>`]+\(.*\) in \S+\.cs:line \d+|\bSystem\.[A-Z]\w*Exception\b")),
    ("a Node.js stack trace", re.compile(r"\bat (?:[\w.<>]+ )?\(?/[^\s()]+\.(?:js|ts|mjs):\d+:\d+\)?")),
    ("a PHP error", re.compile(r"<b>(?:Fatal error|Parse error|Warning)</b>:|PHP (?:Fatal|Parse) error|"
                              r"Stack trace:\s*#0")),
    ("a Ruby backtrace", re.compile(r"\.rb:\d+:in `")),
    ("a Go panic", re.compile(r"goroutine \d+ \[running\]|panic: runtime error")),
    ("a framework debug page", re.compile(r"Werkzeug Debugger|Django Version:|Whitelabel Error Page|"
                                          r"DEBUG = True|Laravel|Symfony\\Component")),
    ("an exception name", re.compile(r"(?m)^\s*(?:[\w.]+\.)?[A-Z]\w*(?:Error|Exception): \S")),
    ("a database error", re.compile(r"SQL syntax.{0,80}MySQL|You have an error in your SQL syntax|"
                                    r"sqlite3\.\w+Error|SQLITE_ERROR|psycopg2?\.\w+|"
                                    r"PG::\w+Error|ORA-\d{5}|SQLSTATE\[|Unclosed quotation mark|"
                                    r"org\.hibernate\.|java\.sql\.SQLException|MongoError|"
                                    r"unterminated quoted string at or near")),
]


def error_signature(text: str) -> str | None:
    """What kind of internal detail ``text`` shows, or None."""
    for label, pattern in STACK_TRACE:
        if pattern.search(text):
            return label
    return None


async def _samples(ctx: ScanContext, info: CheckInfo) -> list[Exchange]:
    out: list[Exchange] = []
    for op in [o for o in ctx.operations() if o.method == "get"][:MAX_SAMPLED]:
        ident = caller(ctx, op)
        out.append(await ctx.send(ctx.plan(op, ident), ident, check=info))
    return [ex for ex in out if ex.status]


def _first_get(ctx: ScanContext) -> Operation | None:
    gets = [o for o in ctx.operations() if o.method == "get"]
    return min(gets, key=lambda o: ("{" in o.template, len(o.template)), default=None)


class SecurityHeaders(Check):
    """Responses without the usual security headers."""

    info = HEADERS

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        samples = await _samples(ctx, self.info)
        ident = ctx.users[0] if ctx.users else ctx.anonymous
        missing = await ctx.raw("GET", "/" + random_marker("no-such-path-"), ident, check=self.info)
        if missing.status:
            samples.append(missing)
        if not samples:
            return [skip(self.info, "no response to look at")]
        out: list[ScanFinding | Skip] = []

        def report(header: str, lacking: list[Exchange], what: str) -> None:
            if lacking:
                out.append(finding(self.info, header, f"{len(lacking)} of {len(considered)} response(s) {what}.",
                                   lacking[0]))

        considered = samples
        report("X-Content-Type-Options", [ex for ex in samples if (ex.header("x-content-type-options") or "")
                                          .strip().lower() != "nosniff"], "lack `X-Content-Type-Options: nosniff`")
        report("Content-Security-Policy / X-Frame-Options",
               [ex for ex in samples if not ex.header("content-security-policy") and not ex.header("x-frame-options")],
               "have neither a Content-Security-Policy nor X-Frame-Options (framing, content sniffing)")
        considered = [ex for ex in samples if success(ex) and _authenticated(ex)]
        report("Cache-Control", [ex for ex in considered
                                 if "no-store" not in (ex.header("cache-control") or "").lower()],
               "to authenticated requests lack `Cache-Control: no-store` (caches may keep private data)")
        if ctx.options.base_url.lower().startswith("https://"):
            considered = samples
            report("Strict-Transport-Security", [ex for ex in samples if not ex.header("strict-transport-security")],
                   "lack `Strict-Transport-Security`")
        return out


def _authenticated(ex: Exchange) -> bool:
    names = {k.lower() for k, _ in ex.request_headers}
    return bool(names & {"authorization", "cookie"}) or any(
        k in ex.url for k in ("access_token=", "api_key=", "apikey="))


class _Cors(Check):
    credentials: bool

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        op = _first_get(ctx)
        ident = caller(ctx, op)
        # A valid request (required query parameters included): an API, or a gateway in front of it, that
        # refuses an invalid one before its CORS layer runs would otherwise hide the reflection.
        if op is not None:
            plan = ctx.plan(op, ident)
            path, query = plan.path, plan.query
            simple = await ctx.send(plan.copy(headers={**plan.headers, "Origin": EVIL_ORIGIN}), ident,
                                    check=self.info)
        else:
            path, query = "/", []
            simple = await ctx.raw("GET", path, ident, headers={"Origin": EVIL_ORIGIN}, check=self.info)
        preflight = await ctx.raw("OPTIONS", path, ctx.anonymous, query=query, check=self.info, headers={
            "Origin": EVIL_ORIGIN, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization,content-type"})
        for ex in (simple, preflight):
            allowed = (ex.header("access-control-allow-origin") or "").strip()
            with_credentials = (ex.header("access-control-allow-credentials") or "").strip().lower() == "true"
            if allowed.lower() in (EVIL_ORIGIN, "null") and with_credentials == self.credentials:
                extra = " with `Access-Control-Allow-Credentials: true`" if with_credentials else ""
                return [finding(self.info, f"{ex.method} {path}",
                                f"The API allows the foreign origin {EVIL_ORIGIN} (`Access-Control-Allow-Origin: "
                                f"{allowed}`){extra}: any web site can call it from a victim's browser"
                                f"{' with their credentials' if with_credentials else ''}.", ex)]
        return []


class CorsCredentials(_Cors):
    info = CORS_CREDENTIALS
    credentials = True


class CorsReflect(_Cors):
    info = CORS_REFLECT
    credentials = False


class RevealingHeaders(Check):
    """Headers naming the backend's software (and its version)."""

    info = REVEALING

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        samples = await _samples(ctx, self.info)
        if not samples:
            return [skip(self.info, "no response to look at")]
        found: dict[str, Exchange] = {}
        for ex in samples:
            for name, value in ex.response_headers:
                lname = name.lower()
                if lname in REVEALING_HEADERS or (lname == "server" and _VERSION.search(value)):
                    found.setdefault(f"{name}: {value}", ex)
        if not found:
            return []
        first = next(iter(found.values()))
        return [finding(self.info, "response headers",
                        f"Responses carry {', '.join(f'`{h}`' for h in found)}: the backend names its software.",
                        first)]


def _odd_values(ctx: ScanContext, op: Operation) -> list[tuple[str, str]]:
    """Query values the operation does not expect: text for the first integer/number/boolean parameter, and a
    random word for the first free-text one (a string the code parses itself, a date or an ID, is declared as
    plain text more often than not; an unhandled parse error shows there)."""
    typed: list[tuple[str, str]] = []
    free: list[tuple[str, str]] = []
    for param in op.parameters:
        node = ctx.spec.parameter_schema(param)
        if param.location != "query" or node is None:
            continue
        kinds = types_of(node.schema)
        if kinds & {"integer", "number", "boolean"} and not typed:
            typed.append((param.name, "abc"))
        elif kinds == {"string"} and "enum" not in node.schema and not free:
            free.append((param.name, random_marker("bscan-")))
    return typed + free


class VerboseErrors(Check):
    """Error responses that show internals."""

    info = VERBOSE

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        probes = 0
        for op in ctx.operations():
            if probes >= MAX_ERROR_PROBES:
                break
            ident = caller(ctx, op)
            plan = ctx.plan(op, ident)
            variants = [plan.copy(query=[(k, v) for k, v in plan.query if k != name] + [(name, value)])
                        for name, value in _odd_values(ctx, op)]
            if json_request_schema(ctx.spec, op) is not None and op.method in ("post", "put", "patch"):
                variants.append(plan.copy(json=None, body=b'{"bastion": ', content_type="application/json"))
            for variant in variants:
                probes += 1
                ex = await ctx.send(variant, ident, check=self.info)
                what = error_signature(ex.text)
                if what is None:
                    continue
                normal = await ctx.send(plan, ident, check=self.info)
                if error_signature(normal.text) is not None:
                    continue
                trigger = "A malformed JSON body" if variant.body else "An unexpected query value"
                return [finding(self.info, op.label, f"{trigger} got a {ex.status} response containing {what}.", ex)]
        return [] if probes else [skip(self.info, "no operation with a typed query parameter or a JSON body")]


DEBUG_PATHS = (
    "/debug", "/debug/vars", "/debug/pprof/", "/debug/config", "/_debug", "/__debug__/", "/actuator",
    "/actuator/env", "/actuator/configprops", "/.env", "/config", "/config.json", "/server-status",
    "/server-info", "/phpinfo.php", "/info.php", "/console", "/env", "/elmah.axd", "/.git/config",
)


class DebugEndpoints(Check):
    """Well-known debug and management paths that answer."""

    info = DEBUG

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        ident = ctx.users[0] if ctx.users else ctx.anonymous
        prefixes = [""] if not ctx.base_path else ["", ctx.base_path]
        out: list[ScanFinding | Skip] = []
        for prefix in prefixes:
            random_path = prefix + "/" + random_marker("no-such-path-")
            baseline = await ctx.raw("GET", ctx.origin + random_path, ident, check=self.info)
            for path in DEBUG_PATHS:
                full = prefix + path
                if declared_path(ctx.spec, ctx.base_path, full):
                    continue
                ex = await ctx.raw("GET", ctx.origin + full, ident, check=self.info)
                if not success(ex) or not ex.response_body.strip():
                    continue
                if success(baseline) and normalized(ex, [full]) == normalized(baseline, [random_path]):
                    continue
                out.append(finding(self.info, f"GET {full}",
                                   f"`{full}` answers {ex.status} with {len(ex.response_body)} bytes of content "
                                   "(an unknown path does not): a debug or management endpoint is exposed.", ex))
        return out


class TraceEnabled(Check):
    """TRACE echoes requests."""

    info = TRACE

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        op = _first_get(ctx)
        paths = ["/"] + ([ctx.plan(op, ctx.anonymous).path] if op is not None else [])
        for path in dict.fromkeys(paths):
            marker = random_marker("trace")
            ex = await ctx.raw("TRACE", path, ctx.anonymous, headers={"X-Bastion-Trace": marker}, check=self.info)
            if success(ex) and marker in ex.text:
                return [finding(self.info, f"TRACE {path}",
                                f"TRACE answered {ex.status} and echoed the request, headers included.", ex)]
        return []


class PlainHttp(Check):
    """The API answers over plain HTTP."""

    info = PLAIN_HTTP

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        if not ctx.options.base_url.lower().startswith("http://"):
            return []
        op = _first_get(ctx)
        ident = caller(ctx, op)
        ex = (await ctx.send(ctx.plan(op, ident), ident, check=self.info) if op is not None
              else await ctx.raw("GET", "/", ident, check=self.info))
        if not ex.status:
            return [skip(self.info, f"no answer over plain HTTP: {ex.error}")]
        return [finding(self.info, ctx.origin, f"The API answers over plain HTTP ({ex.status} for {ex.method} "
                        f"{ex.url}); credentials and data can be read and changed on the network.", ex)]


CHECKS: list[Check] = [SecurityHeaders(), RevealingHeaders(), CorsCredentials(), CorsReflect(), VerboseErrors(),
                       DebugEndpoints(), TraceEnabled(), PlainHttp()]
