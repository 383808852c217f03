"""Server-side request forgery (API7): inputs that are URLs the API will fetch."""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import pairwise

from bastion.config.yamlsrc import FieldPath
from bastion.tester.audit.context import Spec, types_of
from bastion.tester.audit.interface import Hit, Rule, RuleInfo, Severity

URL_FORMATS = frozenset({"uri", "url", "iri", "uri-reference", "iri-reference", "uri-template"})
#: Names of inputs that usually hold a URL the server will call (compared on words).
URL_WORDS = frozenset(
    {
        "url",
        "uri",
        "callback",
        "webhook",
        "redirect",
        "href",
        "endpoint",
        "link",
        "feed",
        "returnto",
        "redirectto",
        "next",
        "target",
        "dest",
        "destination",
        "proxy",
        "fetch",
    }
)
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")


def _url_name(name: str) -> bool:
    words = [w.lower() for w in _WORD.findall(name)]
    pairs = {a + b for a, b in pairwise(words)}
    return bool(URL_WORDS & (set(words) | pairs))


URL_INPUT = RuleInfo(
    id="BAST-SSRF-001",
    title="URL-typed input",
    category="API7:2023",
    cwe=918,
    severity=Severity.MEDIUM,
    scope="openapi",
    checks="A parameter or body property is a URL (`format: uri`, or named url, callback, webhook, redirect...): "
    "if the API fetches it, clients can make it call internal services or cloud metadata endpoints.",
    fix="Avoid taking URLs; if you must, allow-list schemes and hosts (a `pattern` or `enum`, checked again in "
    "the API), resolve and refuse private, loopback and link-local addresses, and do not follow redirects. "
    "Bastion's detection stage flags internal addresses in such inputs.",
)


def url_input(spec: Spec) -> Iterator[Hit]:
    seen: set[FieldPath] = set()
    for op in spec.operations:
        for root in spec.input_schemas(op):
            for node in spec.walk(root, seen):
                s = node.schema
                if "string" not in types_of(s) and "format" not in s:
                    continue
                if "enum" in s or "const" in s:
                    continue
                by_format = s.get("format") in URL_FORMATS
                if by_format or (node.name and _url_name(node.name)):
                    what = f"{node.name!r}" if node.name else "a value"
                    yield Hit(f"{op.label}: {what} is a URL the API may fetch", spec.source, node.path)


RULES: tuple[Rule[Spec], ...] = (Rule(URL_INPUT, url_input),)
