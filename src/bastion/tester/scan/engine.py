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
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from bastion.tester.audit.context import Operation, Spec, load_spec
from bastion.tester.scan.canary import CanaryListener
from bastion.tester.scan.client import ScanClient, origin_of
from bastion.tester.scan.health import Baseline, HealthEvent, judge
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
from bastion.tester.scan.safety import (
    Gate,
    Verdict,
    classify,
    dangerous_reason,
    find_operation,
    method_destructive,
)
from bastion.tester.scan.samples import sample_value

__all__ = ["PHASES", "Scan", "ScanError", "ScanResult", "find_operation", "is_destructive", "run_scan"]

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
#: Path parameters naming an account by user name: filled with the identity's own when nothing else is known.
NAME_PARAMS = frozenset({"username", "user", "login", "userlogin", "accountname"})
#: Last path segment of an identity's own profile ("me", "profile"...).
SELF_PATH = re.compile(r"^(?:me|self|my|myself|current|current[-_]?user|whoami|profile|account|userinfo)$",
                       re.IGNORECASE)
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
    #: The safety classifier's verdict on every operation of the document (held back ones never called).
    verdicts: list[Verdict] = field(default_factory=list)
    #: What the health watch saw (empty: the target stayed healthy), and how many times it looked.
    health: list[HealthEvent] = field(default_factory=list)
    health_checks: int = 0
    #: Requests the safety gate refused to send, per check (a check tried to reach a held-back operation).
    refused: dict[str, int] = field(default_factory=dict)

    @property
    def held_back(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.safety == "held"]

    @property
    def stopped(self) -> HealthEvent | None:
        """The health event that stopped the scan, if one did."""
        return next((e for e in self.health if e.stopped), None)


@dataclass
class _Object:
    op: Operation
    values: dict[str, str]
    created: bool


