"""Request bodies: media type matching and parsing (JSON, form-urlencoded, multipart).

Parsers return the value a schema checks, or raise :class:`BodyError` with a message that
names the rule and never quotes the body.
"""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import parse_qsl

import orjson

from bastion.stages.validation.messages import name_ref
from bastion.stages.validation.params import ParamError, coerce_scalar
from bastion.stages.validation.schema import ANY, Shape

BodyKind = Literal["json", "form", "multipart", "other"]

#: Most parts a multipart body may have, and most fields a form may have.
MAX_PARTS = 1000


class BodyError(ValueError):
    """The body cannot be read as its media type says (message safe to show)."""

    def __init__(self, message: str, kind: str = "body") -> None:
        super().__init__(message)
        self.kind = kind


def media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """``'Multipart/Form-Data; boundary="x"'`` -> ``('multipart/form-data', {'boundary': 'x'})``."""
    main, _, rest = content_type.partition(";")
    return main.strip().lower(), header_params(rest) if rest else {}


def header_params(text: str) -> dict[str, str]:
    """``a=1; b="two; three"`` -> ``{'a': '1', 'b': 'two; three'}`` (names lower-cased)."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t;":
            i += 1
        eq = text.find("=", i)
        semi = text.find(";", i)
        if eq < 0 or (0 <= semi < eq):
            i = semi + 1 if semi >= 0 else n
            continue
        name = text[i:eq].strip().lower()
        i = eq + 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(text[i])
                i += 1
            value = "".join(chars)
            i += 1
        else:
            end = text.find(";", i)
            end = n if end < 0 else end
            value = text[i:end].strip()
            i = end
        if name and name not in out:
            out[name] = value
    return out


def kind_of(media: str) -> BodyKind:
    """How a body of this media type is parsed for validation."""
    if media == "application/json" or media.endswith("+json"):
        return "json"
    if media == "application/x-www-form-urlencoded":
        return "form"
    if media == "multipart/form-data":
        return "multipart"
    return "other"


def parse_json(body: bytes, max_depth: int, reject_duplicate_keys: bool = True) -> Any:
    """The JSON value of ``body``; ``BodyError`` when malformed, nested too deeply, or
    (unless allowed) when an object repeats a key."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "recursion" in str(exc) or "depth" in str(exc):
            raise BodyError(f"the JSON body is nested more than {max_depth} levels deep", "depth") from None
        raise BodyError(f"the body is not valid JSON (error at character {exc.pos})", "json") from None
    if _deeper_than(value, max_depth):
        raise BodyError(f"the JSON body is nested more than {max_depth} levels deep", "depth")
    if reject_duplicate_keys:
        repeated = duplicate_key(body, value)
        if repeated is not None:
            raise BodyError(f"the JSON body repeats the key {name_ref(repeated)} in one object", "duplicate_key")
    return value


def duplicate_key(body: bytes, value: Any) -> str | None:
    """A key that some object of ``body`` (parsed as ``value``) has twice, or ``None``.

    Parsers disagree on which duplicate wins (first, last, error), so a duplicate lets a
    request mean one thing to Bastion and another to the backend. orjson keeps the last one
    silently. Two shortcuts settle nearly every body with a few C passes over its bytes:

    - a body equal to orjson's compact serialisation of ``value`` (what most clients send)
      is the serialisation of one dict per object, with no key twice;
    - otherwise, count colons. Outside strings, every key is followed by exactly one colon
      and nothing else has one; inside strings, a colon is written as itself (orjson
      writes it so too) unless escaped as ``\\u003a``. So, for a body with no such escape,
      equal colon counts in the body and in the serialisation mean no key was dropped.

    Any other body is parsed again, keeping every key.
    """
    dumped = orjson.dumps(value)
    if dumped == body:
        return None
    if body.find(b"\\u003") < 0 and body.count(b":") == dumped.count(b":"):
        return None
    return _first_duplicate(body)


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = val
    return out


def _first_duplicate(body: bytes) -> str | None:
    try:
        json.loads(body, object_pairs_hook=_no_duplicates)
    except _Duplicate as dup:
        return dup.key
    except (ValueError, RecursionError):
        return None  # orjson accepted it; a stricter disagreement is not a duplicate
    return None


def _deeper_than(value: Any, max_depth: int) -> bool:
    """Whether ``value``'s containers nest more than ``max_depth`` levels, without recursion.

    A walk of the parsed containers, compiled: it reads each element once to see whether it
    is a container, where counting the body's brackets first read every byte twice (about
    five times the cost on a 1 KB order) and walked anyway when they were many."""
    if not isinstance(value, (dict, list)):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return True
        if isinstance(node, dict):
            for child in node.values():
                if isinstance(child, (dict, list)):
                    stack.append((child, depth + 1))
        else:
            for item in node:
                if isinstance(item, (dict, list)):
                    stack.append((item, depth + 1))
    return False


