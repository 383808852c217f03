"""API4:2023 Unrestricted Resource Consumption: rate limits, page sizes, body sizes, regex DoS.

Heuristics:

* *Rate limit*: one cheap GET operation is sent :data:`BURST_REQUESTS` requests,
  :data:`BURST_CONCURRENCY` at a time, as the first user (anonymously when there is none), with
  429s returned to the check instead of waited out. The burst goes out at full speed, outside
  ``--max-rps`` (``send(..., unthrottled=True)``: at most 100 such requests per check, still only
  to the base URL's origin and within the check's request cap; the report notes "burst of N
  requests at full speed"), so a finding means "no limit even at the client's full speed", not
  "no limit at the scan's own rate". The operation preferred is one whose responses declare
  ``429`` (the API says it is limited), then one without path parameters. No ``429`` and no
  ``RateLimit``/``X-RateLimit-Remaining: 0`` header in the burst is a finding. The burst runs
  after the other API4 checks, as it exhausts the operation's quota for a while.
* *Page size*: integer query parameters named limit, size, per_page, page_size, pagesize, count,
  top, max_results or take get ten times their declared ``maximum`` (100000 without one); a 2xx
  answer is a finding (an array longer than the maximum in the response is stated as proof).
* *Body size*: a write operation whose normal request succeeds is sent again with the same JSON
  padded with whitespace to 1 MiB (the same document, so schema validation cannot be what
  refuses it); a 2xx answer means no body size limit.
* *Arrays*: for up to :data:`ARRAY_OPERATIONS` authenticated JSON write operations whose normal
  request succeeds, each array in the body (a top-level property, or the body itself) is filled
  with copies of one valid element (the generated one, else a sample of ``items``) up to ten
  times its ``maxItems`` (at least ``maxItems`` + 10), or :data:`UNBOUNDED_ARRAY_ITEMS` when it
  declares none; the rest of the body stays valid. A 2xx is a finding (an echoed array longer
  than ``maxItems`` is stated as proof). Arrays with ``uniqueItems`` are left alone (copies
  would be refused for that reason), as are operations on passwords, e-mail addresses or URLs.
* *Regex DoS*: string inputs with a ``pattern`` or holding an e-mail address (``format: email`` or
  a name saying e-mail), in query and path parameters and in top-level fields of JSON bodies, then
  plain string parameters of reads (no pattern, enum or format: the API may still check their
  format with a regex the document does not show; reads only, so a probe stores nothing):
  inputs of growing length (:data:`REDOS_LENGTHS`, short steps, stopping at the first slow one)
  built from the pattern's repeated character classes (``a`` for e-mail addresses), ending with a
  character that breaks the match; a response time more than :data:`REDOS_DELAY` seconds over
  the short input's, twice, is a finding. A probed update field is read before (from the GET on
  the same path, or on the path it belongs to) and written back after when it changed; e-mail
  changes, destructive to the safety classifier, are probed only when that read works.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson

from bastion.tester.audit.context import Operation, Parameter, types_of
from bastion.tester.audit.interface import Severity
from bastion.tester.scan.checks.probing import (
    body_fields,
    caller,
    finding,
    json_request_schema,
    object_properties,
    skip,
    success,
)
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

__all__ = ["CHECKS", "LargePayload", "NoRateLimit", "PageSize", "RegexDos", "UnboundedArray"]

BURST_REQUESTS = 60
BURST_CONCURRENCY = 10
#: The burst must reach this rate to show anything: a limiter counts requests per window (50 per 2 s is common),
#: so a burst slowed below that by a busy target or scanner never meets it, and its lack of 429 proves nothing.
MIN_BURST_RATE = 30.0
PAD_BYTES = 1 << 20
#: Items sent in an array that declares no ``maxItems``; operations tried by the array check.
UNBOUNDED_ARRAY_ITEMS = 10_000
ARRAY_OPERATIONS = 3
REDOS_DELAY = 1.5
PAGE_NAMES = re.compile(r"^(?:limit|size|per_?page|page_?size|pagesize|count|top|\$top|max_?results|take|max)$",
                        re.IGNORECASE)

RATE_LIMIT = CheckInfo(
    id="API4-NO-RATE-LIMIT",
    title="No rate limit",
    category="API4:2023",
    cwe=770,
    severity=Severity.MEDIUM,
    phase="resources",
    checks=f"Sends a burst of {BURST_REQUESTS} requests ({BURST_CONCURRENCY} concurrent, at full speed outside "
    "--max-rps; at most 100 per scan) to one cheap GET operation as one identity; no 429 and no exhausted "
    f"RateLimit header is a finding when the burst reached {MIN_BURST_RATE:g} requests/s (a slower one is a skip: "
    "it cannot meet a per-window limit).",
    advice="Rate-limit every client (per token and per IP) and answer 429 with Retry-After. Put the API behind "
    "a gateway that enforces it (Bastion's rate-limit stage is planned; until then configure it in the "
    "API or the load balancer) and declare the 429 response in the OpenAPI document.",
)

PAGE_SIZE = CheckInfo(
    id="API4-UNBOUNDED-PAGE-SIZE",
    title="Page size not bounded",
    category="API4:2023",
    cwe=770,
    severity=Severity.MEDIUM,
    phase="resources",
    checks="Sends page-size query parameters (limit, per_page, size...) far above their declared maximum; a 2xx "
    "answer is a finding.",
    advice="Cap page sizes in the API, and declare `maximum` on the parameter: Bastion's `policies.validation` "
    "stage (on by default for OpenAPI routes) enforces it with 400 before the request reaches the API.",
)

LARGE_PAYLOAD = CheckInfo(
    id="API4-LARGE-PAYLOAD",
    title="Oversized request bodies accepted",
    category="API4:2023",
    cwe=770,
    severity=Severity.MEDIUM,
    phase="resources",
    checks="Re-sends a write operation's valid JSON body padded to 1 MiB with whitespace; a 2xx answer means "
    "the API reads bodies of any size.",
    advice="Limit request body sizes (413 beyond). Bastion refuses bodies larger than "
    "`listen.limits.max_body_bytes` with 413 (per service or hand-written route: `max_body_bytes`); set it "
    "to what the API needs (the default is 10 MiB), and declare `maxLength`/`maxItems` in request schemas for "
    "`policies.validation` to enforce.",
)

UNBOUNDED_ARRAY = CheckInfo(
    id="API4-UNBOUNDED-ARRAY",
    title="Oversized arrays accepted",
    category="API4:2023",
    cwe=770,
    severity=Severity.MEDIUM,
    phase="resources",
    checks="Re-sends a write operation's valid JSON body with an array far past its `maxItems` (ten times it, or "
    f"{UNBOUNDED_ARRAY_ITEMS} items when none is declared); a 2xx answer is a finding.",
    advice="Bound every array the API accepts and declare `maxItems` in the request schema: Bastion's "
    "`policies.validation` stage (on by default for OpenAPI routes) refuses longer arrays with 400 before the "
    "request reaches the API.",
)

REGEX_DOS = CheckInfo(
    id="API4-REGEX-DOS",
    title="Regular expression denial of service",
    category="API4:2023",
    cwe=1333,
    severity=Severity.MEDIUM,
    phase="resources",
    checks="For string inputs with a `pattern` or holding an e-mail address (parameters and JSON body fields), "
    "then plain string parameters of reads, sends inputs of growing length that make backtracking regex engines "
    "explode, stopping at the first slow one; response time well above a short input's, twice, is a finding.",
    advice="Use linear-time patterns (no nested quantifiers) and bound `maxLength`. Bastion's "
    "`policies.validation` checks patterns on a linear-time engine and enforces `maxLength` before the API "
    "runs its own regex.",
)


# -- rate limit ---------------------------------------------------------------------------
def _declares_429(ctx: ScanContext, op: Operation) -> bool:
    return any(status == "429" for status, _, _ in ctx.spec.responses(op))


def _limited(ex: Exchange) -> bool:
    if ex.status == 429:
        return True
    for name in ("ratelimit-remaining", "x-ratelimit-remaining", "x-rate-limit-remaining"):
        value = ex.header(name)
        if value is not None and value.strip() == "0":
            return True
    combined = ex.header("ratelimit")
    return combined is not None and re.search(r"(?:^|[;,\s])r=0(?:\D|$)", combined) is not None


class NoRateLimit(Check):
    """A burst of requests never gets a 429."""

    info = RATE_LIMIT

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        gets = [o for o in ctx.operations() if o.method == "get"]
        if not gets:
            return [skip(self.info, "no GET operation in scope to send a burst to")]
        op = sorted(gets, key=lambda o: (not _declares_429(ctx, o), "{" in o.template, len(o.template)))[0]
        ident = caller(ctx, op)
        plan = ctx.plan(op, ident)
        probe = await ctx.send(plan, ident, check=self.info)
        if not success(probe):
            return [skip(self.info, f"{op.label} answered {probe.status}; a burst would not measure a rate limit")]
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(BURST_REQUESTS):
            queue.put_nowait(i)
        results: list[Exchange] = []
        stop = asyncio.Event()

        async def worker() -> None:
            while not stop.is_set():
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                ex = await ctx.send(plan, ident, check=self.info, retry_429=False, unthrottled=True)
                results.append(ex)
                if _limited(ex):
                    stop.set()

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(BURST_CONCURRENCY)))
        took = time.monotonic() - started
        limited = [ex for ex in results if _limited(ex)]
        if limited:
            return []
        answered = [ex for ex in results if ex.status]
        if len(answered) < BURST_REQUESTS // 2:
            return [skip(self.info, f"only {len(answered)} of {len(results)} burst requests were answered")]
        rate = len(results) / took if took > 0 else float("inf")
        if rate < MIN_BURST_RATE:
            return [skip(self.info, f"the burst reached only {rate:.0f} requests/s (below {MIN_BURST_RATE:g}: the "
                                    "target or the scanner was busy); too slow to meet a per-window rate limit, so "
                                    "the lack of 429 proves nothing")]
        ok = sum(1 for ex in answered if success(ex))
        return [finding(self.info, op.label,
                        f"{len(results) + 1} requests in {took + probe.elapsed:.1f} s as {ident.name} (a burst of "
                        f"{len(results)} at full speed) got no 429 and no exhausted rate-limit header ({ok} "
                        "succeeded).", probe, results[-1])]


# -- page size ----------------------------------------------------------------------------
def _page_params(ctx: ScanContext, op: Operation) -> list[tuple[Parameter, dict[str, Any]]]:
    out: list[tuple[Parameter, dict[str, Any]]] = []
    for param in op.parameters:
        if param.location != "query" or not PAGE_NAMES.match(param.name):
            continue
        node = ctx.spec.parameter_schema(param)
        schema = node.schema if node is not None else {}
        if types_of(schema) & {"integer", "number"} or not types_of(schema):
            out.append((param, schema))
    return out


def _largest_array(value: Any, depth: int = 0) -> int:
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict) and depth < 2:
        return max((_largest_array(v, depth + 1) for v in value.values()), default=0)
    return 0


class PageSize(Check):
    """Page-size parameters accept values above their maximum."""

    info = PAGE_SIZE

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        out: list[ScanFinding | Skip] = []
        tried = 0
        for op in [o for o in ctx.operations() if o.method == "get"]:
            for param, schema in _page_params(ctx, op):
                raw_max = schema.get("maximum")
                maximum = int(raw_max) if isinstance(raw_max, (int, float)) and not isinstance(raw_max, bool) else None
                bounded = maximum is not None
                value = maximum * 10 if maximum else 100000
                ident = caller(ctx, op)
                plan = ctx.plan(op, ident)
                normal = await ctx.send(plan, ident, check=self.info)
                if not success(normal):
                    continue
                tried += 1
                query = [(k, v) for k, v in plan.query if k != param.name] + [(param.name, str(value))]
                ex = await ctx.send(plan.copy(query=query), ident, check=self.info)
                if not success(ex):
                    continue
                size = _largest_array(ex.json())
                limit = f"its declared maximum {maximum}" if bounded else "any sensible page size"
                proof = f"; the response has {size} items" if maximum is not None and size > maximum else ""
                out.append(finding(self.info, op.label,
                                   f"`{param.name}={value}` (above {limit}) was accepted with {ex.status}{proof}.",
                                   ex))
        if not tried:
            out.append(skip(self.info, "no GET operation with a page-size query parameter answered successfully"))
        return out


# -- body size ----------------------------------------------------------------------------
class LargePayload(Check):
    """Request bodies of 1 MiB are read and accepted."""

    info = LARGE_PAYLOAD

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        writes = [o for o in ctx.operations() if o.method in ("post", "put", "patch")
                  and json_request_schema(ctx.spec, o) is not None and not o.public
                  and not re.search(r"password|email", o.template, re.IGNORECASE)]
        writes.sort(key=lambda o: (o.method != "post", len(o.template)))
        tried = 0
        for op in writes:
            if tried >= 3:
                break
            ident = caller(ctx, op)
            plan = ctx.plan(op, ident)
            if plan.json is None or _has_url_field(plan.json):
                continue
            normal = await ctx.send(plan, ident, check=self.info)
            if not success(normal):
                continue
            tried += 1
            doc = orjson.dumps(plan.json)
            padded = doc[:-1] + b" " * max(0, PAD_BYTES - len(doc)) + doc[-1:]
            big = plan.copy(json=None, body=padded, content_type="application/json")
            ex = await ctx.send(big, ident, check=self.info, timeout=max(ctx.options.timeout, 20.0))
            if success(ex):
                return [finding(self.info, op.label,
                                f"A {len(padded) // 1024} KiB JSON body was accepted with {ex.status}: request "
                                "bodies are not limited to a size the API needs.", ex)]
        if not tried:
            return [skip(self.info, "no authenticated JSON write operation succeeded with a normal body")]
        return []


# -- array size ---------------------------------------------------------------------------
def _int_keyword(schema: dict[str, Any], key: str) -> int | None:
    value = schema.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def oversized_count(schema: dict[str, Any]) -> int:
    """How many items to send to an array with this schema: ten times ``maxItems`` (at least ``maxItems`` + 10),
    or :data:`UNBOUNDED_ARRAY_ITEMS` without one."""
    maximum = _int_keyword(schema, "maxItems")
    if maximum is None:
        return UNBOUNDED_ARRAY_ITEMS
    return min(max(maximum * 10, maximum + 10), max(UNBOUNDED_ARRAY_ITEMS, maximum + 10))


class UnboundedArray(Check):
    """Request arrays accept far more items than they declare (or than any API needs)."""

    info = UNBOUNDED_ARRAY

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        writes = [o for o in ctx.operations() if o.method in ("post", "put", "patch") and not o.public
                  and not re.search(r"password|email", o.template, re.IGNORECASE)]
        writes.sort(key=lambda o: (o.method != "post", len(o.template)))
        out: list[ScanFinding | Skip] = []
        tried = 0
        for op in writes:
            schema = json_request_schema(ctx.spec, op)
            if schema is None or tried >= ARRAY_OPERATIONS:
                continue
            arrays = self._arrays(ctx, schema)
            if not arrays:
                continue
            ident = caller(ctx, op)
            plan = ctx.plan(op, ident)
            if plan.json is None or _has_url_field(plan.json):
                continue
            normal = await ctx.send(plan, ident, check=self.info)
            if not success(normal):
                continue
            tried += 1
            for name, array_schema in arrays:
                body = self._oversized(ctx, plan.json, name, array_schema)
                if body is None:
                    continue
                count = len(body if name is None else body[name])
                ex = await ctx.send(plan.copy(json=body), ident, check=self.info,
                                    timeout=max(ctx.options.timeout, 20.0))
                if not success(ex):
                    continue
                maximum = _int_keyword(array_schema, "maxItems")
                field = "the body" if name is None else f"`{name}`"
                bound = f"its declared maxItems {maximum}" if maximum is not None else "no declared maxItems"
                echoed = self._echoed(ex.json(), name)
                proof = f"; the response echoes {echoed} items" if maximum is not None and echoed > maximum else ""
                out.append(finding(self.info, op.label,
                                   f"{field} with {count} items ({bound}) was accepted with {ex.status}{proof}.", ex))
                break
        if not tried:
            out.append(skip(self.info, "no authenticated JSON write operation with an array in its body succeeded "
                                       "with a normal body"))
        return out

    @staticmethod
    def _arrays(ctx: ScanContext, schema: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
        """The body's arrays: ``(None, schema)`` for an array body, else ``(property, schema)``."""
        if "array" in types_of(schema):
            return [] if schema.get("uniqueItems") is True else [(None, schema)]
        out: list[tuple[str | None, dict[str, Any]]] = []
        for name, sub in (object_properties(ctx.spec, schema) or {}).items():
            if "array" in types_of(sub) and sub.get("uniqueItems") is not True and sub.get("readOnly") is not True:
                out.append((name, sub))
        return out

    @staticmethod
    def _oversized(ctx: ScanContext, body: Any, name: str | None, schema: dict[str, Any]) -> Any:
        """``body`` with the array ``name`` (the body itself for None) grown past its bound; None if impossible."""
        current = body if name is None else (body.get(name) if isinstance(body, dict) else None)
        if isinstance(current, list) and current:
            element = current[0]
        else:
            items = schema.get("items")
            element = sample_value(ctx.spec, items) if isinstance(items, dict) else None
        if element is None:
            return None
        grown = [element] * oversized_count(schema)
        if name is None:
            return grown
        return {**body, name: grown} if isinstance(body, dict) else None

    @staticmethod
    def _echoed(answer: Any, name: str | None) -> int:
        if name is None:
            return len(answer) if isinstance(answer, list) else 0
        value = answer.get(name) if isinstance(answer, dict) else None
        return len(value) if isinstance(value, list) else 0