def is_destructive(op: Operation) -> bool:
    """DELETE, and writes that change passwords or e-mail addresses (on real accounts)."""
    return method_destructive(op)


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
    """The objects of a list answer: the body itself, the array under a usual key (``items``, ``data``...), else
    the only array of objects in the body whatever its key (``{"Books": [...]}``)."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in LIST_KEYS:
            if isinstance(body.get(key), list):
                return list(body[key])
        arrays = [v for v in body.values() if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)]
        if len(arrays) == 1:
            return list(arrays[0])
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
        self.verdicts = classify(spec, include=options.include, exclude=options.exclude)
        self.gate = Gate(self.verdicts, self.base_path)
        #: Requests the gate refused, per check ID.
        self.refused: dict[str, int] = {}
        allowed = ("read", "write", "destructive") if options.allow_destructive else ("read", "write")
        self._ops = [v.op for v in self.verdicts if v.safety in allowed]
        self._callable = [v.op for v in self.verdicts if v.safety != "held"]
        #: Called with (check ID, operation label) before each request: the engine's progress display.
        self.on_request: Callable[[str, str], None] | None = None
        #: How each identity logs in (to log it in again when its session ends during the scan).
        self.configs: dict[str, IdentityConfig] = {}

    # -- ScanContext --------------------------------------------------------------------
    def operations(self) -> Sequence[Operation]:
        return list(self._ops)

    def all_operations(self) -> Sequence[Operation]:
        """Every operation but the held-back ones, destructive ones included (for checks that only read them)."""
        return list(self._callable)

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
            if identity.username and _norm(name) in NAME_PARAMS:
                values[name] = identity.username  # /users/{username}: the identity's own account
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
        refused = self._refuse(plan.method, plan.path, identity, headers, body, check)
        if refused is not None:
            return refused
        if self.on_request is not None:
            self.on_request(check.id if check else "engine", plan.operation.label if plan.operation else plan.path)
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
        refused = self._refuse(method, path, identity, sent, body or b"", check)
        if refused is not None:
            return refused
        if self.on_request is not None:
            self.on_request(check.id if check else "engine", f"{method.upper()} {path}")
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

    def _refuse(self, method: str, path: str, identity: Identity, headers: Mapping[str, str], body: bytes,
                check: CheckInfo | None) -> Exchange | None:
        """A status-0 exchange when the safety gate holds this request back (nothing is sent), else None."""
        url = self.url_for(path)
        if not self.client.in_scope(url):
            return None  # the client refuses it anyway
        reason = self.gate.refusal(method, urlsplit(url).path)
        if reason is None:
            return None
        key = check.id if check else "engine"
        self.refused[key] = self.refused.get(key, 0) + 1
        return Exchange(method.upper(), url, tuple(headers.items()), body, 0, (), b"", 0.0, identity.name, reason)

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
                plan = self.plan(op, identity, path_values=values)
                reader = self.item_reader(op.template)
                param = _path_params(reader.template)[-1] if reader is not None else ""
                # A body field named like the item's path parameter (``book_title`` for ``/books/{book_title}``)
                # is the object's key: send a value unique to this identity, so it can be found again.
                sent_key = _unique_key(plan, param, identity)
                exchange = await self.send(plan, identity)
                done += 1
                if progress:
                    progress("discovery", done, total, op.label)
                if not 200 <= exchange.status < 300 or reader is None:
                    continue
                new_id = extract_id(exchange.json(), param)
                if new_id is None:
                    location = exchange.header("location")
                    new_id = location.rstrip("/").rsplit("/", 1)[-1] if location else sent_key
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


    # -- health watch ---------------------------------------------------------------------
    async def baselines(self) -> list[Baseline]:
        """For each identity a secured read without path parameters that answers 2xx, and one anonymous read
        (see ``bastion.tester.scan.health``)."""
        # Never an operation named like a reset, even one the user included: the watch repeats its baselines.
        reads = [op for op in self._ops if op.method == "get" and not _path_params(op.template)
                 and dangerous_reason(op) is None]
        out: list[Baseline] = []
        for identity in [*self.users, *([self.admin] if self.admin else [])]:
            for op in [o for o in reads if not o.public][:4]:
                found = await self._baseline(op, identity)
                if found is not None:
                    out.append(found)
                    break
        for op in [o for o in reads if not o.secured][:2]:
            found = await self._baseline(op, self.anonymous)
            if found is not None:
                out.append(found)
                break
        # One object each identity created: an object that disappears is data the target lost.
        for identity in [*self.users, *([self.admin] if self.admin else [])]:
            mine = next(((o.op, o.values) for o in self._objects.get(identity.name, []) if o.created), None)
            if mine is not None:
                plan = self.plan(mine[0], identity, path_values=mine[1])
                answer = await self.send(plan, identity)
                if 200 <= answer.status < 300:
                    out.append(Baseline(mine[0], identity, plan, answer.status, 0, created=True))
        return out

    async def _baseline(self, op: Operation, identity: Identity) -> Baseline | None:
        plan = self.plan(op, identity)
        answer = await self.send(plan, identity)
        if not 200 <= answer.status < 300:
            return None
        return Baseline(op, identity, plan, answer.status, len(list_items(answer.json())))

    # -- the identities' own profiles, put back as they were -------------------------------------
    def _profile_ops(self) -> list[tuple[Operation, Operation]]:
        """(GET, PUT/PATCH) pairs on a "me"-like path without parameters: the identities' own profiles."""
        pairs = []
        for op in self._ops:
            if op.method != "get" or _path_params(op.template) or op.public:
                continue
            if not SELF_PATH.search(op.template.rstrip("/").rsplit("/", 1)[-1]):
                continue
            writer = next((w for w in self._ops if w.template == op.template and w.method in ("put", "patch")), None)
            if writer is not None:
                pairs.append((op, writer))
        return pairs

    async def profiles(self) -> list[tuple[Identity, Operation, Operation, dict[str, Any]]]:
        """Each identity's own profile now (read before the checks, so it can be put back after)."""
        out = []
        for identity in [*self.users, *([self.admin] if self.admin else [])]:
            for reader, writer in self._profile_ops():
                answer = await self.send(self.plan(reader, identity), identity)
                body = answer.json()
                if 200 <= answer.status < 300 and isinstance(body, dict):
                    out.append((identity, reader, writer, body))
        return out

    async def put_back(self, snapshots: Sequence[tuple[Identity, Operation, Operation, dict[str, Any]]]) -> list[str]:
        """Write back the writable profile fields checks changed; what was restored (or could not be)."""
        notes: list[str] = []
        for identity, reader, writer, before in snapshots:
            answer = await self.send(self.plan(reader, identity), identity)
            now = answer.json()
            if not 200 <= answer.status < 300 or not isinstance(now, dict):
                continue
            plan = self.plan(writer, identity)
            writable = plan.json if isinstance(plan.json, dict) else {}
            changed = {k: before[k] for k in writable if k in before and now.get(k) != before[k]}
            if not changed:
                continue
            body = changed if writer.method == "patch" else {**writable, **{k: now.get(k, v) for k, v in
                                                                            writable.items() if k in now}, **changed}
            await self.send(plan.copy(json=body), identity)
            again = await self.send(self.plan(reader, identity), identity)
            check = again.json() if 200 <= again.status < 300 else None
            fields = ", ".join(sorted(changed))
            if isinstance(check, dict) and all(check.get(k) == v for k, v in changed.items()):
                notes.append(f"{identity.name}'s {fields} on {reader.template} changed during the scan and were "
                             "written back")
            else:
                notes.append(f"{identity.name}'s {fields} on {reader.template} changed during the scan and could NOT "
                             "be written back: restore them by hand")
        return notes

    async def health(self, baselines: Sequence[Baseline]) -> tuple[str, bool] | None:
        """What broke since the baselines were taken (confirmed by a second try) and whether the scan must stop,
        or None. An identity whose credentials stopped working is logged in again when it has a login flow:
        that is a warning (its session ended) unless the new login fails too."""
        warnings: list[str] = []
        for baseline in baselines:
            for attempt in range(3):
                answer = await self.send(baseline.plan, baseline.identity)
                problem = judge(baseline, answer, len(list_items(answer.json())))
                if problem is None:
                    break
                if attempt == 0:
                    continue  # confirm before acting
                relogged = attempt == 1 and answer.status in (401, 403) and await self._relogin(baseline.identity)
                if relogged:
                    warnings.append(f"{problem}; the scan logged {baseline.identity.name} in again")
                    continue
                return "; ".join([*warnings, problem]), True
        return ("; ".join(warnings), False) if warnings else None

    async def _relogin(self, identity: Identity) -> bool:
        """Log ``identity`` in again with its flow, replacing its credentials in place; whether that worked."""
        config = self.configs.get(identity.name)
        if config is None or config.login is None or identity.role == "anonymous":
            return False
        try:
            fresh = await login(self, config)
        except ScanError:
            return False
        identity.headers, identity.cookies, identity.token = fresh.headers, fresh.cookies, fresh.token
        return True