def parse_form(body: bytes, shape: Shape, explode: dict[str, bool]) -> dict[str, Any]:
    """An ``application/x-www-form-urlencoded`` body as an object shaped by its schema."""
    # Raw UTF-8 is read as browsers and parse_qsl read it (WHATWG urlencoded parsing);
    # invalid UTF-8, raw or percent-encoded, is refused rather than replaced.
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("the form body contains bytes that are not valid UTF-8") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                          errors="strict", max_num_fields=MAX_PARTS)
    except UnicodeDecodeError:
        raise BodyError("the form body has percent-escapes that do not decode to valid UTF-8") from None
    except ValueError:
        raise BodyError(f"the form body has more than {MAX_PARTS} fields") from None
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    return {name: field_value(name, values, shape.property(name), explode.get(name, True))
            for name, values in fields.items()}


def field_value(name: str, values: list[str], shape: Shape, explode: bool = True) -> Any:
    """A form field (or multipart part) value as its property's shape wants it.

    A field given more than once is refused unless its schema is an array: backends
    disagree on which value wins (first, last, all), as with repeated query parameters.
    """
    if "array" in shape.types and "string" not in shape.types:
        item = shape.items or ANY
        texts = values if explode else [p for v in values for p in v.split(",")]
        return [coerce_scalar(v, item) for v in texts]
    if len(values) > 1:
        raise BodyError(f"the field {name_ref(name)} is given more than once (only array fields may repeat)")
    if "object" in shape.types and "string" not in shape.types:
        return _json_field(values[0])
    return coerce_scalar(values[0], shape)


def _json_field(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BodyError("an object field is not valid JSON") from None


def parse_multipart(body: bytes, params: dict[str, str], shape: Shape) -> dict[str, Any]:
    """A ``multipart/form-data`` body as an object: text parts as strings (converted to the
    property's type), JSON parts parsed, file parts as latin-1 text (one character per byte)."""
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 70:
        raise BodyError("the multipart Content-Type has no valid boundary parameter", "content_type")
    delim = b"--" + boundary.encode("latin-1", "replace")
    start = body.find(delim)
    if start < 0 or (start > 0 and body[start - 2:start] != b"\r\n"):
        raise BodyError("the multipart body does not start with its boundary")
    pos = start + len(delim)
    parts: dict[str, list[tuple[str | None, bytes, str | None]]] = {}
    count = 0
    while True:
        if body.startswith(b"--", pos):
            break
        while body.startswith((b" ", b"\t"), pos):
            pos += 1
        if not body.startswith(b"\r\n", pos):
            raise BodyError("a multipart boundary is not followed by CRLF")
        pos += 2
        if body.startswith(b"\r\n", pos):
            head, content_start = b"", pos + 2
        else:
            end = body.find(b"\r\n\r\n", pos)
            if end < 0:
                raise BodyError("a multipart part has no end of headers")
            head, content_start = body[pos:end], end + 4
        nxt = body.find(b"\r\n" + delim, content_start)
        if nxt < 0:
            raise BodyError("the multipart body is not terminated by its closing boundary")
        name, content_type, filename = _part_head(head)
        parts.setdefault(name, []).append((content_type, body[content_start:nxt], filename))
        count += 1
        if count > MAX_PARTS:
            raise BodyError(f"the multipart body has more than {MAX_PARTS} parts")
        pos = nxt + 2 + len(delim)
    out: dict[str, Any] = {}
    for name, items in parts.items():
        prop = shape.property(name)
        texts = [_part_text(ct, data, fn, prop) for ct, data, fn in items]
        if len(texts) == 1 and not isinstance(texts[0], str):
            out[name] = texts[0]
        elif all(isinstance(t, str) for t in texts):
            out[name] = field_value(name, texts, prop)
        else:
            out[name] = texts
    return out


def _part_head(head: bytes) -> tuple[str, str | None, str | None]:
    disposition: dict[str, str] | None = None
    content_type: str | None = None
    for line in head.decode("latin-1").split("\r\n"):
        key, sep, value = line.partition(":")
        if not sep:
            raise BodyError("a multipart part has a malformed header line")
        key = key.strip().lower()
        if key == "content-disposition":
            kind, _, rest = value.strip().partition(";")
            if kind.strip().lower() != "form-data":
                raise BodyError("a multipart part is not form-data")
            disposition = header_params(rest)
        elif key == "content-type":
            content_type = media_type(value)[0]
    if disposition is None or "name" not in disposition:
        raise BodyError("a multipart part has no Content-Disposition name")
    return disposition["name"], content_type, disposition.get("filename")


def _part_text(content_type: str | None, data: bytes, filename: str | None, prop: Shape) -> Any:
    if content_type is not None and kind_of(content_type) == "json":
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise BodyError("a JSON multipart part is not valid JSON") from None
    if filename is not None or (content_type is not None and not content_type.startswith("text/")):
        return data.decode("latin-1")  # binary: length in bytes is what maxLength sees
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("a text multipart part is not valid UTF-8") from None
    if "object" in prop.types and "string" not in prop.types:
        return _json_field(text)
    return text


__all__ = ["BodyError", "ParamError", "kind_of", "media_type", "parse_form", "parse_json", "parse_multipart"]
