"""Object and property level rules (API1, API3): guessable IDs, mass assignment, data exposure."""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import pairwise

from bastion.config.yamlsrc import FieldPath
from bastion.tester.audit.context import Operation, Spec, types_of
from bastion.tester.audit.interface import Hit, Rule, RuleInfo, Severity

DIGITS_ONLY = re.compile(r"^\^?(\\d|\[0-9\])(\+|\*|\{[0-9,]+\})\$?$")
#: Words of a property name that mark it secret ("passwordHash" -> password, hash).
SENSITIVE_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "token",
        "pin",
        "cvv",
        "cvc",
        "ssn",
        "pan",
        "credentials",
        "credential",
    }
)
SENSITIVE_PAIRS = frozenset(
    {"apikey", "privatekey", "cardnumber", "creditcard", "ccnumber", "socialsecurity", "accountnumber", "iban"}
)
#: Words that make a name describe a secret rather than hold one ("tokenType", "passwordPolicy").
DESCRIPTIVE_WORDS = frozenset(
    {
        "type",
        "types",
        "expires",
        "expiry",
        "expiration",
        "hint",
        "policy",
        "url",
        "uri",
        "count",
        "length",
        "strength",
        "required",
        "set",
        "changed",
        "updated",
        "last4",
    }
)
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")


def is_sensitive_name(name: str) -> bool:
    """Whether a property name looks like it holds a secret (word-wise, so "company" is not "pan")."""
    words = [w.lower() for w in _WORD.findall(name)]
    if not words or DESCRIPTIVE_WORDS & set(words) or (len(words) > 1 and words[-1] == "4"):
        return False
    pairs = {a + b for a, b in pairwise(words)}
    return bool(SENSITIVE_WORDS & set(words) or SENSITIVE_PAIRS & (pairs | set(words)))


NUMERIC_ID = RuleInfo(
    id="BAST-OBJ-001",
    title="Sequential numeric ID in a path",
    category="API1:2023",
    cwe=639,
    severity=Severity.MEDIUM,
    scope="openapi",
    checks="A path parameter is an integer (or a digits-only string): neighbouring objects can be enumerated by "
    "counting, which turns any missing ownership check into a data breach.",
    fix="Use random, non-guessable identifiers (`type: string, format: uuid`) and check in the API that the "
    "caller owns the object; do not rely on the ID being secret.",
)


def numeric_id(spec: Spec) -> Iterator[Hit]:
    seen: set[FieldPath] = set()
    for op in spec.operations:
        for param in op.parameters:
            if param.location != "path" or param.path in seen:
                continue
            node = spec.parameter_schema(param)
            if node is None:
                continue
            kinds = types_of(node.schema)
            digits = "string" in kinds and DIGITS_ONLY.match(str(node.schema.get("pattern", "")))
            if kinds & {"integer", "number"} or digits:
                seen.add(param.path)
                yield Hit(f"path parameter {param.name!r} of {op.label} is a guessable number", spec.source, node.path)


MASS_ASSIGNMENT = RuleInfo(
    id="BAST-OBJ-002",
    title="Request object accepts undeclared properties",
    category="API3:2023",
    cwe=915,
    severity=Severity.MEDIUM,
    scope="openapi",
    checks="An object schema in a request body does not set `additionalProperties: false` (or sets it to true): "
    "clients may send fields such as `role` or `isAdmin` that the API then binds (mass assignment).",
    fix="Set `additionalProperties: false` (or `unevaluatedProperties: false` with allOf in 3.1) on request "
    "objects; Bastion's request validation then rejects undeclared fields with 400.",
)


def mass_assignment(spec: Spec) -> Iterator[Hit]:
    seen: set[FieldPath] = set()
    for op in spec.operations:
        for root in spec.request_schemas(op):
            for node in spec.walk(root, seen):
                s = node.schema
                is_object = "object" in types_of(s) or "properties" in s
                if not is_object or any(k in s for k in ("allOf", "anyOf", "oneOf")):
                    continue
                extra = s.get("additionalProperties", True)
                closed = extra is False or s.get("unevaluatedProperties") is False
                if not closed and not isinstance(extra, dict):
                    yield Hit(f"request object of {op.label} accepts any extra property", spec.source, node.path)


SENSITIVE_FIELD = RuleInfo(
    id="BAST-OBJ-003",
    title="Sensitive field in a response",
    category="API3:2023",
    cwe=213,
    severity=Severity.HIGH,
    scope="openapi",
    checks="A response schema has a property named like a secret (password, hash, token, API key, card number, "
    "CVV, SSN): the API documents that it sends it to clients. Tokens in the answers of login and token "
    "operations are their purpose and not reported.",
    fix="Remove the property from the response schema (and from what the API returns); if it is input-only, "
    "mark it `writeOnly: true`. Bastion's response filtering removes properties the schema does not declare.",
)


#: Paths and operationIds of operations whose job is to hand out tokens (login, OAuth token endpoints).
ISSUES_TOKENS = re.compile(r"login|log-in|signin|sign-in|token|oauth|authenticate|session", re.IGNORECASE)


def issues_tokens(spec: Spec, op: Operation) -> bool:
    """A login or token operation: a token in its answer is the point, not a leak."""
    return op.method == "post" and bool(ISSUES_TOKENS.search(f"{op.template} {op.node.get('operationId', '')}"))


def sensitive_field(spec: Spec) -> Iterator[Hit]:
    seen: set[FieldPath] = set()
    for op in spec.operations:
        login = issues_tokens(spec, op)
        for status, root in spec.response_schemas(op):
            if not status.startswith("2"):
                continue
            for node in spec.walk(root, seen):
                props = node.schema.get("properties")
                if not isinstance(props, dict):
                    continue
                for name, raw in props.items():
                    prop, ppath = spec.resolve(raw, (*node.path, "properties", name))
                    if isinstance(prop, dict) and prop.get("writeOnly") is True:
                        continue
                    if login and "token" in str(name).lower():
                        continue
                    if is_sensitive_name(str(name)) and ppath not in seen:
                        seen.add(ppath)
                        yield Hit(
                            f"response of {op.label} may contain sensitive property {name!r}",
                            spec.source,
                            (*node.path, "properties", name),
                        )


RULES: tuple[Rule[Spec], ...] = (
    Rule(NUMERIC_ID, numeric_id),
    Rule(MASS_ASSIGNMENT, mass_assignment),
    Rule(SENSITIVE_FIELD, sensitive_field),
)
