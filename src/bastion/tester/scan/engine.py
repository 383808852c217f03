"""Run a scan: log the identities in, discover objects, run the checks phase by phase.

:class:`Scan` is the :class:`ScanContext` checks use. :func:`run_scan` is the whole scan:

1. **login** — each configured identity gets its credentials (static headers, or a login flow);
2. **discovery** — each user (and the admin) creates one object through every "create" operation
   (a POST to a collection that has an item path ``/things/{id}``) and lists collections, so
   later checks know which object IDs belong to whom (:meth:`Scan.created`);
3. **checks** — in phase order; a check that needs more users, an admin, or
   ``--allow-destructive`` is skipped with the reason, and one that fails is reported as skipped
   with its error (never silently dropped).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from bastion.tester.audit.context import Operation, Spec, load_spec
from bastion.tester.scan.canary import CanaryListener
from bastion.tester.scan.client import ScanClient, origin_of
from bastion.tester.scan.identities import IdentityConfig, credential_fields, json_pointer_get
from bastion.tester.scan.interface import (
    Check,
    CheckInfo,
    Exchange,
    Identity,
    Phase,
    RequestPlan,
    ScanFinding,
    ScanOptions,
    Skip,
)
from bastion.tester.scan.samples import sample_value

PHASES: tuple[Phase, ...] = (
    "discovery",
    "authentication",
    "authorization",
    "properties",
    "resources",
    "injection",
    "misconfiguration",
    "inventory",
)
#: Path or operationId words that mark an operation changing credentials or contact data.
SENSITIVE_CHANGE = re.compile(r"password|passwd|email|credential", re.IGNORECASE)
LIST_KEYS = ("items", "data", "results", "records", "content", "values", "list")

#: ``progress(phase, done, total, label)`` is called as the scan advances.
Progress = Callable[[str, int, int, str], None]


class ScanError(Exception):
    """The scan could not start (bad base URL, login failed...): a message for the user."""


@dataclass
class ScanResult:
    """What a scan found, what it skipped (with reasons), and how much it sent."""

    base_url: str
    spec_file: str
    findings: list[ScanFinding] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    ran: list[CheckInfo] = field(default_factory=list)
    exchanges: int = 0
    duration: float = 0.0
    identities: list[str] = field(default_factory=list)
    #: Credential values to redact in reports, mapped to the placeholder shown instead.
    secrets: dict[str, str] = field(default_factory=dict)
    #: Things the reader should know about how the scan ran (e.g. a check's burst outside ``--max-rps``).
    notes: list[str] = field(default_factory=list)


@dataclass
class _Object:
    op: Operation
    values: dict[str, str]
    created: bool


def is_destructive(op: Operation) -> bool:
    """DELETE, and writes that change passwords or e-mail addresses (on real accounts)."""
    method = op.method.upper()
    if method == "DELETE":
        return True
    if method in ("POST", "PUT", "PATCH"):
        op_id = str(op.node.get("operationId", ""))
        return bool(SENSITIVE_CHANGE.search(op.template) or SENSITIVE_CHANGE.search(op.template + " " + op_id))
    return False


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _path_params(template: str) -> list[str]:
    return re.findall(r"\{([^}]+)\}", template)


def extract_id(body: Any, param: str) -> str | None:
    """The new object's ID in a create response: the property named like the path parameter, else ``id``."""
    if isinstance(body, dict):
        wanted = _norm(param)
        for key, value in body.items():
            if _norm(str(key)) == wanted and isinstance(value, str | int) and not isinstance(value, bool):
                return str(value)
        if isinstance(body.get("id"), str | int) and not isinstance(body.get("id"), bool):
            return str(body["id"])
        for key in ("data", "item", "result", "object"):
            if isinstance(body.get(key), dict):
                return extract_id(body[key], param)
    return None


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 for an absolute path: ``/v2/../debug/vars`` -> ``/debug/vars``."""
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments[1:], 1):
        last = i == len(segments) - 1
        if seg == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif seg == ".":
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def list_items(body: Any) -> list[Any]:
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in LIST_KEYS:
            if isinstance(body.get(key), list):
                return list(body[key])
    return []


class Scan:
    """The :class:`ScanContext` the checks run against."""

    def __init__(
        self,
        spec: Spec,
        options: ScanOptions,
        client: ScanClient,
        users: Sequence[Identity],
        admin: Identity | None,
        canary: CanaryListener | None = None,
    ) -> None:
        self.spec = spec
        self.options = options
        self.client = client
        self.anonymous = Identity("anonymous", role="anonymous")
        self.users: Sequence[Identity] = list(users)
        self.admin = admin
        self.canary = canary
        self.origin = origin_of(options.base_url)
        self.base_path = urlsplit(options.base_url).path.rstrip("/")
        self._objects: dict[str, list[_Object]] = {}
        self._ops = [op for op in spec.operations if options.allow_destructive or not is_destructive(op)]

    # -- ScanContext --------------------------------------------------------------------
    def operations(self) -> Sequence[Operation]:
        return list(self._ops)

    def all_operations(self) -> Sequence[Operation]:
        """Every operation of the document, destructive ones included (for checks that only read them)."""
        return list(self.spec.operations)

    def path_values(self, op: Operation, identity: Identity,
                    path_values: Mapping[str, str] | None = None) -> dict[str, str]:
        """A value for each path parameter: given, else from ``identity``'s objects, else from the schema."""
        values: dict[str, str] = {}
        known = self._objects.get(identity.name, [])
        for name in _path_params(op.template):
            if path_values and name in path_values:
                values[name] = str(path_values[name])
                continue
            exact = [o for o in known if o.op.template == op.template and name in o.values]
            same = exact or [o for o in known if name in o.values]
            if same:
                values[name] = same[0].values[name]
                continue
            param = next((p for p in op.parameters if p.location == "path" and p.name == name), None)
            value: Any = "1"
            if param is not None:
                if "example" in param.node:
                    value = param.node["example"]
                else:
                    node = self.spec.parameter_schema(param)
                    value = sample_value(self.spec, node.schema, name) if node else "1"
            values[name] = str(value).lower() if isinstance(value, bool) else str(value)
        return values

    def plan(self, op: Operation, identity: Identity, *, path_values: Mapping[str, str] | None = None) -> RequestPlan:
        values = self.path_values(op, identity, path_values)
        path = op.template
        for name, value in values.items():
            path = path.replace("{" + name + "}", quote(value, safe=""))
        query: list[tuple[str, str]] = []
        headers: dict[str, str] = {}
        for param in op.parameters:
            if param.location not in ("query", "header") or not param.node.get("required"):
                continue
            if param.location == "header" and param.name.lower() in ("authorization", "cookie", "content-type"):
                continue
            node = self.spec.parameter_schema(param)
            raw = param.node["example"] if "example" in param.node else (
                sample_value(self.spec, node.schema, param.name) if node else "scan")
            text = str(raw).lower() if isinstance(raw, bool) else (
                ",".join(map(str, raw)) if isinstance(raw, list) else str(raw))
            if param.location == "query":
                query.append((param.name, text))
            else:
                headers[param.name] = text
        plan = RequestPlan(op, op.method.upper(), path, query, headers)
        body, _ = self.spec.resolve(op.node.get("requestBody"), ())
        content = body.get("content") if isinstance(body, dict) else None
        if isinstance(content, dict) and content:
            media = next((m for m in content if "json" in m.lower()), None) or next(iter(content))
            media_node = content[media]
            schema = media_node.get("schema") if isinstance(media_node, dict) else None
            example = media_node.get("example") if isinstance(media_node, dict) else None
            value = example if example is not None else (sample_value(self.spec, schema) if schema else {})
            if "json" in media.lower():
                plan.json = value
                plan.content_type = media
            elif media == "application/x-www-form-urlencoded" and isinstance(value, dict):
                from urllib.parse import urlencode

                plan.body = urlencode({k: str(v) for k, v in value.items()}).encode()
                plan.content_type = media
            else:
                plan.body = str(value).encode() if not isinstance(value, bytes) else value
                plan.content_type = media
        return plan

    def url_for(self, path: str) -> str:
        """``path`` under the base URL (dot segments resolved, never above the origin), or an absolute URL
        unchanged (the client refuses it unless it is on the base URL's origin)."""
        if path.startswith(("http://", "https://")):
            return path
        target, sep, query = path.partition("?")
        full = self.base_path + ("" if target.startswith("/") else "/") + target
        return self.origin + remove_dot_segments(full) + sep + query

    def credentials(self, identity: Identity) -> dict[str, str]:
        headers = dict(identity.headers)
        if identity.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in identity.cookies.items())
        return headers

    async def send(self, plan: RequestPlan, identity: Identity, *, check: CheckInfo | None = None,
                   timeout: float | None = None, retry_429: bool = True,  # noqa: ASYNC109
                   unthrottled: bool = False) -> Exchange:
        headers = self.credentials(identity)
        headers.update(plan.headers)
        body = b""
        if plan.json is not None:
            body = orjson.dumps(plan.json)
            headers.setdefault("Content-Type", plan.content_type or "application/json")
        elif plan.body is not None:
            body = plan.body
            if plan.content_type:
                headers.setdefault("Content-Type", plan.content_type)
        return await self.client.request(
            plan.method,
            self.url_for(plan.path),
            identity=identity.name,
            headers=headers,
            body=body,
            query=[*plan.query, *identity.query.items()],
            check_id=check.id if check else "engine",
            timeout=timeout,
            retry_429=retry_429,
            unthrottled=unthrottled and check is not None,
        )

    async def raw(self, method: str, path: str, identity: Identity, *, headers: Mapping[str, str] | None = None,
                  body: bytes | None = None, query: Sequence[tuple[str, str]] = (),
                  check: CheckInfo | None = None, timeout: float | None = None,  # noqa: ASYNC109
                  retry_429: bool = True) -> Exchange:
        sent = self.credentials(identity)
        sent.update(headers or {})
        return await self.client.request(
            method.upper(),
            self.url_for(path),
            identity=identity.name,
            headers=sent,
            body=body or b"",
            query=[*query, *identity.query.items()],
            check_id=check.id if check else "engine",
            timeout=timeout,
            retry_429=retry_429,
        )

    def canary_url(self, token: str) -> str | None:
        return self.canary.url(token) if self.canary is not None else None

    def canary_hits(self, token: str) -> int:
        return self.canary.hits(token) if self.canary is not None else 0

    def created(self, owner: Identity) -> Sequence[tuple[Operation, dict[str, str]]]:
        return [(o.op, dict(o.values)) for o in self._objects.get(owner.name, [])]

    def created_only(self, owner: Identity) -> Sequence[tuple[Operation, dict[str, str]]]:
        """Objects ``owner`` created during discovery (not merely listed)."""
        return [(o.op, dict(o.values)) for o in self._objects.get(owner.name, []) if o.created]

    def remember(self, owner: Identity, op: Operation, values: dict[str, str], *, created: bool = True) -> None:
        """Record an object of ``owner`` (checks that create objects may call it too)."""
        known = self._objects.setdefault(owner.name, [])
        if not any(o.op.template == op.template and o.values == values for o in known):
            known.append(_Object(op, values, created))

    # -- discovery ------------------------------------------------------------------------
    def item_operations(self, collection: str) -> list[Operation]:
        """Operations on ``collection/{param}`` (GET first)."""
        ops = [
            op for op in self.spec.operations
            if op.template.startswith(collection.rstrip("/") + "/{") and op.template.count("/") == collection.rstrip(
                "/").count("/") + 1 and op.template.endswith("}")
        ]
        return sorted(ops, key=lambda o: (o.method != "get", o.method))

    def item_reader(self, collection: str) -> Operation | None:
        """The GET operation on ``collection/{param}``, if the document has one."""
        return next((op for op in self.item_operations(collection) if op.method == "get"), None)

    def create_operations(self) -> list[Operation]:
        """POSTs to a collection that has an item path, that need credentials and touch no password."""
        out = []
        for op in self._ops:
            if op.method != "post" or op.public or op.template.endswith("}") or is_destructive(op):
                continue
            if not self.item_reader(op.template):
                continue
            if any(credential_fields(self._body_names(op))):
                continue
            out.append(op)
        return sorted(out, key=lambda o: len(_path_params(o.template)))

    def _body_names(self, op: Operation) -> list[str]:
        names: list[str] = []
        for node in self.spec.request_schemas(op):
            props = node.schema.get("properties")
            if isinstance(props, dict):
                names += [str(k) for k in props]
        return [n for n in names if "password" in n.lower() or n.lower() in ("username", "login")]

    async def discover(self, progress: Progress | None = None) -> None:
        people = [*self.users, *([self.admin] if self.admin else [])]
        creates = self.create_operations()
        lists = [op for op in self._ops if op.method == "get" and not op.template.endswith("}")
                 and self.item_reader(op.template)]
        total = max(1, len(people) * (len(creates) + len(lists)))
        done = 0
        for identity in people:
            for op in creates:
                values = self.path_values(op, identity)
                exchange = await self.send(self.plan(op, identity, path_values=values), identity)
                done += 1
                if progress:
                    progress("discovery", done, total, op.label)
                if not 200 <= exchange.status < 300:
                    continue
                reader = self.item_reader(op.template)
                if reader is None:
                    continue
                param = _path_params(reader.template)[-1]
                new_id = extract_id(exchange.json(), param)
                if new_id is None:
                    location = exchange.header("location")
                    new_id = location.rstrip("/").rsplit("/", 1)[-1] if location else None
                if new_id is not None:
                    self.remember(identity, reader, {**values, param: new_id}, created=True)
            for op in lists:
                if _path_params(op.template):
                    continue
                exchange = await self.send(self.plan(op, identity), identity)
                done += 1
                if progress:
                    progress("discovery", done, total, op.label)
                if not 200 <= exchange.status < 300:
                    continue
                reader = self.item_reader(op.template)
                if reader is None:
                    continue
                param = _path_params(reader.template)[-1]
                for item in list_items(exchange.json())[:5]:
                    item_id = extract_id(item, param)
                    if item_id is not None:
                        self.remember(identity, reader, {param: item_id}, created=False)


