"""Problems found in a request, worded for the client without echoing what it sent.

A value is shown only when it is short (strings of at most 40 characters, numbers of at
most 40 digits), JSON-quoted with everything outside printable ASCII escaped and ``<``,
``>``, ``&``, ``'`` escaped too, so a detail is inert in any context it is pasted into.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema_rs

from bastion.stages.validation.schema import WHOLE_INTEGER

MAX_SHOWN = 40
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}\Z")
_UNSAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "'": "\\u0027"})


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule: where (``query parameter 'limit'``), what, and its reason code."""

    location: str
    rule: str
    #: The suffix of the block's reason: ``query``, ``body``, ``content_type``...
    kind: str

    def as_dict(self) -> dict[str, str]:
        return {"location": self.location, "rule": self.rule}

    def __str__(self) -> str:
        return f"{self.location}: {self.rule}"


def quote(text: str, limit: int = MAX_SHOWN) -> str | None:
    """``text`` JSON-quoted and escaped, or ``None`` when it is longer than ``limit``."""
    if len(text) > limit:
        return None
    return json.dumps(text, ensure_ascii=True).translate(_UNSAFE)


def name_ref(name: str) -> str:
    """A property or parameter name: ``'limit'`` when plain, else JSON-quoted (or elided)."""
    if _NAME.match(name):
        return f"'{name}'"
    return quote(name) or "(a name too long to show)"


def show(value: Any) -> str:
    """A value as a detail may show it (or a description when it is too long to show)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        shown = quote(value)
        return shown if shown is not None else f"a string of {len(value)} characters"
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= MAX_SHOWN else "the number"
    if isinstance(value, dict):
        return "the object"
    if isinstance(value, list):
        return "the array"
    return "the value"


def show_names(names: list[str], most: int = 5) -> str:
    shown = ", ".join(show(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def json_path(parts: list[str | int] | tuple[str | int, ...]) -> str:
    """``$.items[0].name``; odd or long property names are quoted or elided."""
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _NAME.match(part):
            out.append("." + part)
        else:
            shown = quote(part)
            out.append(f"[{shown}]" if shown is not None else "[…]")
    return "".join(out)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def rule_of(error: jsonschema_rs.ValidationError) -> str:
    """The rule an error breaks, worded without the raw instance (unless short and escaped)."""
    kind = error.kind
    name = type(kind).__name__
    value = show(error.instance)
    k = kind.as_dict()
    if name == "Minimum":
        return f"{value} is less than the minimum of {show(k.get('limit'))}"
    if name == "Maximum":
        return f"{value} is greater than the maximum of {show(k.get('limit'))}"
    if name == "ExclusiveMinimum":
        return f"{value} is less than or equal to the minimum of {show(k.get('limit'))}"
    if name == "ExclusiveMaximum":
        return f"{value} is greater than or equal to the maximum of {show(k.get('limit'))}"
    if name == "Type":
        types = k.get("types") or []
        wanted = " or ".join(f"'{t}'" for t in types) if isinstance(types, list) else "the declared type"
        return f"{value} is not of type {wanted}"
    if name == "Required":
        return f"{name_ref(str(k.get('property')))} is a required property"
    if name in ("AdditionalProperties", "UnevaluatedProperties"):
        unexpected = [str(u) for u in k.get("unexpected") or []]
        word = "property" if len(unexpected) == 1 else "properties"
        return f"unexpected {word} {show_names(unexpected)} (not declared by the schema)"
    if name == "Enum":
        options = k.get("options") or []
        listed = ", ".join(show(o) for o in options[:10]) + (", …" if len(options) > 10 else "")
        return f"{value} is not one of [{listed}]"
    if name == "Constant":
        return f"{value} is not {show(k.get('expected_value'))}"
    if name == "Format":
        return f"{value} is not a valid {quote(str(k.get('format')), 60)}"
    if name == "Pattern":
        pattern = quote(str(k.get("pattern")), 120)
        return f"{value} does not match the pattern {pattern}" if pattern else f"{value} does not match the pattern"
    if name == "MinLength":
        return f"{value} is shorter than {_plural(int(k.get('limit', 0)), 'character')}"
    if name == "MaxLength":
        return f"{value} is longer than {_plural(int(k.get('limit', 0)), 'character')}"
    if name == "MinItems":
        return f"{value} has fewer than {_plural(int(k.get('limit', 0)), 'item')}"
    if name == "MaxItems":
        return f"{value} has more than {_plural(int(k.get('limit', 0)), 'item')}"
    if name == "MinProperties":
        return f"{value} has fewer than {_plural(int(k.get('limit', 0)), 'property')}"
    if name == "MaxProperties":
        return f"{value} has more than {_plural(int(k.get('limit', 0)), 'property')}"
    if name == "MultipleOf":
        return f"{value} is not a multiple of {show(k.get('multiple_of'))}"
    if name == "UniqueItems":
        return f"{value} has non-unique items"
    if name == "AnyOf":
        return f"{value} matches none of the allowed schemas (anyOf)"
    if name == "OneOfNotValid":
        return f"{value} matches none of the allowed schemas (oneOf)"
    if name == "OneOfMultipleValid":
        return f"{value} matches more than one of the oneOf schemas"
    if name == "Not":
        return f"{value} matches a schema it must not match"
    if name == "FalseSchema":
        return f"{value} may not be sent here (a read-only or forbidden property)"
    if name == "Contains":
        return f"{value} has no item matching the 'contains' schema"
    if name == "PropertyNames":
        return f"{value} has a property name that is not allowed"
    if name in ("UnevaluatedItems", "AdditionalItems"):
        return f"{value} has more items than the schema declares"
    if name == "Custom" and k.get("keyword") == WHOLE_INTEGER:
        return f"{value} is not of type 'integer' (in OpenAPI 3.0 an integer has no fraction or exponent)"
    if name in ("BacktrackLimitExceeded", "RegexEngineFailure"):
        return f"{value} could not be checked against the pattern"
    return f"{value} breaks the '{quote(name) or 'schema'}' rule"