def _unique_key(plan: RequestPlan, param: str, identity: Identity) -> str | None:
    """Set the JSON body's string field named like ``param`` to a value unique to this scan and identity;
    return it (None when the body has no such field)."""
    if not param or not isinstance(plan.json, dict):
        return None
    wanted = _norm(param)
    for key, value in plan.json.items():
        if _norm(str(key)) == wanted and isinstance(value, str):
            unique = f"bscan-{_norm(identity.name)[:12]}-{secrets.token_hex(3)}"
            plan.json = {**plan.json, key: unique}  # a copy: the body may be the document's own example
            return unique
    return None


# -- login ----------------------------------------------------------------------------------
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
    plan = login_plan(scan, op, flow.body)
    exchange = await scan.send(plan, scan.anonymous)
    if not 200 <= exchange.status < 300:
        detail = exchange.error or f"HTTP {exchange.status}: {_excerpt(exchange)}"
        raise ScanError(f"identity {config.name}: login with {op.label} failed ({detail})")
    try:
        token = json_pointer_get(exchange.json(), flow.token)
    except KeyError:
        # A 2xx without a token is how some APIs say "wrong password": show what came back.
        raise ScanError(
            f"identity {config.name}: login with {op.label} answered {exchange.status} without {flow.token!r} "
            f"(the login failed, or token: points elsewhere); the answer was: {_excerpt(exchange)}"
        ) from None
    if not isinstance(token, str) or not token:
        raise ScanError(f"identity {config.name}: {flow.token!r} in the login response is not a string "
                        f"(the answer was: {_excerpt(exchange)})")
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