# -- login ----------------------------------------------------------------------------------
def find_operation(spec: Spec, ref: str) -> Operation | None:
    """An operation by operationId, or by ``"METHOD /path"`` (the template as written in the document)."""
    for op in spec.operations:
        if op.node.get("operationId") == ref:
            return op
    method, _, path = ref.partition(" ")
    for op in spec.operations:
        if op.method == method.lower() and op.template == path.strip():
            return op
    return None


async def login(scan: Scan, config: IdentityConfig) -> Identity:
    """The identity with credentials: static ones as configured, or a token from the login flow."""
    identity = Identity(
        config.name,
        role=config.role,
        headers=dict(config.headers),
        cookies=dict(config.cookies),
        query=dict(config.query),
        expired_token=config.expired_token,
    )
    auth = next((v for k, v in config.headers.items() if k.lower() == "authorization"), None)
    if auth and auth.lower().startswith("bearer "):
        identity.token = auth[7:].strip()
    flow = config.login
    if flow is None:
        return identity
    op = find_operation(scan.spec, flow.operation)
    if op is None:
        raise ScanError(f"identity {config.name}: login operation {flow.operation!r} is not in the OpenAPI document")
    plan = RequestPlan(op, op.method.upper(), op.template, json=flow.body, content_type="application/json")
    plan.path = scan.plan(op, scan.anonymous).path
    exchange = await scan.send(plan, scan.anonymous)
    if not 200 <= exchange.status < 300:
        detail = exchange.error or f"HTTP {exchange.status}"
        raise ScanError(f"identity {config.name}: login with {op.label} failed ({detail})")
    try:
        token = json_pointer_get(exchange.json(), flow.token)
    except KeyError:
        raise ScanError(
            f"identity {config.name}: the login response has no {flow.token!r} (token: must point at the token)"
        ) from None
    if not isinstance(token, str) or not token:
        raise ScanError(f"identity {config.name}: {flow.token!r} in the login response is not a string")
    identity.token = token
    identity.headers[flow.header] = f"{flow.scheme} {token}".strip()
    user_field, password_field = credential_fields(flow.body.keys())
    identity.login_operation = op
    identity.username_field, identity.password_field = user_field, password_field
    if user_field and isinstance(flow.body.get(user_field), str):
        identity.username = flow.body[user_field]
    if password_field and isinstance(flow.body.get(password_field), str):
        identity.password = flow.body[password_field]
    return identity


