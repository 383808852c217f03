"""API7:2023 Server Side Request Forgery: URL inputs pointed at the scanner's canary listener.

A URL input is a query, path or header parameter, or a top-level or nested JSON body field,
whose schema has ``format: uri``/``url``/``uri-reference``/``iri``, or whose name (snake-cased)
is one of url, uri, link, href, callback, webhook, redirect, endpoint, feed, image, avatar, src,
target, or ends with ``_url``/``_uri``/``_link``/``_callback``/``_webhook``. Each input gets
the canary URL (``http://127.0.0.1:PORT/c/<token>``) and loopback spellings of it that naive
filters miss (``2130706433``, ``0x7f000001``, ``127.1``, ``localhost``), each with its own
token; a hit on the listener, waited for up to :data:`CALLBACK_WAIT` seconds after the last
request (fetches may be asynchronous), is the finding.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bastion.tester.audit.context import Operation, Spec, types_of
from bastion.tester.audit.interface import Severity
from bastion.tester.scan.checks.probing import caller, finding, json_request_schema, random_marker, resolve, skip
from bastion.tester.scan.checks.properties import snake
from bastion.tester.scan.interface import Check, CheckInfo, Exchange, RequestPlan, ScanContext, ScanFinding, Skip

__all__ = ["CHECKS", "Ssrf", "loopback_variants"]

CALLBACK_WAIT = 2.0
MAX_INPUTS = 20
URL_FORMATS = frozenset({"uri", "url", "uri-reference", "iri", "iri-reference"})
_URL_NAME = re.compile(
    r"^(?:url|uri|link|href|callback|webhook|redirect|redirect_to|return_to|next|endpoint|feed|image|avatar|"
    r"src|source_url|target|host_url|domain)$|_(?:url|uri|link|callback|webhook|href)$|^(?:url|uri|callback|webhook)_"
)

SSRF = CheckInfo(
    id="API7-SSRF",
    title="Server-side request forgery",
    category="API7:2023",
    cwe=918,
    severity=Severity.HIGH,
    phase="injection",
    checks="Sets URL-typed inputs (format uri/url, or names like url, callback, webhook) to a listener the scanner "
    "runs on 127.0.0.1, also in decimal/hex/short loopback spellings, and reports when the API fetches it.",
    advice="Fetch only allow-listed hosts and schemes; resolve the name and refuse loopback, private, link-local "
    "and metadata addresses (after redirects too), and run fetches from an egress-restricted network. In front "
    "of the API, Bastion's `policies.detection` (category `ssrf`) refuses internal addresses "
    "in inputs; constrain URL fields with a `pattern` or `enum` that `policies.validation` enforces.",
)


def url_like(name: str, schema: dict[str, Any] | None) -> bool:
    """Whether an input takes a URL (by format, or by name for untyped/string inputs)."""
    if schema is not None:
        if str(schema.get("format", "")).lower() in URL_FORMATS:
            return True
        kinds = types_of(schema)
        if (kinds and "string" not in kinds) or "enum" in schema or "const" in schema:
            return False
    return bool(_URL_NAME.search(snake(name)))


def loopback_variants(url: str) -> list[str]:
    """``url`` (on 127.0.0.1) and spellings of the same address that string filters miss."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    hosts = ["2130706433", "0x7f000001", "127.1", "localhost"]
    return [url] + [urlunsplit((parts.scheme, h + port, parts.path, parts.query, "")) for h in hosts]


def _body_url_fields(spec: Spec, schema: dict[str, Any], prefix: tuple[str, ...] = (),
                     depth: int = 0) -> Iterator[tuple[str, ...]]:
    props = schema.get("properties")
    if not isinstance(props, dict) or depth > 2:
        return
    for name, raw in props.items():
        sub = resolve(spec, raw)
        if sub is None or sub.get("readOnly") is True:
            continue
        if url_like(str(name), sub):
            yield (*prefix, str(name))
        elif "object" in types_of(sub):
            yield from _body_url_fields(spec, sub, (*prefix, str(name)), depth + 1)


def _set_path(body: Any, path: tuple[str, ...], value: str) -> Any:
    out: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    if len(path) == 1:
        out[path[0]] = value
    else:
        out[path[0]] = _set_path(out.get(path[0]), path[1:], value)
    return out


class Ssrf(Check):
    """URL inputs the API fetches."""

    info = SSRF

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        if ctx.canary_url("probe") is None:
            return [skip(self.info, "the canary listener is not running")]
        inputs = list(self._inputs(ctx))[:MAX_INPUTS]
        if not inputs:
            return [skip(self.info, "no URL-typed parameter or body field in scope")]
        out: list[ScanFinding | Skip] = []
        for op, where, name in inputs:
            sent: list[tuple[str, Exchange]] = []
            for variant in range(5):
                token = random_marker("ssrf")
                url = ctx.canary_url(token)
                if url is None:
                    break
                target = loopback_variants(url)[variant]
                ident = caller(ctx, op)
                ex = await ctx.send(self._plan(ctx, op, ident, where, name, target), ident, check=self.info)
                sent.append((token, ex))
                if ctx.canary_hits(token):
                    break
            hit = await self._wait_hit(ctx, sent)
            if hit is not None:
                token, ex = hit
                out.append(finding(self.info, op.label,
                                   f"The API fetched the scanner's canary URL given in {where} `{name}` "
                                   f"({ctx.canary_hits(token)} request(s) received): it requests any URL a "
                                   f"client supplies, internal addresses included.", ex))
        return out

    @staticmethod
    async def _wait_hit(ctx: ScanContext, sent: list[tuple[str, Exchange]]) -> tuple[str, Exchange] | None:
        waited = 0.0
        while True:
            for token, ex in sent:
                if ctx.canary_hits(token):
                    return token, ex
            if waited >= CALLBACK_WAIT:
                return None
            await asyncio.sleep(0.2)
            waited += 0.2

    @staticmethod
    def _inputs(ctx: ScanContext) -> Iterator[tuple[Operation, str, str]]:
        for op in ctx.operations():
            for param in op.parameters:
                if param.location in ("query", "path", "header"):
                    node = ctx.spec.parameter_schema(param)
                    if url_like(param.name, node.schema if node else None):
                        yield op, param.location, param.name
            schema = json_request_schema(ctx.spec, op)
            if schema is not None:
                for path in _body_url_fields(ctx.spec, schema):
                    yield op, "body", ".".join(path)

    @staticmethod
    def _plan(ctx: ScanContext, op: Operation, ident: Any, where: str, name: str, value: str) -> RequestPlan:
        if where == "path":
            return ctx.plan(op, ident, path_values={name: value})
        plan = ctx.plan(op, ident)
        if where == "query":
            return plan.copy(query=[(k, v) for k, v in plan.query if k != name] + [(name, value)])
        if where == "header":
            return plan.copy(headers={**plan.headers, name: value})
        return plan.copy(json=_set_path(plan.json, tuple(name.split(".")), value))


CHECKS: list[Check] = [Ssrf()]