def signup_operation(scan: Scan, login_op: Operation | None) -> tuple[Operation, str, str] | None:
    """A public sign-up in scope: a POST with a JSON body holding a user name and a password (not the login)."""
    for op in scan.operations():
        if op.method != "post" or not op.public or op is login_op:
            continue
        names: list[str] = []
        for node in scan.spec.request_schemas(op):
            props = node.schema.get("properties")
            if isinstance(props, dict):
                names += [str(k) for k in props]
        user_field, password_field = credential_fields(names)
        words = f"{op.template} {op.node.get('operationId', '')}".lower()
        if user_field and password_field and re.search(r"regist|sign-?up|signup|users?/?$|accounts?/?$|join", words):
            return op, user_field, password_field
    return None


async def register_identity(scan: Scan, template: IdentityConfig) -> Identity | str | None:
    """A second user made through the API's own sign-up, logged in like ``template``; a reason when that
    failed, None when the API has no sign-up (or ``template`` no login flow to copy)."""
    flow = template.login
    login_op = find_operation(scan.spec, flow.operation) if flow is not None else None
    found = signup_operation(scan, login_op)
    if flow is None or found is None:
        return None
    op, user_field, password_field = found
    name = "bscan" + secrets.token_hex(4)
    password = "Bscan-" + secrets.token_hex(8) + "!7a"
    plan = scan.plan(op, scan.anonymous)
    body = dict(plan.json) if isinstance(plan.json, dict) else {}
    for key in list(body):
        if "mail" in key.lower():
            body[key] = f"{name}@example.com"
    body[user_field] = f"{name}@example.com" if "mail" in user_field.lower() else name
    body[password_field] = password
    made = await scan.send(plan.copy(json=body), scan.anonymous)
    if not 200 <= made.status < 300:
        return f"registering through {op.label} answered {made.status} ({_excerpt(made)})"
    login_user, login_password = credential_fields(flow.body.keys())
    if not (login_user and login_password):
        return f"{template.name}'s login body has no user name and password fields to fill for the new account"
    config = IdentityConfig(name, "user", login=replace(flow, body={**flow.body, login_user: body[user_field],
                                                                    login_password: password}))
    try:
        identity = await login(scan, config)
    except ScanError as exc:
        return f"the account registered through {op.label} could not log in: {exc}"
    identity.registered_with = op.label
    scan.configs[name] = config
    return identity


def login_media_type(scan: Scan, op: Operation) -> str:
    """The media type the login operation declares (JSON preferred; the OAuth2 password form if only that)."""
    body, _ = scan.spec.resolve(op.node.get("requestBody"), ())
    content = body.get("content") if isinstance(body, dict) else None
    if isinstance(content, dict) and content:
        return next((m for m in content if "json" in m.lower()), None) or str(next(iter(content)))
    return "application/json"


def login_plan(scan: Scan, op: Operation, fields: Mapping[str, Any]) -> RequestPlan:
    """A login request with ``fields`` in the operation's declared media type (JSON, or a form)."""
    from urllib.parse import urlencode

    plan = RequestPlan(op, op.method.upper(), scan.plan(op, scan.anonymous).path)
    media = login_media_type(scan, op)
    if "json" in media.lower():
        plan.json, plan.content_type = dict(fields), media
    else:
        plan.body = urlencode({k: v if isinstance(v, str) else orjson.dumps(v).decode()
                               for k, v in fields.items()}).encode()
        plan.content_type = "application/x-www-form-urlencoded"
    return plan