def secrets_of(identities: Sequence[Identity]) -> dict[str, str]:
    """Every credential value, mapped to the placeholder reports show (``$ALICE_TOKEN``)."""
    out: dict[str, str] = {}
    for ident in identities:
        base = re.sub(r"[^A-Z0-9]", "_", ident.name.upper())
        if ident.token:
            out[ident.token] = f"${base}_TOKEN"
        for key, value in [*ident.headers.items(), *ident.cookies.items(), *ident.query.items()]:
            secret = value[7:].strip() if value.lower().startswith("bearer ") else value
            if len(secret) >= 6:
                out.setdefault(secret, f"${base}_{re.sub(r'[^A-Z0-9]', '_', key.upper())}")
        if ident.password and len(ident.password) >= 4:
            out[ident.password] = f"${base}_PASSWORD"
        if ident.expired_token:
            out[ident.expired_token] = f"${base}_EXPIRED_TOKEN"
    return out


# -- the whole scan -------------------------------------------------------------------------
def skip_reason(info: CheckInfo, scan: Scan) -> str | None:
    if info.destructive and not scan.options.allow_destructive:
        return "destructive (changes or deletes data); run with --allow-destructive to enable"
    if len(scan.users) < info.needs_users:
        return f"needs {info.needs_users} user identities (--auth with {info.needs_users} users), got {len(scan.users)}"
    if info.needs_admin and scan.admin is None:
        return "needs an admin identity (role: admin in the --auth file)"
    return None


