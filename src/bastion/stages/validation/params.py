"""Parameters: from the strings of a URL, a header or a cookie to the values a schema checks.

OpenAPI serialises arrays and objects in a parameter with a ``style`` (form, simple,
label, matrix, spaceDelimited, pipeDelimited, deepObject) and ``explode``; a value that
the schema says is an integer, a number or a boolean arrives as text and is converted
here first. A string that does not convert is left as it is, so the schema reports the
type it expected (``"abc" is not of type "integer"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

import orjson

from bastion.stages.validation.schema import ANY, Shape

Location = Literal["path", "query", "header", "cookie"]

#: Longest integer part, fraction and exponent a number parameter may have (no Python
#: ``re`` runs over request data: these are str methods).
MAX_INTEGER_DIGITS = 40
MAX_FRACTION_DIGITS = 40
MAX_EXPONENT_DIGITS = 3


def _digits(text: str, most: int) -> bool:
    """1 to ``most`` ASCII digits."""
    return 0 < len(text) <= most and text.isascii() and text.isdigit()


def is_integer_text(text: str) -> bool:
    """``-?(0|[1-9][0-9]{0,39})``: an integer as JSON writes it."""
    digits = text[1:] if text[:1] == "-" else text
    return _digits(digits, MAX_INTEGER_DIGITS) and (digits[0] != "0" or len(digits) == 1)


def is_number_text(text: str) -> bool:
    """An integer, then an optional fraction (``.`` and 1-40 digits) and exponent (``e``, a
    sign, 1-3 digits): a number as JSON writes it."""
    mantissa, e, exponent = text.replace("E", "e").partition("e")
    if e and not _digits(exponent[1:] if exponent[:1] in ("+", "-") else exponent, MAX_EXPONENT_DIGITS):
        return False
    whole, dot, fraction = mantissa.partition(".")
    if dot and not _digits(fraction, MAX_FRACTION_DIGITS):
        return False
    return is_integer_text(whole)

#: How a parameter's value is written (OpenAPI ``style``, ``explode``).
DEFAULT_STYLE: dict[Location, str] = {"path": "simple", "query": "form", "header": "simple", "cookie": "form"}
STYLES: dict[Location, frozenset[str]] = {
    "path": frozenset({"simple", "label", "matrix"}),
    "query": frozenset({"form", "spaceDelimited", "pipeDelimited", "deepObject"}),
    "header": frozenset({"simple"}),
    "cookie": frozenset({"form"}),
}


class ParamError(ValueError):
    """A parameter's text cannot be read in its declared style (the message is safe to show)."""


@dataclass(frozen=True, slots=True)
class Param:
    """One declared parameter, compiled."""

    name: str
    #: The name as looked up: lower-case for headers.
    key: str
    location: Location
    required: bool
    style: str
    explode: bool
    shape: Shape
    #: The parameter is declared with ``content: application/json`` instead of a schema.
    json_content: bool = False
    #: Precomputed from ``shape``: the value is an array, an object (serialised by ``style``).
    is_array: bool = False
    is_object: bool = False

    @classmethod
    def make(cls, name: str, location: Location, required: bool, style: str, explode: bool, shape: Shape,
             json_content: bool = False) -> Param:
        """A parameter, with the derived fields filled in."""
        text = "string" in shape.types
        return cls(name, name.lower() if location == "header" else name, location, required, style, explode,
                   shape, json_content, "array" in shape.types and not text, "object" in shape.types and not text)


def coerce_scalar(text: str, shape: Shape) -> Any:
    """``text`` as the JSON type ``shape`` wants, or ``text`` itself if it does not convert."""
    types = shape.types
    if not types or "string" in types:
        return text
    if "integer" in types and is_integer_text(text):
        return int(text)
    if "number" in types and is_number_text(text):
        value = float(text)
        if math.isfinite(value):
            return int(text) if is_integer_text(text) else value
    if "boolean" in types:
        if text == "true":
            return True
        if text == "false":
            return False
    if "null" in types and text in ("", "null"):
        return None
    return text