def _excerpt(exchange: Exchange, limit: int = 200) -> str:
    text = exchange.text.strip().replace("\n", " ")
    return (text[:limit] + "...") if len(text) > limit else (text or "an empty body")


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
        try:
            scan = Scan(spec, options, client, [], None, canary)
        except ValueError as exc:  # an --include/--exclude naming no operation
            raise ScanError(str(exc)) from None
        result.verdicts = scan.verdicts
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
        if len(users) == 1 and options.register_users:
            template = next(c for c in identities if c.name == users[0].name)
            second = await register_identity(scan, template)
            if isinstance(second, Identity):
                users.append(second)
                result.notes.append(f"registered the throwaway user {second.name} through "
                                    f"{second.registered_with} and logged it in: it is user B of the cross-user "
                                    "checks (--no-register turns this off)")
            elif second is not None:
                result.notes.append(f"no second user: {second}")
        scan.users, scan.admin = users, admin
        scan.configs.update({c.name: c for c in identities})
        result.identities = [i.name for i in [*users, *([admin] if admin else [])]]
        result.secrets = secrets_of([*users, *([admin] if admin else [])])
        await scan.discover(progress)
        baselines = await scan.baselines()
        snapshots = await scan.profiles()
        await _run_checks(scan, result, checks, baselines, progress)
        result.notes.extend(await scan.put_back(snapshots))
    finally:
        result.exchanges = client.sent
        result.refused = dict(scan.refused) if "scan" in locals() else {}
        for check_id, errors in sorted(client.server_errors.items()):
            if check_id != "engine":
                result.notes.append(f"{check_id}: the target answered {errors} of its {client.per_check[check_id]} "
                                    "request(s) with 5xx")
        for check_id, count in sorted(result.refused.items()):
            result.notes.append(f"{check_id}: the safety gate refused {count} request(s) to held-back operations")
        await client.aclose()
        if canary is not None:
            await canary.stop()
    result.findings = group_root_causes(result.findings)
    result.findings.sort(key=lambda f: (-f.severity, f.check.category, f.check.id, f.target))
    result.duration = time.monotonic() - started
    return result


#: A finding of the key check explains the findings of the listed checks: one flaw, several symptoms.
ROOT_CAUSES: dict[str, tuple[str, str]] = {
    "API2-JWT-WRONG-KEY": ("API2-JWT-NONE API2-JWT-ALG-SWAP API2-JWT-EXPIRED",
                           "the API does not verify token signatures at all"),
}


def group_root_causes(findings: Sequence[ScanFinding]) -> list[ScanFinding]:
    """Findings whose cause another finding already shows say so (the root one lists its consequences), so a
    reader fixes one flaw instead of chasing three."""
    out = list(findings)
    for root_id, (followers, cause) in ROOT_CAUSES.items():
        roots = [i for i, f in enumerate(out) if f.check.id == root_id]
        follow = [i for i, f in enumerate(out) if f.check.id in followers.split()]
        if not roots or not follow:
            continue
        names = ", ".join(sorted({out[i].check.id for i in follow}))
        for i in roots:
            out[i] = replace(out[i], message=f"{out[i].message} Root cause: {cause}; the {names} finding(s) "
                                             "follow from it and go away with this fix.")
        for i in follow:
            out[i] = replace(out[i], message=f"{out[i].message} (Follows from {root_id}: {cause}.)")
    return out


async def _run_checks(scan: Scan, result: ScanResult, checks: Sequence[Check], baselines: Sequence[Baseline],
                      progress: Progress | None) -> None:
    """Every check in phase order, the health watch after each one that ran (see ``health``)."""
    ordered = sorted(checks, key=lambda c: PHASES.index(c.info.phase))
    client = scan.client
    current: dict[str, int] = {}  # the running check's ID -> its index

    def on_request(check_id: str, label: str) -> None:
        if progress and check_id in current:
            progress(f"{check_id} ({client.sent} requests, {len(result.findings)} findings)",
                     current[check_id], len(ordered), label)

    scan.on_request = on_request
    broken = await scan.health(baselines) if baselines else None
    result.health_checks += 1
    if broken is not None:
        result.health.append(HealthEvent("discovery", broken[0], broken[1] and scan.options.stop_when_broken))
    for index, check in enumerate(ordered):
        current.clear()
        current[check.info.id] = index
        if progress:
            progress(f"{check.info.id} ({client.sent} requests, {len(result.findings)} findings)", index,
                     len(ordered), check.info.phase)
        stopped = result.stopped
        if stopped is not None:
            result.skips.append(Skip(check.info, f"not run: the target broke after {stopped.after} "
                                                 f"({stopped.message})"))
            continue
        reason = skip_reason(check.info, scan)
        if reason is not None:
            result.skips.append(Skip(check.info, reason))
            continue
        result.ran.append(check.info)
        try:
            outcomes = await check.run(scan)
        except Exception as exc:  # a broken check is reported, never silently dropped
            result.skips.append(Skip(check.info, f"the check failed: {type(exc).__name__}: {exc}"))
            outcomes = []
        finally:
            burst = client.bursts.get(check.info.id, 0)
            if burst:
                result.notes.append(f"{check.info.id}: burst of {burst} requests at full speed "
                                    f"(outside --max-rps {scan.options.max_rps:g})")
        seen: set[tuple[str, str, str]] = set()
        for outcome in outcomes:
            if isinstance(outcome, ScanFinding):
                key = (outcome.check.id, outcome.target, outcome.message)
                if key not in seen:
                    seen.add(key)
                    result.findings.append(outcome)
            else:
                result.skips.append(outcome)
        if baselines and not any(e.stopped for e in result.health):
            broken = await scan.health(baselines)
            result.health_checks += 1
            if broken is not None:
                result.health.append(HealthEvent(check.info.id, broken[0],
                                                 broken[1] and scan.options.stop_when_broken))
    if progress:
        progress("done", len(ordered), len(ordered), "")


