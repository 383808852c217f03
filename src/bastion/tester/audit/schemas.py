"""Input bounds (API4): every string, array and number a client sends should have a limit."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from bastion.config.yamlsrc import FieldPath
from bastion.tester.audit.context import SchemaNode, Spec, types_of
from bastion.tester.audit.interface import Hit, Rule, RuleInfo, Severity

#: Formats whose values have a fixed or small maximum length.
BOUNDED_FORMATS = frozenset({"uuid", "date", "date-time", "time", "ipv4", "ipv6", "int32", "int64", "duration"})
#: A quantifier without an upper bound: *, + or {n,}.
UNBOUNDED_QUANTIFIER = re.compile(r"(?<!\\)[*+]|\{\d*,\}")


def _enumerated(schema: dict[str, Any]) -> bool:
    return "enum" in schema or "const" in schema


def string_is_bounded(schema: dict[str, Any]) -> bool:
    """maxLength, enum/const, a fixed-size format, or a fully anchored pattern with bounded repeats."""
    if "maxLength" in schema or _enumerated(schema) or schema.get("format") in BOUNDED_FORMATS:
        return True
    pattern = schema.get("pattern")
    return (
        isinstance(pattern, str)
        and pattern.startswith("^")
        and pattern.endswith("$")
        and not UNBOUNDED_QUANTIFIER.search(pattern)
    )


def _inputs(spec: Spec, accept: Callable[[dict[str, Any]], bool]) -> Iterator[tuple[str, SchemaNode]]:
    """``(operation label, schema)`` for each input (sub)schema ``accept`` picks, once per schema."""
    seen: set[FieldPath] = set()
    for op in spec.operations:
        for root in spec.input_schemas(op):
            for node in spec.walk(root, seen):
                if accept(node.schema):
                    yield op.label, node


def _name(node: SchemaNode) -> str:
    return f"{node.name!r}" if node.name else "a value"


UNBOUNDED_STRING = RuleInfo(
    id="BAST-SCH-001",
    title="String input without maxLength",
    category="API4:2023",
    cwe=770,
    severity=Severity.MEDIUM,
    scope="openapi",
    checks="A string a client sends (parameter or request body) has no `maxLength`, enum, fixed-size format or "
    "bounded anchored pattern: megabytes can be sent where a name was expected.",
    fix="Add `maxLength` to the schema; Bastion's request validation then refuses longer values with 400.",
)


def unbounded_string(spec: Spec) -> Iterator[Hit]:
    def accept(s: dict[str, Any]) -> bool:
        return types_of(s) == {"string"} and not string_is_bounded(s)

    for label, node in _inputs(spec, accept):
        yield Hit(f"{label}: string {_name(node)} has no maxLength", spec.source, node.path)


UNBOUNDED_ARRAY = RuleInfo(
    id="BAST-SCH-002",
    title="Array input without maxItems",
    category="API4:2023",
    cwe=770,
    severity=Severity.MEDIUM,
    scope="openapi",
    checks="An array a client sends has no `maxItems`: one request can ask the API to process unbounded work.",
    fix="Add `maxItems` to the array schema (and page large collections instead of accepting them whole).",
)


def unbounded_array(spec: Spec) -> Iterator[Hit]:
    def accept(s: dict[str, Any]) -> bool:
        return "array" in types_of(s) and "maxItems" not in s and not _enumerated(s)

    for label, node in _inputs(spec, accept):
        yield Hit(f"{label}: array {_name(node)} has no maxItems", spec.source, node.path)


UNBOUNDED_NUMBER = RuleInfo(
    id="BAST-SCH-003",
    title="Numeric input without bounds",
    category="API4:2023",
    cwe=1284,
    severity=Severity.LOW,
    scope="openapi",
    checks="An integer or number a client sends lacks a `minimum` or a `maximum`: page sizes, quantities and "
    "offsets without bounds invite expensive queries and overflow bugs.",
    fix="Add `minimum` and `maximum` (e.g. `limit: {type: integer, minimum: 1, maximum: 100}`).",
)


def unbounded_number(spec: Spec) -> Iterator[Hit]:
    def accept(s: dict[str, Any]) -> bool:
        if not types_of(s) & {"integer", "number"} or _enumerated(s):
            return False
        low = "minimum" in s or "exclusiveMinimum" in s
        high = "maximum" in s or "exclusiveMaximum" in s
        return not (low and high)

    for label, node in _inputs(spec, accept):
        yield Hit(f"{label}: number {_name(node)} needs both a minimum and a maximum", spec.source, node.path)


RULES: tuple[Rule[Spec], ...] = (
    Rule(UNBOUNDED_STRING, unbounded_string),
    Rule(UNBOUNDED_ARRAY, unbounded_array),
    Rule(UNBOUNDED_NUMBER, unbounded_number),
)