def _items(values: list[str], shape: Shape) -> list[Any]:
    item = shape.items or ANY
    return [coerce_scalar(v, item) for v in values]


def _pairs(parts: list[str], shape: Shape) -> dict[str, Any]:
    """``["role", "admin", "age", "3"]`` as an object (the non-exploded object forms)."""
    if len(parts) % 2:
        raise ParamError("an object value must be a list of name,value pairs")
    return {parts[i]: coerce_scalar(parts[i + 1], shape.property(parts[i])) for i in range(0, len(parts), 2)}


def _assignments(parts: list[str], shape: Shape) -> dict[str, Any]:
    """``["role=admin", "age=3"]`` as an object (the exploded object forms)."""
    out: dict[str, Any] = {}
    for part in parts:
        name, sep, value = part.partition("=")
        if not sep:
            raise ParamError("an exploded object value must be a list of name=value pairs")
        out[name] = coerce_scalar(value, shape.property(name))
    return out


def decode_path(param: Param, text: str) -> Any:
    """A path parameter's text in its style: percent-decoded already, but for matrix style
    (see :func:`_matrix`)."""
    if param.style == "matrix":
        return _matrix(param, text)
    sep = ","
    if param.style == "label":
        if not text.startswith("."):
            raise ParamError("a label-style value must start with '.'")
        text = text[1:]
        sep = "." if param.explode else ","
    return _simple(param, text, sep)


def _matrix(param: Param, text: str) -> Any:
    """A matrix-style value as the router hands it over, raw: ``;name=a,b``, ``;name=a;name=b``
    (exploded array), ``;a=1;b=2`` (exploded object). It is split on ``;``, ``=`` and ``,``
    before its pieces are percent-decoded, so an escaped separator (``%3B``, ``%2C``) is data.
    ``;name`` without ``=`` is the empty string (RFC 6570)."""
    if not text.startswith(";"):
        raise ParamError("a matrix-style value must start with ';name='")
    pairs = [part.partition("=") for part in text[1:].split(";")]
    if param.is_object and param.explode and not param.json_content:
        out: dict[str, Any] = {}
        for raw_name, _, value in pairs:
            name = _unescape(raw_name)
            if name in out:
                raise ParamError("gives a property more than once")
            out[name] = coerce_scalar(_unescape(value), param.shape.property(name))
        return out
    for raw_name, _, _ in pairs:
        if _unescape(raw_name) != param.name:
            raise ParamError("a matrix-style value must be ';name=' and the value")
    if param.is_array and param.explode and not param.json_content:
        return _items([_unescape(value) for _, _, value in pairs], param.shape)
    if len(pairs) > 1:
        raise ParamError("is given more than once")
    value = pairs[0][2]
    if param.json_content:
        return parse_json_value(_unescape(value))
    if param.is_array:
        return _items([_unescape(v) for v in value.split(",")], param.shape)
    if param.is_object:
        parts = [_unescape(v) for v in value.split(",")] if value else []
        return _pairs(parts, param.shape)
    return coerce_scalar(_unescape(value), param.shape)


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ParamError("is not valid percent-encoded UTF-8") from None


def _simple(param: Param, text: str, sep: str) -> Any:
    if param.json_content:
        return parse_json_value(text)
    if param.is_array:
        # An empty value is a list of one empty string (RFC 6570: an empty list is not sent).
        return _items(text.split(sep), param.shape)
    if param.is_object:
        parts = text.split(sep) if text else []
        return _assignments(parts, param.shape) if param.explode else _pairs(parts, param.shape)
    return coerce_scalar(text, param.shape)


def decode_header(param: Param, values: list[str]) -> Any:
    """A header parameter (several fields with the name are one comma-separated list)."""
    if param.is_array and not param.json_content:
        # Several fields are one list (RFC 9110 5.3); an empty one is an empty item, as in _simple.
        return _items([item.strip() for item in ",".join(values).split(",")], param.shape)
    text = ",".join(v.strip() for v in values) if len(values) > 1 else values[0].strip()
    return _simple(param, text, ",")