@dataclass
class ScanPlan:
    """What a scan would do, computed without sending anything (``bastion scan --dry-run``)."""

    base_url: str
    spec_file: str
    verdicts: list[Verdict]
    #: (identity, "METHOD /path", media type) of each login flow.
    logins: list[tuple[str, str, str]]
    #: (identity or "each identity", method, path, body excerpt) of each discovery request.
    discovery: list[tuple[str, str, str, str]]
    #: Checks that would run, and checks that would be skipped with the reason.
    checks: list[CheckInfo]
    skips: list[Skip]


def plan_scan(spec: Spec, options: ScanOptions, identities: Sequence[IdentityConfig],
              checks: Sequence[Check]) -> ScanPlan:
    """The plan for ``options`` (raise ScanError on a bad --include/--exclude or login operation)."""
    return asyncio.run(_plan(spec, options, identities, checks))


async def _plan(spec: Spec, options: ScanOptions, identities: Sequence[IdentityConfig],
                checks: Sequence[Check]) -> ScanPlan:
    client = ScanClient(options)
    try:
        try:
            scan = Scan(spec, options, client, [], None)
        except ValueError as exc:
            raise ScanError(str(exc)) from None
        people = [Identity(c.name, role=c.role) for c in identities]
        scan.users = [p for p in people if p.role == "user"]
        scan.admin = next((p for p in people if p.role == "admin"), None)
        logins: list[tuple[str, str, str]] = []
        for config in identities:
            if config.login is None:
                continue
            op = find_operation(spec, config.login.operation)
            if op is None:
                raise ScanError(f"identity {config.name}: login operation {config.login.operation!r} is not in the "
                                "OpenAPI document")
            logins.append((config.name, op.label, login_media_type(scan, op)))
        discovery: list[tuple[str, str, str, str]] = []
        users = [c for c in identities if c.role == "user"]
        if len(users) == 1 and options.register_users and users[0].login is not None:
            signup = signup_operation(scan, find_operation(spec, users[0].login.operation))
            if signup is not None:
                discovery.append(("anonymous", "POST", scan.plan(signup[0], scan.anonymous).path,
                                  "a throwaway user B (--no-register turns this off)"))
        who = "each identity" if people else "nobody (no identities)"
        for op in scan.create_operations():
            plan = scan.plan(op, scan.anonymous)
            body = orjson.dumps(plan.json).decode() if plan.json is not None else (plan.body or b"").decode()
            discovery.append((who, plan.method, plan.path, body[:200]))
        for op in [o for o in scan.operations() if o.method == "get" and not _path_params(o.template)]:
            discovery.append((who, "GET", scan.plan(op, scan.anonymous).path, ""))
        ordered = sorted(checks, key=lambda c: PHASES.index(c.info.phase))
        ran: list[CheckInfo] = []
        skips: list[Skip] = []
        for check in ordered:
            reason = skip_reason(check.info, scan)
            if reason is None:
                ran.append(check.info)
            else:
                skips.append(Skip(check.info, reason))
        return ScanPlan(options.base_url, spec.source.file, scan.verdicts, logins, discovery, ran, skips)
    finally:
        await client.aclose()


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
