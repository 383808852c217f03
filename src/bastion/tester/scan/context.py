"""The :class:`Scan` checks run against: plans, sending through the safety gate, discovered objects, health.

:class:`Scan` is the :class:`ScanContext` of ``interface``. Before the checks run, the engine has it
discover objects (:meth:`Scan.discover`: each identity creates one object through every "create"
operation and lists collections, so later checks know which object IDs belong to whom), take the
health watch's baselines, and snapshot the identities' own profiles to put them back afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from bastion.tester.audit.context import Operation, Spec
from bastion.tester.scan.canary import CanaryListener
from bastion.tester.scan.cleanup import Ledger
from bastion.tester.scan.client import ScanClient, origin_of
from bastion.tester.scan.health import Baseline, judge
from bastion.tester.scan.identities import IdentityConfig, credential_fields
from bastion.tester.scan.interface import CheckInfo, Exchange, Identity, RequestPlan, ScanOptions
from bastion.tester.scan.objects import extract_id, list_items, norm, path_params, remove_dot_segments, unique_key
from bastion.tester.scan.safety import Gate, classify, dangerous_reason, method_destructive
from bastion.tester.scan.samples import sample_value, without_accounts
from bastion.tester.scan.traces import TraceWatch

__all__ = ["Progress", "Scan", "ScanError", "is_destructive"]

#: Path parameters naming an account by user name: filled with the identity's own when nothing else is known.
NAME_PARAMS = frozenset({"username", "user", "login", "userlogin", "accountname"})
#: Path parameters naming an account by ID: as a parent (``/users/{user_id}/orders``), the identity's own. Domain
#: APIs name the account after who logs in (``/patients/{patientId}/records``, ``/students/{studentId}/grades``).
OWNER_ID_PARAMS = frozenset({"userid", "uid", "accountid", "customerid", "memberid", "ownerid", "profileid",
                             "patientid", "clientid", "personid", "employeeid", "studentid", "subscriberid",
                             "playerid"})
#: Last path segment of an identity's own profile ("me", "profile"...).
SELF_PATH = re.compile(r"^(?:me|self|my|myself|current|current[-_]?user|whoami|profile|account|userinfo)$",
                       re.IGNORECASE)
LIST_KEYS = ("items", "data", "results", "records", "content", "values", "list")

#: ``progress(phase, done, total, label)`` is called as the scan advances.
Progress = Callable[[str, int, int, str], None]


class ScanError(Exception):
    """The scan could not start (bad base URL, login failed...): a message for the user."""




@dataclass
class _Object:
    op: Operation
    values: dict[str, str]
    created: bool


def is_destructive(op: Operation) -> bool:
    """DELETE, and writes that change passwords or e-mail addresses (on real accounts)."""
    return method_destructive(op)



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
        #: Requests the gate refused, per check ID; what the scan's requests created (removed at the end).
        self.refused: dict[str, int] = {}
        self.ledger = Ledger(spec, self.base_path)
        #: Every answer is looked at for stack traces and database errors (passive verbose-error detection).
        self.traces = TraceWatch()
        allowed = ("read", "write", "destructive") if options.allow_destructive else ("read", "write")
        self._ops = [v.op for v in self.verdicts if v.safety in allowed]
        self._callable = [v.op for v in self.verdicts if v.safety != "held"]
        #: Called with (check ID, operation label) before each request: the engine's progress display.
        self.on_request: Callable[[str, str], None] | None = None
        #: How each identity logs in (to log it in again when its session ends during the scan).
        self.configs: dict[str, IdentityConfig] = {}
        #: The statuses each (identity name, operation label) was answered with: the escalation chain re-runs
        #: checks on the operations the first user was only ever refused (see ``escalation``).
        self.statuses: dict[tuple[str, str], set[int]] = {}

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
        for name in path_params(op.template):
            if path_values and name in path_values:
                values[name] = str(path_values[name])
                continue
            exact = [o for o in known if o.op.template == op.template and name in o.values]
            same = exact or [o for o in known if name in o.values]
            if same:
                values[name] = same[0].values[name]
                continue
            if identity.username and norm(name) in NAME_PARAMS:
                values[name] = identity.username  # /users/{username}: the identity's own account
                continue
            if identity.user_id and norm(name) in OWNER_ID_PARAMS and not op.template.endswith("{" + name + "}"):
                values[name] = identity.user_id  # /users/{user_id}/orders: a client lists its own
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
            value = without_accounts(value, [i.username or "" for i in [*self.users, self.admin] if i is not None])
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
        answer = await self.client.request(
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
        if plan.operation is not None and plan.method == plan.operation.method.upper():
            self.statuses.setdefault((identity.name, plan.operation.label), set()).add(answer.status)
        self.ledger.observe(plan, identity, answer)
        self.traces.observe(plan.operation.label if plan.operation is not None else f"{plan.method} {plan.path}",
                            check.id if check else "engine", answer)
        return answer

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
        answer = await self.client.request(
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
        self.traces.observe(f"{method.upper()} {urlsplit(answer.url).path}", check.id if check else "engine", answer)
        return answer

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
        return sorted(out, key=lambda o: len(path_params(o.template)))

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
                param = path_params(reader.template)[-1] if reader is not None else ""
                # A body field named like the item's path parameter (``book_title`` for ``/books/{book_title}``)
                # is the object's key: send a value unique to this identity, so it can be found again.
                sent_key = unique_key(plan, param, identity)
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
                parents = self._own_parents(op, identity)
                if parents is None:
                    continue
                exchange = await self.send(self.plan(op, identity, path_values=parents), identity)
                done += 1
                if progress:
                    progress("discovery", done, total, op.label)
                if not 200 <= exchange.status < 300:
                    continue
                reader = self.item_reader(op.template)
                if reader is None:
                    continue
                param = path_params(reader.template)[-1]
                for item in list_items(exchange.json())[:5]:
                    item_id = extract_id(item, param)
                    if item_id is not None:
                        self.remember(identity, reader, {**parents, param: item_id}, created=False)

    def _own_parents(self, op: Operation, identity: Identity) -> dict[str, str] | None:
        """The path values of a list nested under ``identity``'s own account (``/users/{userId}/orders``): {} for
        a top-level list, None when a parameter is not the identity's own account ID."""
        values: dict[str, str] = {}
        for name in path_params(op.template):
            if identity.user_id is None or norm(name) not in OWNER_ID_PARAMS:
                return None
            values[name] = identity.user_id
        return values


    # -- health watch ---------------------------------------------------------------------
    async def baselines(self) -> list[Baseline]:
        """For each identity a secured read without path parameters that answers 2xx, and one anonymous read
        (see ``bastion.tester.scan.health``)."""
        # Never an operation named like a reset, even one the user included: the watch repeats its baselines.
        reads = [op for op in self._ops if op.method == "get" and not path_params(op.template)
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
    def profile_operations(self) -> list[tuple[Operation, Operation]]:
        """(GET, PUT/PATCH) pairs on a "me"-like path without parameters: the identities' own profiles."""
        pairs = []
        for op in self._ops:
            if op.method != "get" or path_params(op.template) or op.public:
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
            for reader, writer in self.profile_operations():
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
        from bastion.tester.scan.login import login  # login.py builds on Scan: imported here, not at the top

        try:
            fresh = await login(self, config)
        except ScanError:
            return False
        identity.headers, identity.cookies, identity.token = fresh.headers, fresh.cookies, fresh.token
        return True