_DELIMITERS = {"form": ",", "spaceDelimited": " ", "pipeDelimited": "|"}


def decode_query(param: Param, query: dict[str, list[str]], allow_repeat: bool) -> tuple[bool, Any]:
    """Whether the query carries ``param``, and its value; ``ParamError`` if unreadable."""
    name = param.name
    if not (param.is_array or param.is_object or param.json_content):
        values = query.get(name)
        if values is None:
            return False, None
        if len(values) > 1 and not allow_repeat:
            raise ParamError("is given more than once")
        return True, coerce_scalar(values[0], param.shape)
    if param.json_content:
        values = query.get(name)
        return (False, None) if values is None else (True, parse_json_value(_single(values, allow_repeat)))
    if param.is_object and (param.style == "deepObject" or (param.style == "form" and param.explode)):
        out: dict[str, Any] = {}
        if param.style == "deepObject":
            prefix = name + "["
            for key, values in query.items():
                if key.startswith(prefix) and key.endswith("]"):
                    prop = key[len(prefix):-1]
                    if "[" in prop or "]" in prop:
                        raise ParamError("nested deepObject values are not supported")
                    out[prop] = _one(values, param.shape.property(prop), allow_repeat)
        else:
            for prop, shape in param.shape.properties:
                values = query.get(prop)
                if values is not None:
                    out[prop] = _one(values, shape, allow_repeat)
        return bool(out), out
    values = query.get(name)
    if values is None:
        return False, None
    if param.is_array:
        if param.style == "form" and param.explode:
            return True, _items(values, param.shape)
        text = _single(values, allow_repeat)
        return True, _items(text.split(_DELIMITERS.get(param.style, ",")), param.shape)
    if param.is_object:
        text = _single(values, allow_repeat)
        return True, _pairs(text.split(_DELIMITERS.get(param.style, ",")) if text else [], param.shape)
    return True, _one(values, param.shape, allow_repeat)


def _single(values: list[str], allow_repeat: bool) -> str:
    if len(values) > 1 and not allow_repeat:
        raise ParamError("is given more than once")
    return values[0]


def _one(values: list[str], shape: Shape, allow_repeat: bool) -> Any:
    return coerce_scalar(_single(values, allow_repeat), shape)


def decode_cookie(param: Param, text: str) -> Any:
    """A cookie parameter (form style: arrays and objects comma-separated when not exploded)."""
    return _simple(param, text, ",")


def parse_query(query: str, max_fields: int) -> dict[str, list[str]]:
    """``a=1&b=x%20y&a=2`` -> ``{'a': ['1', '2'], 'b': ['x y']}`` (``+`` is a space).

    Raises ``UnicodeDecodeError`` for percent-encoded bytes that are not UTF-8 and
    ``ParamError`` past ``max_fields`` parameters. Much faster than ``parse_qsl`` for the
    common case of names and values with nothing to decode.
    """
    out: dict[str, list[str]] = {}
    pieces = query.split("&")
    if len(pieces) > max_fields:
        raise ParamError(f"the query string has more than {max_fields} parameters")
    for piece in pieces:
        if not piece:
            continue
        name, _, value = piece.partition("=")
        if "%" in name or "+" in name:
            name = unquote(name.replace("+", " "), errors="strict")
        if "%" in value or "+" in value:
            value = unquote(value.replace("+", " "), errors="strict")
        values = out.get(name)
        if values is None:
            out[name] = [value]
        else:
            values.append(value)
    return out


def parse_cookies(headers: list[tuple[str, str]]) -> dict[str, str]:
    """The cookies of every ``Cookie`` header (the first of a repeated name wins, like browsers send)."""
    out: dict[str, str] = {}
    for key, value in headers:
        if key != "cookie":
            continue
        for pair in value.split(";"):
            name, sep, val = pair.strip().partition("=")
            if sep and name and name not in out:
                out[name] = val.strip()
    return out


def parse_json_value(text: str) -> Any:
    """A parameter declared with JSON content."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ParamError("is not valid JSON") from None