def _has_url_field(body: Any) -> bool:
    """Bodies carrying URLs are left alone (re-sending them could make the API fetch something)."""
    return isinstance(body, dict) and any(isinstance(v, str) and re.match(r"^[a-z]+://", v) for v in body.values())


# -- regex DoS ----------------------------------------------------------------------------
_ATOM = re.compile(r"\\.|\[(?:\\.|[^\]])+\]|[A-Za-z0-9]")
_QUANTIFIER = re.compile(r"\{\d*,?\d*\}")
_ESCAPES = {"d": "1", "w": "a", "s": " "}


def _atom_char(atom: str) -> str | None:
    """A character matching ``atom`` (an escape, a class or a literal), or None for negated classes."""
    if atom.startswith("\\"):
        return _ESCAPES.get(atom[1], atom[1] if atom[1].isalnum() else None)
    if atom.startswith("["):
        inner = atom[1:-1]
        if inner.startswith("^") or not inner:
            return None
        if inner.startswith("\\") and len(inner) > 1:
            return _ESCAPES.get(inner[1], inner[1])
        return inner[0]
    return atom


def redos_inputs(pattern: str, length: int) -> list[str]:
    """Up to two strings: ``length`` repetitions of a character matching one of the pattern's first atoms,
    then ``!`` (which such patterns do not accept), to make a backtracking engine retry every split."""
    out: list[str] = []
    for atom in _ATOM.findall(_QUANTIFIER.sub("", pattern))[:3]:
        char = _atom_char(atom)
        if char and char.isprintable():
            out.append(char * length + "!")
    return list(dict.fromkeys(out))[:2]