async def scan_async(
    spec: Spec,
    options: ScanOptions,
    identities: Sequence[IdentityConfig],
    checks: Sequence[Check],
    progress: Progress | None = None,
) -> ScanResult:
    started = time.monotonic()
    if urlsplit(options.base_url).scheme not in ("http", "https") or not urlsplit(options.base_url).hostname:
        raise ScanError(f"the URL must be http:// or https:// with a host, got {options.base_url!r}")
    result = ScanResult(options.base_url, spec.source.file)
    client = ScanClient(options)
    canary = CanaryListener() if options.canary else None
    try:
        if canary is not None:
            await canary.start()
        scan = Scan(spec, options, client, [], None, canary)
        reach = await scan.raw("GET", "/", scan.anonymous)
        if reach.status == 0:
            raise ScanError(f"cannot reach {options.base_url}: {reach.error}")
        if progress:
            progress("login", 0, max(1, len(identities)), "")
        users: list[Identity] = []
        admin: Identity | None = None
        for i, config in enumerate(identities):
            ident = await login(scan, config)
            if config.role == "admin" and admin is None:
                admin = ident
            elif config.role == "user":
                users.append(ident)
            else:
                raise ScanError(f"identity {config.name}: only one admin identity is supported")
            if progress:
                progress("login", i + 1, max(1, len(identities)), config.name)
        scan.users, scan.admin = users, admin
        result.identities = [i.name for i in [*users, *([admin] if admin else [])]]
        result.secrets = secrets_of([*users, *([admin] if admin else [])])
        await scan.discover(progress)
        ordered = sorted(checks, key=lambda c: PHASES.index(c.info.phase))
        for index, check in enumerate(ordered):
            if progress:
                progress(check.info.phase, index, len(ordered), check.info.id)
            reason = skip_reason(check.info, scan)
            if reason is not None:
                result.skips.append(Skip(check.info, reason))
                continue
            result.ran.append(check.info)
            try:
                outcomes = await check.run(scan)
            except Exception as exc:  # a broken check is reported, never silently dropped
                result.skips.append(Skip(check.info, f"the check failed: {type(exc).__name__}: {exc}"))
                continue
            finally:
                burst = client.bursts.get(check.info.id, 0)
                if burst:
                    result.notes.append(f"{check.info.id}: burst of {burst} requests at full speed "
                                        f"(outside --max-rps {options.max_rps:g})")
            seen: set[tuple[str, str, str]] = set()
            for outcome in outcomes:
                if isinstance(outcome, ScanFinding):
                    key = (outcome.check.id, outcome.target, outcome.message)
                    if key not in seen:
                        seen.add(key)
                        result.findings.append(outcome)
                else:
                    result.skips.append(outcome)
        if progress:
            progress("done", len(ordered), len(ordered), "")
    finally:
        result.exchanges = client.sent
        await client.aclose()
        if canary is not None:
            await canary.stop()
    result.findings.sort(key=lambda f: (-f.severity, f.check.category, f.check.id, f.target))
    result.duration = time.monotonic() - started
    return result


def run_scan(
    spec_path: Path,
    options: ScanOptions,
    identities_config: Sequence[IdentityConfig] = (),
    checks: Sequence[Check] | None = None,
    progress: Progress | None = None,
) -> ScanResult:
    """Load the document and scan ``options.base_url``; raise ConfigError (document) or ScanError."""
    from bastion.tester.scan.registry import ALL_CHECKS

    spec = load_spec(spec_path)
    return asyncio.run(scan_async(spec, options, identities_config, ALL_CHECKS if checks is None else checks,
                                  progress))
