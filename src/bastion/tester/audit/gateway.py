"""Rules on the gateway configuration (``-c bastion.yaml``): how Bastion itself is set up."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from bastion.config.yamlsrc import FieldPath, Source
from bastion.stages.auth import auth_stage
from bastion.tester.audit.context import WRITE_METHODS, Gateway
from bastion.tester.audit.interface import Hit, Rule, RuleInfo, Severity
from bastion.tester.audit.transport import is_loopback

#: Above this a body limit is "huge" (the default is 10 MiB).
HUGE_BODY_BYTES = 32 * 1024 * 1024
_SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|api[_-]?key|private[_-]?key|credential|authorization|"
    r"hmac|signing[_-]?key)",
    re.IGNORECASE,
)


def policy_layers(gw: Gateway) -> Iterator[tuple[Source, str, dict[str, Any], FieldPath]]:
    """Every stage policy as written: ``(file, stage name, values, path)`` in the config and OpenAPI documents."""
    data = gw.source.data
    holders: list[tuple[Any, FieldPath]] = [(data.get("policies"), ("policies",))]
    services = data.get("services")
    for si, svc in enumerate(services if isinstance(services, list) else []):
        if not isinstance(svc, dict):
            continue
        holders.append((svc.get("policies"), ("services", si, "policies")))
        routes = svc.get("routes")
        for ri, route in enumerate(routes if isinstance(routes, list) else []):
            if isinstance(route, dict):
                holders.append((route.get("policies"), ("services", si, "routes", ri, "policies")))
    for holder, path in holders:
        for stage, values in holder.items() if isinstance(holder, dict) else ():
            if isinstance(values, dict):
                yield gw.source, str(stage), values, (*path, stage)
    for doc in gw.loaded.openapi.values():
        places: list[tuple[Any, FieldPath]] = [(doc.data, ())]
        paths = doc.data.get("paths")
        for template, item in paths.items() if isinstance(paths, dict) else ():
            if isinstance(item, dict):
                places.append((item, ("paths", template)))
                places += [(op, ("paths", template, m)) for m, op in item.items() if isinstance(op, dict)]
        for node, path in places:
            for key, values in node.items():
                if str(key).startswith("x-bastion-") and isinstance(values, dict):
                    stage = str(key).removeprefix("x-bastion-").replace("-", "_")
                    yield doc.source, stage, values, (*path, key)


PUBLIC_WRITE = RuleInfo(
    id="BAST-GW-001",
    title="Public route that changes data",
    category="API5:2023",
    cwe=306,
    severity=Severity.HIGH,
    scope="config",
    checks="A route is public (`public: true`, or `security: []` in OpenAPI) yet accepts POST, PUT, PATCH or "
    "DELETE: anyone may change data through it.",
    fix="Remove `public: true` (or the operation's `security: []`) so the route needs authentication, or narrow "
    "the route's `methods` to GET/HEAD.",
)


def public_write(gw: Gateway) -> Iterator[Hit]:
    for route in gw.loaded.routes:
        writes = sorted(route.methods & WRITE_METHODS)
        if route.public and writes:
            source, path = gw.where(route)
            yield Hit(f"public route {route.id!r} accepts {', '.join(writes)}", source, path)


DELEGATED_AUTHENTICATION = RuleInfo(
    id="BAST-GW-002",
    title="Authentication delegated to the upstream",
    category="API2:2023",
    cwe=306,
    severity=Severity.MEDIUM,
    scope="config",
    checks="A route that requires authentication has `auth: {delegate: upstream}`: the gateway forwards "
    "requests without checking any credential, and the upstream alone must authenticate every one of them "
    "(an endpoint it forgets is open to anyone).",
    fix="Keep it only where the backend really authenticates every request; configure an authentication "
    "method in the `auth` stage when one fits, so the gateway refuses anonymous requests itself.",
)


def delegated_authentication(gw: Gateway) -> Iterator[Hit]:
    for route in gw.loaded.routes:
        auth = auth_stage(route.built)
        if auth is not None and auth.delegated:
            source, path = gw.where(route)
            yield Hit(f"route {route.id!r}: {auth.summary}", source, path)


UNVERIFIABLE_AUTHENTICATION = RuleInfo(
    id="BAST-GW-017",
    title="Operation unreachable: its authentication is not configured",
    category="API2:2023",
    cwe=306,
    severity=Severity.INFO,
    scope="config",
    checks="A route requires authentication and nothing configured can verify it: the gateway answers "
    "every request with 401 and never forwards it (deny by default), so the operation is unreachable.",
    fix="Configure an authentication method in the `auth` stage; set `delegate: upstream` if the backend "
    "authenticates requests itself; or mark the route `public: true` (`security: []`) if it needs none.",
)


def unverifiable_authentication(gw: Gateway) -> Iterator[Hit]:
    for route in gw.loaded.routes:
        auth = auth_stage(route.built)
        if auth is not None and auth.refusal is not None:
            source, path = gw.where(route)
            yield Hit(f"route {route.id!r} answers {auth.summary}", source, path)


FAIL_OPEN = RuleInfo(
    id="BAST-GW-003",
    title="Stage fails open",
    category="API8:2023",
    cwe=636,
    severity=Severity.HIGH,
    scope="config",
    checks="A stage policy sets `failure_mode: open`: when the stage breaks (an exception, Redis or a JWKS "
    "endpoint down) requests pass unchecked, which an attacker can provoke.",
    fix="Remove `failure_mode: open` (the default is `closed`: the request is refused with 503); keep the "
    "dependency highly available instead.",
)


def fail_open(gw: Gateway) -> Iterator[Hit]:
    for source, stage, values, path in policy_layers(gw):
        if values.get("failure_mode") == "open":
            yield Hit(f"stage {stage!r} fails open", source, (*path, "failure_mode"))


SHADOW_MODE = RuleInfo(
    id="BAST-GW-004",
    title="Stage in shadow mode",
    category="API8:2023",
    cwe=693,
    severity=Severity.MEDIUM,
    scope="config",
    checks="A stage policy sets `enforce: false`: the stage only logs what it would block.",
    fix="Set `enforce: true` (the default) once the shadow-mode logs show no false positives.",
)


def shadow_mode(gw: Gateway) -> Iterator[Hit]:
    for source, stage, values, path in policy_layers(gw):
        if values.get("enforce") is False:
            yield Hit(f"stage {stage!r} does not enforce (shadow mode)", source, (*path, "enforce"))


DETECTION_MONITOR = RuleInfo(
    id="BAST-GW-005",
    title="Attack detection does not block",
    category="API8:2023",
    cwe=693,
    severity=Severity.MEDIUM,
    scope="config",
    checks="The detection stage runs with the deprecated `mode: monitor` or `mode: off`: injection attempts reach "
    "the upstream.",
    fix="Remove `mode` (blocking is the default), with `exclusions` for the inputs that cause false positives; "
    "shadow mode is `enforce: false` (BAST-GW-004).",
)


def detection_monitor(gw: Gateway) -> Iterator[Hit]:
    for source, stage, values, path in policy_layers(gw):
        if stage == "detection" and values.get("mode") in ("monitor", "off"):
            yield Hit(f"detection mode is {values['mode']!r}", source, (*path, "mode"))


def _exposed(host: str) -> bool:
    return not is_loopback(host)


PUBLIC_ADMIN = RuleInfo(
    id="BAST-GW-006",
    title="Admin API on a non-loopback address",
    category="API8:2023",
    cwe=668,
    severity=Severity.MEDIUM,
    scope="config",
    checks="`admin.host` is not a loopback address: the control plane (admin API, dashboard, portal, and the "
    "unauthenticated health and metrics endpoints) is reachable from that interface. Bastion only allows it "
    "with `admin.tls` and an admin user, but every admin password and token is then one guess away from the "
    "network.",
    fix="Set `admin.host: 127.0.0.1` and reach it through SSH or a private sidecar; if another host must reach it, "
    "bind a private interface, firewall it, and set `admin.public_metrics: false` if the metrics need not be open.",
)


def public_admin(gw: Gateway) -> Iterator[Hit]:
    host = gw.loaded.config.admin.host
    if _exposed(host):
        yield Hit(f"the admin API listens on {host}", gw.source, ("admin", "host"))


NO_TLS = RuleInfo(
    id="BAST-GW-007",
    title="Listener without TLS on a network address",
    category="API8:2023",
    cwe=319,
    severity=Severity.HIGH,
    scope="config",
    checks="`listen.host` is not loopback and `listen.tls` is unset: clients send credentials in clear text "
    "(fine only behind a TLS-terminating load balancer on a private network).",
    fix="Set `listen.tls.cert` and `listen.tls.key` (see `bastion cert` for a test pair), or bind to loopback "
    "behind a TLS-terminating proxy listed in `listen.trusted_proxies`.",
)


def no_tls(gw: Gateway) -> Iterator[Hit]:
    listen = gw.loaded.config.listen
    if listen.tls is None and _exposed(listen.host):
        yield Hit(f"the gateway listens on {listen.host}:{listen.port} without TLS", gw.source, ("listen", "host"))


NO_HSTS = RuleInfo(
    id="BAST-GW-008",
    title="HSTS disabled",
    category="API8:2023",
    cwe=319,
    severity=Severity.MEDIUM,
    scope="config",
    checks="TLS is on but `listen.tls.hsts.enabled` is false (or max_age is under a day): browsers may still be "
    "downgraded to HTTP.",
    fix="Remove `hsts.enabled: false`; keep `max_age` at a year or more (default two years).",
)


def no_hsts(gw: Gateway) -> Iterator[Hit]:
    tls = gw.loaded.config.listen.tls
    if tls is None:
        return
    if not tls.hsts.enabled:
        yield Hit("HSTS is disabled", gw.source, ("listen", "tls", "hsts", "enabled"))
    elif tls.hsts.max_age < 86400:
        yield Hit(f"HSTS max_age is only {tls.hsts.max_age} seconds", gw.source, ("listen", "tls", "hsts", "max_age"))


NO_VERIFY = RuleInfo(
    id="BAST-GW-009",
    title="Upstream certificate not verified",
    category="API10:2023",
    cwe=295,
    severity=Severity.HIGH,
    scope="config",
    checks="`upstream.tls.verify: false`: anyone on the path to the upstream can impersonate it and read or "
    "change every request.",
    fix="Remove `verify: false`; for a private CA set `upstream.tls.ca` to its bundle, and `server_name` if the "
    "certificate names another host.",
)


def no_verify(gw: Gateway) -> Iterator[Hit]:
    for i, svc in enumerate(gw.loaded.config.services):
        if not svc.upstream.tls.verify:
            yield Hit(
                f"service {svc.name!r} does not verify its upstream's certificate",
                gw.source,
                ("services", i, "upstream", "tls", "verify"),
            )


PLAIN_UPSTREAM = RuleInfo(
    id="BAST-GW-010",
    title="Upstream over plain HTTP across the network",
    category="API8:2023",
    cwe=319,
    severity=Severity.MEDIUM,
    scope="config",
    checks="An upstream target is http:// on a non-loopback host: traffic between Bastion and the API, "
    "including the identity headers Bastion adds, can be read and changed on the network.",
    fix="Use https:// targets (with `upstream.tls` settings), or keep the upstream on the same host or a "
    "private network segment.",
)


def plain_upstream(gw: Gateway) -> Iterator[Hit]:
    for i, svc in enumerate(gw.loaded.config.services):
        for j, target in enumerate(svc.upstream.targets):
            parts = urlsplit(target.url)
            if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
                raw = gw.source.data["services"][i].get("upstream") if isinstance(gw.source.data, dict) else None
                path: FieldPath = ("services", i, "upstream")
                if isinstance(raw, dict) and isinstance(raw.get("targets"), list):
                    path = (*path, "targets", j)
                elif isinstance(raw, list):
                    path = (*path, j)
                yield Hit(f"service {svc.name!r} reaches {target.url} over plain HTTP", gw.source, path)


CATCH_ALL = RuleInfo(
    id="BAST-GW-011",
    title="Prefix route (deny-by-default weakened)",
    category="API9:2023",
    cwe=1059,
    severity=Severity.MEDIUM,
    scope="config",
    checks="A route has `prefix: true`: every path under it reaches the upstream, including undocumented, "
    "debug and old-version endpoints the gateway would otherwise refuse with 404.",
    fix="Declare the operations instead (an OpenAPI document or exact routes); keep prefix routes for static "
    "content at most, and never on '/'.",
)


def catch_all(gw: Gateway) -> Iterator[Hit]:
    for route in gw.loaded.routes:
        if route.prefix:
            source, path = gw.where(route)
            what = "everything (catch-all)" if route.path.rstrip("/") == "" else f"everything under {route.path}"
            yield Hit(f"route {route.id!r} forwards {what}", source, (*path, "prefix") if path else path)


INLINE_SECRET = RuleInfo(
    id="BAST-GW-012",
    title="Secret written in the configuration",
    category="API8:2023",
    cwe=798,
    severity=Severity.HIGH,
    scope="config",
    checks="A field named like a secret (secret, password, token, api_key, authorization...) holds a literal "
    "value instead of an `${ENV_VAR}` reference: it ends up in version control and backups.",
    fix="Write `${NAME}` and provide the value through the environment (or a secret manager that sets it).",
)


def _walk(node: Any, path: FieldPath) -> Iterator[tuple[FieldPath, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*path, k), v
            yield from _walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, i))


def inline_secret(gw: Gateway) -> Iterator[Hit]:
    for path, value in _walk(gw.source.data, ()):
        key = path[-1]
        if (
            isinstance(key, str)
            and _SECRET_KEY.search(key)
            and isinstance(value, str)
            and value.strip()
            and "${" not in value
        ):
            yield Hit(f"{key!r} holds a literal secret", gw.source, path)


HUGE_BODY = RuleInfo(
    id="BAST-GW-013",
    title="Very large request body limit",
    category="API4:2023",
    cwe=770,
    severity=Severity.MEDIUM,
    scope="config",
    checks=f"A `max_body_bytes` is above {HUGE_BODY_BYTES // (1024 * 1024)} MiB: every worker may have to buffer "
    "and inspect that much per request.",
    fix="Lower `listen.limits.max_body_bytes` and raise it only on the routes that upload files "
    "(`routes[].max_body_bytes`).",
)


def huge_body(gw: Gateway) -> Iterator[Hit]:
    for path, value in _walk(gw.source.data, ()):
        if path[-1] == "max_body_bytes" and isinstance(value, int) and value > HUGE_BODY_BYTES:
            yield Hit(f"max_body_bytes is {value} bytes ({value / (1024 * 1024):.0f} MiB)", gw.source, path)


WILDCARD_CORS = RuleInfo(
    id="BAST-GW-014",
    title="Gateway sends CORS headers open to every origin",
    category="API8:2023",
    cwe=942,
    severity=Severity.MEDIUM,
    scope="config",
    checks="The cors stage allows origin `*` (`policies.cors.allow_origins`), or the headers stage sets "
    "`access-control-allow-origin: *` (worse with `access-control-allow-credentials: true`).",
    fix="List your front-ends' origins in `policies.cors.allow_origins` (exact, or `https://*.example.com`) "
    "instead of `*`, and set CORS there rather than as fixed headers in `policies.headers`.",
)


def wildcard_cors(gw: Gateway) -> Iterator[Hit]:
    for source, stage, values, path in policy_layers(gw):
        if stage == "cors":
            origins = values.get("allow_origins")
            if isinstance(origins, list) and "*" in origins:
                yield Hit("CORS allows every origin", source, (*path, "allow_origins"))
            continue
        if stage != "headers":
            continue
        for key in ("set", "add_if_missing"):
            headers = values.get(key)
            lowered = {str(k).lower(): (k, v) for k, v in headers.items()} if isinstance(headers, dict) else {}
            origin = lowered.get("access-control-allow-origin")
            if origin is not None and str(origin[1]).strip() == "*":
                creds = str(lowered.get("access-control-allow-credentials", ("", ""))[1]).lower() == "true"
                extra = " with credentials" if creds else ""
                yield Hit(f"CORS allows every origin{extra}", source, (*path, key, origin[0]))


TRUST_EVERYONE = RuleInfo(
    id="BAST-GW-015",
    title="Forwarded headers trusted from everyone",
    category="API8:2023",
    cwe=348,
    severity=Severity.HIGH,
    scope="config",
    checks="`listen.trusted_proxies` contains a very wide network (shorter than /8): any client can forge "
    "X-Forwarded-For and choose the IP address rate limits and logs see.",
    fix="List only the addresses of your own load balancers in `listen.trusted_proxies`.",
)


def trust_everyone(gw: Gateway) -> Iterator[Hit]:
    for i, net in enumerate(gw.loaded.config.listen.trusted_proxies):
        if net.prefixlen < 8:
            yield Hit(f"trusted_proxies includes {net}", gw.source, ("listen", "trusted_proxies", i))


NO_ACCESS_LOG = RuleInfo(
    id="BAST-GW-016",
    title="Access log disabled",
    category="API9:2023",
    cwe=778,
    severity=Severity.LOW,
    scope="config",
    checks="`access_log.enabled: false`: no record of who called what, so abuse and attacks go unseen.",
    fix="Remove `access_log.enabled: false`; ship the JSON lines to your log platform.",
)


def no_access_log(gw: Gateway) -> Iterator[Hit]:
    if not gw.loaded.config.access_log.enabled:
        yield Hit("the access log is disabled", gw.source, ("access_log", "enabled"))


RULES: tuple[Rule[Gateway], ...] = (
    Rule(PUBLIC_WRITE, public_write),
    Rule(DELEGATED_AUTHENTICATION, delegated_authentication),
    Rule(FAIL_OPEN, fail_open),
    Rule(SHADOW_MODE, shadow_mode),
    Rule(DETECTION_MONITOR, detection_monitor),
    Rule(PUBLIC_ADMIN, public_admin),
    Rule(NO_TLS, no_tls),
    Rule(NO_HSTS, no_hsts),
    Rule(NO_VERIFY, no_verify),
    Rule(PLAIN_UPSTREAM, plain_upstream),
    Rule(CATCH_ALL, catch_all),
    Rule(INLINE_SECRET, inline_secret),
    Rule(HUGE_BODY, huge_body),
    Rule(WILDCARD_CORS, wildcard_cors),
    Rule(TRUST_EVERYONE, trust_everyone),
    Rule(NO_ACCESS_LOG, no_access_log),
    Rule(UNVERIFIABLE_AUTHENTICATION, unverifiable_authentication),
)
