"""API8:2023 injection: SQL (error, boolean, time), NoSQL operators, OS commands (time), path traversal.

What is injected into: free-text inputs of in-scope operations — query, path and header
parameters whose schema is a string (or untyped, without ``enum``), and top-level string fields
of JSON request bodies. URL inputs are left to the SSRF check. Bodies of PUT/PATCH operations
(which change existing objects) are only injected with ``--allow-destructive``. Operations that
change a password or an e-mail address (see ``context.is_destructive``) are never injected, even
then: every probe would set the scan user's password or address to a payload that cannot be
restored, locking the identity out of the rest of the scan (and its owner out of the account). At most
:data:`MAX_INPUTS` inputs, with a handful of requests each; payloads are harmless (quotes,
tautologies, ``sleep 2``, reads of ``/etc/passwd``/``win.ini``).

Every check accepts ``operations=`` (operationIds or ``"GET /path"`` labels) to restrict it.

Decisions, chosen to avoid false findings:

* *SQL, error-based*: the value with a ``'`` appended produces a database error signature the
  normal response does not have, and the value with ``''`` (an escaped quote) does not.
* *SQL, boolean-based*: pairs of true/false conditions of identical length, for the ``= '...'``
  and ``LIKE '%...%'`` contexts, in AND and OR forms. AND: the true variant answers like the
  normal request and the false one differently; OR: the false variant answers like the normal
  request and the true one differently. Echoed inputs are removed before comparing; the
  normal request is sent twice and must answer identically; the pair is sent twice and must
  repeat its answers; any 429/5xx makes the pair inconclusive.
* *SQL and command, time-based*: the answer to a ``sleep 2`` payload comes at least 1.8 s later
  than the slowest of two normal requests, and a ``sleep 3`` payload confirms it (at least
  2.7 s later, and later than the first).
* *NoSQL*: the normal request with its string fields set to random values fails (4xx); the same
  request with operator objects (``{"$ne": null}``, ``{"$gt": ""}``; ``name[$ne]=`` in queries)
  succeeds (2xx). In queries a control with a key no database knows (``name[bscan...]=``) must not get
  the same success and body: else the API merely ignores the bracketed name (the unfiltered request).
* *Path traversal*: ``/etc/passwd`` or ``win.ini`` content (``root:x:0:0:``, ``[fonts]``) appears
  in the answer and not in the normal answer.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from bastion.tester.audit.context import Operation
from bastion.tester.audit.interface import Severity
from bastion.tester.scan.checks.probing import (
    caller,
    excerpt_equal,
    finding,
    json_request_schema,
    normalized,
    object_properties,
    pair_finding,
    random_marker,
    skip,
    success,
)
from bastion.tester.scan.checks.ssrf import url_like
from bastion.tester.scan.context import is_destructive
from bastion.tester.scan.interface import (
    Check,
    CheckInfo,
    Exchange,
    Identity,
    RequestPlan,
    ScanContext,
    ScanFinding,
    Skip,
)
from bastion.tester.scan.samples import sample_value

__all__ = ["CHECKS", "CommandInjection", "Input", "NoSqlInjection", "PathTraversal", "SqlInjection",
           "injectable_inputs"]

MAX_INPUTS = 40
DELAY = 2.0
CONFIRM_DELAY = 3.0

SQLI = CheckInfo(
    id="API8-SQL-INJECTION",
    title="SQL injection",
    category="API8:2023",
    cwe=89,
    severity=Severity.CRITICAL,
    phase="injection",
    checks="Injects quotes, true/false condition pairs and sleep expressions into free-text inputs; database "
    "errors, consistent true/false answer differences or confirmed delays are findings.",
    advice="Use parameterised queries (bound parameters) everywhere; never build SQL from input. In front of the "
    "API, Bastion's `policies.detection` refuses SQL injection payloads (category `sqli`), "
    "and `maxLength`/`pattern` on parameters, enforced by `policies.validation`, narrow what can be sent.",
)

NOSQLI = CheckInfo(
    id="API8-NOSQL-INJECTION",
    title="NoSQL operator injection",
    category="API8:2023",
    cwe=943,
    severity=Severity.HIGH,
    phase="injection",
    checks="Replaces string values with query operator objects ({\"$ne\": null}, {\"$gt\": \"\"}, name[$ne]=); a "
    "request that fails with random values but succeeds with operators is a finding.",
    advice="Check the type of every input (a string must be a string) and never pass request objects to the "
    "database as a query. Bastion's `policies.validation` (on by default for OpenAPI routes) refuses an object "
    "where the schema declares a string; `policies.detection` (category `nosqli`) refuses "
    "operator payloads.",
)

CMDI = CheckInfo(
    id="API8-COMMAND-INJECTION",
    title="OS command injection",
    category="API8:2023",
    cwe=78,
    severity=Severity.CRITICAL,
    phase="injection",
    checks="Appends `sleep` commands after shell separators (; | && $() and backticks) to free-text inputs; a "
    "delay matching the sleep, confirmed with a second duration, is a finding.",
    advice="Never pass input to a shell; call programs with an argument list and validate the value (e.g. a "
    "hostname `pattern`, enforced by Bastion's `policies.validation`). Bastion's `policies.detection` "
    "(category `cmdi`) refuses shell metacharacter payloads.",
)

TRAVERSAL = CheckInfo(
    id="API8-PATH-TRAVERSAL",
    title="Path traversal",
    category="API8:2023",
    cwe=22,
    severity=Severity.HIGH,
    phase="injection",
    checks="Sends ../ sequences (plain and variants) to /etc/passwd and windows/win.ini in free-text inputs; "
    "their content in the answer is a finding.",
    advice="Map names to files through an allow-list or resolve the path and check it stays inside the intended "
    "directory. Declare a strict `pattern` for file names (enforced by Bastion's `policies.validation`); "
    "`policies.detection` (category `path_traversal`) refuses ../ payloads.",
)

_SQL_ERROR = re.compile(
    r"SQL syntax.{0,60}(?:MySQL|MariaDB)|You have an error in your SQL syntax|mysql_fetch|MySQLSyntaxErrorException|"
    r"sqlite3?\.\w*Error|SQLITE_ERROR|SQLite3::|unrecognized token:|near \"[^\"]*\": syntax error|"
    r"unterminated quoted string at or near|syntax error at or near|PG::SyntaxError|psycopg2?\.|"
    r"Unclosed quotation mark after the character string|Incorrect syntax near|"
    r"ORA-0(?:0933|1756|0921)|quoted string not properly terminated|SQLSTATE\[|java\.sql\.SQLException|"
    r"org\.hibernate\.|Npgsql\.|System\.Data\.SqlClient",
    re.IGNORECASE,
)
_PASSWD = re.compile(r"root:[x*!]?:0:0:")
_WIN_INI = re.compile(r"\[(?:fonts|extensions|mci extensions)\]|for 16-bit app support", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Input:
    """One place a value can be injected."""

    op: Operation
    location: str  # query, path, header, body
    name: str
    schema: dict[str, Any] | None

    @property
    def label(self) -> str:
        return f"{self.location} `{self.name}`"


def _free_text(schema: dict[str, Any] | None) -> bool:
    if schema is None:
        return True
    if "enum" in schema or "const" in schema or schema.get("readOnly") is True:
        return False
    kind = schema.get("type")
    kinds = {kind} if isinstance(kind, str) else set(kind) if isinstance(kind, list) else set()
    return not kinds or "string" in kinds


def injectable_inputs(ctx: ScanContext, operations: Collection[str] | None = None, *,
                      locations: Collection[str] = ("query", "path", "header", "body")) -> list[Input]:
    """The free-text inputs of the operations in scope (see the module docstring)."""
    out: list[Input] = []
    for op in ctx.operations():
        if operations is not None and op.label not in operations and op.node.get("operationId") not in operations:
            continue
        if op.method != "delete" and is_destructive(op):
            continue  # a password or e-mail change: probes would overwrite the account's credentials
        for param in op.parameters:
            if param.location not in locations:
                continue
            if param.location == "header" and param.name.lower() in ("authorization", "cookie", "content-type"):
                continue
            node = ctx.spec.parameter_schema(param)
            schema = node.schema if node is not None else None
            if _free_text(schema) and not url_like(param.name, schema):
                out.append(Input(op, param.location, param.name, schema))
        if "body" in locations and (op.method in ("post",) or ctx.options.allow_destructive):
            body = json_request_schema(ctx.spec, op)
            for name, sub in (object_properties(ctx.spec, body) or {}).items() if body else ():
                if _free_text(sub) and not url_like(name, sub):
                    out.append(Input(op, "body", name, sub))
    return out[:MAX_INPUTS]


class _Injector:
    """Builds requests with one input set to a value."""

    def __init__(self, ctx: ScanContext, inp: Input) -> None:
        self.ctx = ctx
        self.inp = inp
        self.ident: Identity = caller(ctx, inp.op)
        self.plan = ctx.plan(inp.op, self.ident)
        self.original = self._original()

    def _original(self) -> str:
        inp, plan = self.inp, self.plan
        current: Any = None
        if inp.location == "query":
            current = dict(plan.query).get(inp.name)
        elif inp.location == "header":
            current = plan.headers.get(inp.name)
        elif inp.location == "body" and isinstance(plan.json, dict):
            current = plan.json.get(inp.name)
        elif inp.location == "path":
            segments, filled = inp.op.template.split("/"), plan.path.split("/")
            if len(segments) == len(filled):
                current = next((unquote(f) for t, f in zip(segments, filled, strict=True)
                                if t == "{" + inp.name + "}"), None)
        if current is None:
            current = sample_value(self.ctx.spec, inp.schema or {"type": "string"}, inp.name)
        text = str(current) if not isinstance(current, (dict, list)) else "scan"
        return text if text else "scan"

    def build(self, value: Any) -> RequestPlan:
        inp, plan = self.inp, self.plan
        if inp.location == "path":
            return self.ctx.plan(inp.op, self.ident, path_values={inp.name: str(value)})
        if inp.location == "query":
            return plan.copy(query=[(k, v) for k, v in plan.query if k != inp.name] + [(inp.name, str(value))])
        if inp.location == "header":
            return plan.copy(headers={**plan.headers, inp.name: str(value)})
        body = dict(plan.json) if isinstance(plan.json, dict) else {}
        body[inp.name] = value
        return plan.copy(json=body)

    async def send(self, info: CheckInfo, value: Any, *, wait: float | None = None) -> Exchange:
        """Send the request with the input set to ``value`` (``wait``: the timeout, for slow answers)."""
        return await self.ctx.send(self.build(value), self.ident, check=info, timeout=wait)


class _InjectionCheck(Check):
    locations: tuple[str, ...] = ("query", "path", "header", "body")

    def __init__(self, operations: Collection[str] | None = None) -> None:
        #: Restrict the check to these operations (operationIds or "GET /path" labels).
        self.operations = frozenset(operations) if operations is not None else None

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        inputs = injectable_inputs(ctx, self.operations, locations=self.locations)
        if not inputs:
            return [skip(self.info, "no free-text input in scope")]
        out: list[ScanFinding | Skip] = []
        for inp in inputs:
            result = await self.probe(_Injector(ctx, inp))
            if result is not None:
                out.append(result)
        return out

    async def probe(self, inj: _Injector) -> ScanFinding | None:
        raise NotImplementedError


def _inconclusive(*exchanges: Exchange) -> bool:
    return any(ex.status in (0, 429) for ex in exchanges)


async def _timed(inj: _Injector, info: CheckInfo, template: str, baseline: float) -> tuple[Exchange, Exchange] | None:
    """Send ``template`` with {d} = :data:`DELAY` then :data:`CONFIRM_DELAY`; both delays observed -> exchanges."""
    limit = max(inj.ctx.options.timeout, baseline + CONFIRM_DELAY + 5)
    first = await inj.send(info, template.format(v=inj.original, d=int(DELAY)), wait=limit)
    if first.status in (0, 429) or first.elapsed - baseline < DELAY * 0.9:
        return None  # a timeout (status 0) is not a measured delay
    second = await inj.send(info, template.format(v=inj.original, d=int(CONFIRM_DELAY)), wait=limit)
    if second.status in (0, 429) or second.elapsed - baseline < CONFIRM_DELAY * 0.9 or second.elapsed <= first.elapsed:
        return None
    return first, second


async def _baseline_time(inj: _Injector, info: CheckInfo) -> tuple[Exchange, Exchange, float]:
    """The normal request twice, and the slower of the two times."""
    a = await inj.send(info, inj.original)
    b = await inj.send(info, inj.original)
    return a, b, max(a.elapsed, b.elapsed)


# -- SQL -----------------------------------------------------------------------------------
#: (true, false, family): same length, differing in one character; {v} is the normal value.
BOOLEAN_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("{v}' AND 'x'='x", "{v}' AND 'x'='y", "and"),
    ("{v}' OR 'x'='x", "{v}' OR 'x'='y", "or"),
    ("{v}%' AND 'b%'='b", "{v}%' AND 'c%'='b", "and"),
    ("{v}%' OR 'b%'='b", "{v}%' OR 'c%'='b", "or"),
    ("{v} AND 1=1", "{v} AND 1=2", "and"),
    ("{v} OR 1=1", "{v} OR 1=2", "or"),
)
SQL_SLEEPS = (
    "{v}' AND (SELECT 1 FROM (SELECT SLEEP({d}))x)-- -",  # MySQL / MariaDB
    "{v}' AND 1=(SELECT 1 FROM pg_sleep({d}))-- -",  # PostgreSQL
    "{v}'; WAITFOR DELAY '0:0:{d}'-- -",  # SQL Server
)


class SqlInjection(_InjectionCheck):
    """SQL injection: error-based, boolean-based and time-based."""

    info = SQLI

    def __init__(self, operations: Collection[str] | None = None,
                 techniques: Collection[str] = ("error", "boolean", "time")) -> None:
        super().__init__(operations)
        unknown = set(techniques) - {"error", "boolean", "time"}
        if unknown:
            raise ValueError(f"unknown SQL injection technique(s): {', '.join(sorted(unknown))}")
        #: Which of error-, boolean- and time-based detection to run.
        self.techniques = frozenset(techniques)

    async def probe(self, inj: _Injector) -> ScanFinding | None:
        normal, again, slowest = await _baseline_time(inj, self.info)
        if normal.status == 0:
            return None
        if "error" in self.techniques:
            result = await self._error(inj, normal)
            if result is not None:
                return result
        if "boolean" in self.techniques:
            result = await self._boolean(inj, normal, again)
            if result is not None:
                return result
        if "time" in self.techniques:
            return await self._time(inj, normal, slowest)
        return None

    async def _error(self, inj: _Injector, normal: Exchange) -> ScanFinding | None:
        broken = await inj.send(self.info, inj.original + "'")
        error = _SQL_ERROR.search(broken.text)
        if error is not None and not _SQL_ERROR.search(normal.text):
            escaped = await inj.send(self.info, inj.original + "''")
            if not _SQL_ERROR.search(escaped.text):
                return pair_finding(self.info, inj.inp.op.label,
                                    f"A quote in {inj.inp.label} makes the database fail (`{error.group(0)}`, status "
                                    f"{broken.status}); an escaped quote does not: the input is pasted into SQL.",
                                    normal, broken, escaped)
        return None

    async def _time(self, inj: _Injector, normal: Exchange, slowest: float) -> ScanFinding | None:
        for template in SQL_SLEEPS:
            timed = await _timed(inj, self.info, template, slowest)
            if timed is not None:
                return finding(self.info, inj.inp.op.label,
                               f"A SQL sleep in {inj.inp.label} delayed the answer by {timed[0].elapsed:.1f} s "
                               f"and {timed[1].elapsed:.1f} s for {DELAY:g} s and {CONFIRM_DELAY:g} s "
                               f"(normal: {slowest:.2f} s).", normal, *timed)
        return None

    async def _boolean(self, inj: _Injector, normal: Exchange, again: Exchange) -> ScanFinding | None:
        if _inconclusive(normal, again) or not excerpt_equal(normal, again, [inj.original]):
            return None  # the normal answer changes by itself: comparisons would mean nothing
        for true_t, false_t, family in BOOLEAN_PAIRS:
            if " 1=" in true_t and not inj.original.lstrip("-").isdigit():
                continue  # numeric context only for numeric values
            true_v, false_v = true_t.format(v=inj.original), false_t.format(v=inj.original)
            echoes = [inj.original, true_v, false_v]
            t1 = await inj.send(self.info, true_v)
            f1 = await inj.send(self.info, false_v)
            if _inconclusive(t1, f1) or t1.status >= 500 or f1.status >= 500:
                continue
            if not self._decides(normal, t1, f1, family, echoes):
                continue
            t2 = await inj.send(self.info, true_v)
            f2 = await inj.send(self.info, false_v)
            if _inconclusive(t2, f2) or not excerpt_equal(t1, t2, echoes) or not excerpt_equal(f1, f2, echoes):
                continue
            if self._decides(normal, t2, f2, family, echoes):
                return pair_finding(self.info, inj.inp.op.label,
                                    f"{inj.inp.label.capitalize()} is evaluated as SQL: `{true_v}` and "
                                    f"`{false_v}` answer differently ({t1.status}, {len(t1.response_body)} bytes vs "
                                    f"{f1.status}, {len(f1.response_body)} bytes), consistently over two rounds, and "
                                    f"the {'true' if family == 'and' else 'false'} condition answers like the normal "
                                    "value.",
                                    normal, t1, f1)
        return None

    @staticmethod
    def _decides(normal: Exchange, true_ex: Exchange, false_ex: Exchange, family: str, echoes: Sequence[str]) -> bool:
        if excerpt_equal(true_ex, false_ex, echoes):
            return False
        reference = true_ex if family == "and" else false_ex
        return excerpt_equal(reference, normal, echoes)


# -- NoSQL ----------------------------------------------------------------------------------
class NoSqlInjection(_InjectionCheck):
    """Operator objects that turn a failing request into a successful one."""

    info = NOSQLI
    locations = ("query", "body")

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        inputs = injectable_inputs(ctx, self.operations, locations=self.locations)
        if not inputs:
            return [skip(self.info, "no free-text input in scope")]
        out: list[ScanFinding | Skip] = []
        body_ops: dict[str, list[Input]] = {}
        for inp in inputs:
            if inp.location == "body":
                body_ops.setdefault(inp.op.label, []).append(inp)
            else:
                result = await self._query(ctx, inp)
                if result is not None:
                    out.append(result)
        for fields in body_ops.values():
            result = await self._body(ctx, fields)
            if result is not None:
                out.append(result)
        return out

    async def _query(self, ctx: ScanContext, inp: Input) -> ScanFinding | None:
        inj = _Injector(ctx, inp)
        rest = [(k, v) for k, v in inj.plan.query if k != inp.name]
        failed = await ctx.send(inj.plan.copy(query=[*rest, (inp.name, random_marker("x"))]), inj.ident,
                                check=self.info)
        if not 400 <= failed.status < 500 or failed.status == 429:
            return None
        for operator in ("$ne", "$gt"):
            value = random_marker("x")
            ex = await ctx.send(inj.plan.copy(query=[*rest, (f"{inp.name}[{operator}]", value)]),
                                inj.ident, check=self.info)
            if success(ex) and not await self._ignored(ctx, inj, rest, ex, (f"{inp.name}[{operator}]", value)):
                return pair_finding(self.info, inp.op.label,
                                    f"`{inp.name}` fails with a random value ({failed.status}) but "
                                    f"`{inp.name}[{operator}]=` succeeds ({ex.status}): the query parameter becomes a "
                                    "database operator.",
                                    failed, ex)
        return None

    async def _ignored(self, ctx: ScanContext, inj: _Injector, rest: list[tuple[str, str]], operator: Exchange,
                       sent: tuple[str, str]) -> bool:
        """Whether the API ignores the bracketed name altogether: a control with a key no database knows
        (``name[bscan...]=``) gets the same success and body, so the operator's 200 is just the request without
        the parameter (an unfiltered list), not an operator reaching the database."""
        name, value = f"{inj.inp.name}[{random_marker('bscan')}]", sent[1]
        control = await ctx.send(inj.plan.copy(query=[*rest, (name, value)]), inj.ident, check=self.info)
        # Links that echo the query string (``self``) are no difference: each answer loses what it was sent.
        return (success(control) and control.status == operator.status
                and normalized(control, [name, value]) == normalized(operator, sent))

    async def _body(self, ctx: ScanContext, fields: list[Input]) -> ScanFinding | None:
        op = fields[0].op
        ident = caller(ctx, op)
        plan = ctx.plan(op, ident)
        if not isinstance(plan.json, dict):
            return None
        names = [f.name for f in fields]
        randomized = {**plan.json, **{n: random_marker("x") for n in names}}
        failed = await ctx.send(plan.copy(json=randomized), ident, check=self.info)
        if not 400 <= failed.status < 500 or failed.status == 429:
            return None
        variants: list[tuple[str, dict[str, Any]]] = []
        known = next((u for u in ctx.users if u.username and u.username_field in names), None)
        if known is not None and known.username_field and known.password_field in names:
            variants.append((f"`{known.password_field}` as {{\"$ne\": null}} for a known user",
                             {**randomized, known.username_field: known.username,
                              known.password_field: {"$ne": None}}))
        variants.append(("every string field as {\"$ne\": null}", {**randomized, **{n: {"$ne": None} for n in names}}))
        variants.append(("every string field as {\"$gt\": \"\"}", {**randomized, **{n: {"$gt": ""} for n in names}}))
        for what, body in variants:
            ex = await ctx.send(plan.copy(json=body), ident, check=self.info)
            if ex.status == 429:
                return None
            if success(ex):
                return pair_finding(self.info, op.label,
                                    f"The request fails with random values ({failed.status}) but succeeds "
                                    f"({ex.status}) with {what}: request values reach the database as query "
                                    "operators.", failed, ex)
        return None


# -- OS commands ------------------------------------------------------------------------------
CMD_SLEEPS = (
    "{v};sleep {d}",
    "{v}|sleep {d}",
    "{v}&&sleep {d}",
    "{v}$(sleep {d})",
    "{v}`sleep {d}`",
)


class CommandInjection(_InjectionCheck):
    """Shell commands executed with input."""

    info = CMDI

    async def probe(self, inj: _Injector) -> ScanFinding | None:
        normal, _, slowest = await _baseline_time(inj, self.info)
        if normal.status in (0, 429):
            return None
        for template in CMD_SLEEPS:
            timed = await _timed(inj, self.info, template, slowest)
            if timed is not None:
                first, second = timed
                return finding(self.info, inj.inp.op.label,
                               f"`{template.format(v=inj.original, d=int(DELAY))}` in {inj.inp.label} delayed the "
                               f"answer to {first.elapsed:.1f} s and a {CONFIRM_DELAY:g} s sleep to "
                               f"{second.elapsed:.1f} s (normal: {slowest:.2f} s): the input runs in a shell.",
                               normal, first, second)
        return None


# -- path traversal ---------------------------------------------------------------------------
TRAVERSALS = (
    "../../../../../../../../etc/passwd",
    "....//....//....//....//....//....//....//....//etc/passwd",
    "/etc/passwd",
    "..\\..\\..\\..\\..\\..\\..\\..\\windows\\win.ini",
    "../../../../../../../../windows/win.ini",
    "C:\\Windows\\win.ini",
)


class PathTraversal(_InjectionCheck):
    """File reads outside the intended directory."""

    info = TRAVERSAL
    locations = ("query", "path")

    async def probe(self, inj: _Injector) -> ScanFinding | None:
        normal = await inj.send(self.info, inj.original)
        if normal.status == 0 or _PASSWD.search(normal.text) or _WIN_INI.search(normal.text):
            return None
        for payload in TRAVERSALS:
            ex = await inj.send(self.info, payload)
            if ex.status == 429:
                return None
            if success(ex) and (_PASSWD.search(ex.text) or _WIN_INI.search(ex.text)):
                which = "/etc/passwd" if _PASSWD.search(ex.text) else "win.ini"
                return finding(self.info, inj.inp.op.label,
                               f"`{payload}` in {inj.inp.label} returned the content of {which}: files outside the "
                               "intended directory can be read.", normal, ex)
        return None


CHECKS: list[Check] = [SqlInjection(), NoSqlInjection(), CommandInjection(), PathTraversal()]