#: Lengths of the growing inputs, short steps so that an exponential pattern is caught after a few seconds of
#: backtracking at most (the probe must not hang the target's worker for minutes).
REDOS_LENGTHS = (12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32)
MAX_REDOS_TARGETS = 6
_EMAIL_NAME = re.compile(r"e-?mail", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Input:
    """A string input a regex may validate: a parameter, or a top-level field of a JSON body."""

    op: Operation
    location: str  # query, path or body
    name: str
    #: None: an e-mail address or a plain string (validated by a pattern the document may not show).
    pattern: str | None
    #: An e-mail change (destructive by the safety classifier): probed only when the value can be written back.
    needs_restore: bool = False
    #: A plain string: nothing in the document says a regex checks it.
    plain: bool = False

    @property
    def what(self) -> str:
        if self.pattern is not None:
            return f"pattern {self.pattern!r}"
        return "a plain string, no pattern declared" if self.plain else "an e-mail address"

    @property
    def label(self) -> str:
        return f"{self.location} {'parameter' if self.location != 'body' else 'field'} `{self.name}`"


def redos_targets(ctx: ScanContext) -> list[_Input]:
    """String inputs with a ``pattern`` or holding an e-mail address, in parameters and JSON bodies; e-mail
    changes the safety classifier calls destructive are included, to be probed only when restorable (a probe is
    never a valid address, so a validating API refuses it before storing anything). Then plain string
    parameters of reads: last, as nothing says a regex checks them."""
    out: list[_Input] = []
    plain: list[_Input] = []
    in_scope = {id(op) for op in ctx.operations()}
    extra = [op for op in ctx.all_operations() if id(op) not in in_scope and op.method in ("put", "patch")
             and "password" not in f"{op.template} {op.node.get('operationId', '')}".lower()]
    for op in [*ctx.operations(), *extra]:
        for param in op.parameters:
            # Parameters of reads only: a PUT to a path built from a probe could create an object there.
            if param.location not in ("query", "path") or op.method not in ("get", "head") or id(op) not in in_scope:
                continue
            node = ctx.spec.parameter_schema(param)
            schema = node.schema if node is not None else {}
            pattern = schema.get("pattern")
            if isinstance(pattern, str) or schema.get("format") == "email":
                out.append(_Input(op, param.location, param.name, pattern if isinstance(pattern, str) else None))
            elif types_of(schema) == {"string"} and not {"enum", "const", "format"} & schema.keys():
                plain.append(_Input(op, param.location, param.name, None, plain=True))
        if op.method not in ("post", "put", "patch"):
            continue
        for field in body_fields(ctx.spec, op):
            pattern = field.schema.get("pattern")
            kinds = types_of(field.schema)
            if field.read_only or (kinds and "string" not in kinds):
                continue
            if isinstance(pattern, str) or field.schema.get("format") == "email" or _EMAIL_NAME.search(field.name):
                out.append(_Input(op, "body", field.name, pattern if isinstance(pattern, str) else None,
                                  needs_restore=id(op) not in in_scope))
    return out + plain


class RegexDos(Check):
    """Inputs whose validation slows down with their length."""

    info = REGEX_DOS

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        targets = redos_targets(ctx)
        if not targets:
            return [skip(self.info, "no string input declares a `pattern` or holds an e-mail address, and no read "
                                    "takes a plain string parameter")]
        for target in targets[:MAX_REDOS_TARGETS]:
            result = await self._probe(ctx, target)
            if result is not None:
                return [result]
        return []

    async def _probe(self, ctx: ScanContext, target: _Input) -> ScanFinding | None:
        ident = caller(ctx, target.op)
        plan = ctx.plan(target.op, ident)
        restore = await _Restorer.before(ctx, target, plan, ident, self.info)
        if target.needs_restore and restore is _nothing:
            return None  # an e-mail change whose old value cannot be read back: not probed
        try:
            chars = redos_inputs(target.pattern, 1) if target.pattern is not None else ["a!"]
            for char in [c[0] for c in chars]:
                short = await self._send(ctx, target, plan, ident, char * 4 + "!")
                if short.status == 0:
                    return None
                for length in REDOS_LENGTHS:
                    text = char * length + "!"
                    long = await self._send(ctx, target, plan, ident, text)
                    if long.status == 0 and "Timeout" not in (long.error or ""):
                        break
                    if long.elapsed - short.elapsed < REDOS_DELAY:
                        continue
                    again = await self._send(ctx, target, plan, ident, text)
                    if again.elapsed - short.elapsed >= REDOS_DELAY:
                        return finding(self.info, target.op.label,
                                       f"The {target.label} ({target.what}) with {len(text)} characters took "
                                       f"{long.elapsed:.1f} s and {again.elapsed:.1f} s against {short.elapsed:.2f} s "
                                       f"for a short input: its validation backtracks (the scan stopped growing the "
                                       f"input there).", short, long, again)
                    break  # one slow answer that did not repeat: noise, not a pattern
            return None
        finally:
            await restore()

    async def _send(self, ctx: ScanContext, target: _Input, plan: Any, ident: Any, value: str) -> Exchange:
        if target.location == "path":
            p = ctx.plan(target.op, ident, path_values={target.name: value})
        elif target.location == "query":
            p = plan.copy(query=[(k, v) for k, v in plan.query if k != target.name] + [(target.name, value)])
        else:
            body = dict(plan.json) if isinstance(plan.json, dict) else {}
            p = plan.copy(json={**body, target.name: value})
        return await ctx.send(p, ident, check=self.info, timeout=ctx.options.timeout)


class _Restorer:
    """For a probe of an update's body field: the field's value before, written back after if it changed."""

    def __init__(self, ctx: ScanContext, reader: RequestPlan | None, writer: RequestPlan, ident: Identity,
                 name: str, before: Any, info: CheckInfo) -> None:
        self.ctx, self.reader, self.writer, self.ident = ctx, reader, writer, ident
        self.name, self.value, self.info = name, before, info

    @classmethod
    async def before(cls, ctx: ScanContext, target: _Input, plan: RequestPlan, ident: Identity,
                     info: CheckInfo) -> Any:
        if target.location != "body" or target.op.method == "post":
            return _nothing
        reader_op = next((o for o in ctx.operations() if o.method == "get" and o.template == target.op.template),
                         None)
        path = plan.path
        if reader_op is None:
            reader_op, path = _owner_reader(ctx, target.op), plan.path.rsplit("/", 1)[0]
        if reader_op is None:
            return _nothing
        reader = ctx.plan(reader_op, ident).copy(path=path)
        answer = await ctx.send(reader, ident, check=info)
        body = answer.json() if success(answer) else None
        if not isinstance(body, dict) or target.name not in body:
            return _nothing
        return cls(ctx, reader, plan, ident, target.name, body[target.name], info)

    async def __call__(self) -> None:
        assert self.reader is not None
        now = await self.ctx.send(self.reader, self.ident, check=self.info)
        body = now.json() if success(now) else None
        if isinstance(body, dict) and body.get(self.name) != self.value:
            base = dict(self.writer.json) if isinstance(self.writer.json, dict) else {}
            await self.ctx.send(self.writer.copy(json={**base, self.name: self.value}), self.ident, check=self.info)


async def _nothing() -> None:
    return None


def _owner_reader(ctx: ScanContext, op: Operation) -> Operation | None:
    """The GET of the resource an update's path belongs to: ``/users/{username}`` for
    ``PUT /users/{username}/email``."""
    parent = op.template.rsplit("/", 1)[0]
    if "{" not in parent:
        return None
    return next((o for o in ctx.operations() if o.method == "get" and o.template == parent), None)


#: The burst goes last: it exhausts the limit of one operation for a while.
CHECKS: list[Check] = [PageSize(), LargePayload(), UnboundedArray(), RegexDos(), NoRateLimit()]
