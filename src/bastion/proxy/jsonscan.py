"""JSON limits checked on a request body's bytes before any stage parses it.

A parser builds the whole document before anything can look at it: a 10 MB array of small
numbers is millions of objects, a 1M-key object a dictionary of a million entries. So the
bounds (depth, object keys, array elements, string and number lengths) are checked here on
the bytes, with C-speed passes (counts, translations, regular expressions) and a few compiled
steps, and a body over one of them is refused before a stage builds it. Most bodies settle on
the first look, which reads little of them: a body no longer than the key or element limit is
within it uncounted, and numbers are looked at one byte in every ``max_json_number_chars + 1``.
Only a body near a bound is read with its strings taken out.

Every count is of the document as a whole: ``max_json_keys`` bounds the members of all its
objects together, ``max_json_array_items`` the elements of all its arrays together (what a
parser allocates), the string and number limits the longest single one.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from bastion.proxy.bounds import Bounds

if TYPE_CHECKING:  # only a type here: importing bastion.config would import every stage
    from bastion.config.model import Limits
    from bastion.types import Request

# The constants are Final: compiled (mypyc), a module name that is not is looked up in the
# module's dictionary on every use.
#: Bytes of the body split on quotes at once (the pieces of one window are alive together).
#: Not Final: the tests set it to a few bytes, to make strings straddle windows.
_WINDOW = 64 * 1024
_WHITESPACE: Final = b" \t\r\n"
#: Every byte but brackets: deleting them leaves the document's nesting.
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_NOT_QUOTES_OR_BRACKETS: Final = bytes(b for b in range(256) if b not in b'[]{}"')
#: An empty pair of brackets: removing every one in one pass takes one level off the nesting.
_INNERMOST: Final = re.compile(rb"\[\]|\{\}")

#: Reasons (see ``bastion.proxy.limits``) and what the client is told.
TOO_DEEP: Final = "json.too_deep"
TOO_MANY_KEYS: Final = "json.too_many_keys"
TOO_MANY_ITEMS: Final = "json.too_many_items"
STRING_TOO_LONG: Final = "json.string_too_long"
NUMBER_TOO_LONG: Final = "json.number_too_long"


#: Number characters to ``0``, every other byte to a space.
_AS_DIGITS: Final = bytes(0x30 if b in b"0123456789.eE+-" else 0x20 for b in range(256))
_DIGIT: Final = 0x30


def _has_long_number(data: bytes, longest: int) -> bool:
    """Whether ``data`` has a run of number characters longer than ``longest``.

    Such a run covers one of every ``longest + 1`` bytes, so only those are looked at; where
    one is a number character, its run is measured both ways, no further than it takes to
    tell. Text has few number characters, in short runs: a 1 KB body is settled in about
    ten looks, where translating and searching it read every byte twice. (A body made of
    runs just short of the limit is read about once, byte by byte.)"""
    size = len(data)
    step = longest + 1
    for at in range(longest, size, step):
        if _AS_DIGITS[data[at]] != _DIGIT:
            continue
        start, low = at, max(at - longest, 0)
        while start > low and _AS_DIGITS[data[start - 1]] == _DIGIT:
            start -= 1
        end, high = at + 1, min(start + step, size)
        while end < high and _AS_DIGITS[data[end]] == _DIGIT:
            end += 1
        if end - start >= step:
            return True
    return False


def is_json(content_type: str | None, body: bytes) -> bool:
    """Whether a stage would parse ``body`` as JSON: a JSON media type (``application/json``,
    ``*/*+json``), or none at all and a body that starts like a document."""
    if content_type is None:
        return body.lstrip(_WHITESPACE)[:1] in (b"{", b"[")
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def over_body_json_limits(request: Request, limits: Bounds) -> tuple[str, str] | None:
    """The reason and detail of the first JSON limit ``request``'s buffered body is over, if
    a stage will parse it as JSON; measured on its bytes before any stage builds a document
    (a compressed body's bytes say nothing: the stage that inflates it bounds it)."""
    body = request.body
    if body and is_json(request.header("content-type"), body) and request.header("content-encoding") is None:
        return over_json_bounds(body, limits)
    return None


def over_json_limits(body: bytes, limits: Limits) -> tuple[str, str] | None:
    """:func:`over_json_bounds` with the limits of a settings model (copied on each call:
    per request, the proxy passes the route's :class:`~bastion.proxy.bounds.Bounds`)."""
    return over_json_bounds(body, Bounds(limits))


def over_json_bounds(body: bytes, limits: Bounds) -> tuple[str, str] | None:
    """The reason and detail of the first JSON limit ``body`` is over, or ``None``.

    Malformed JSON is not this function's business (the stage that parses it refuses it);
    bytes that are not JSON are only ever measured, never over-counted in a way that lets
    a document past a limit: every first-pass count is an upper bound of the exact one."""
    size = len(body)
    opens = body.count(b"[") + body.count(b"{")
    max_string = limits.max_json_string_bytes
    longest_number = limits.max_json_number_chars
    depth_checked = opens <= limits.max_json_depth
    if not depth_checked:
        brackets = _structural_brackets(body)
        if brackets is not None:
            if _deeper_than(brackets, limits.max_json_depth):
                return TOO_DEEP, f"The JSON body is nested more than {limits.max_json_depth} levels deep."
            depth_checked = True
    # A body has no more colons, nor commas and brackets together, than bytes: one no longer
    # than the key or element limit is within it uncounted (a pass over it saved).
    max_keys, max_items = limits.max_json_keys, limits.max_json_array_items
    if (
        depth_checked
        and (size <= max_keys or body.count(b":") <= max_keys)
        and (size <= max_items or body.count(b",") + opens <= max_items)
        and size <= max_string + 2
        and not _has_long_number(body, longest_number)
    ):
        return None  # every bound holds, even counting what is inside strings
    bare, longest = _without_strings(body)
    keys = bare.count(b":")
    if keys > limits.max_json_keys:
        return TOO_MANY_KEYS, f"The JSON body has more than {limits.max_json_keys} object keys."
    containers = bare.count(b"[") + bare.count(b"{")
    empty = bare.count(b"[]") + bare.count(b"{}")
    # Every value but the document itself follows a comma or opens a non-empty container;
    # the ones that are not object members are array elements.
    items = bare.count(b",") + containers - empty - keys
    if items > limits.max_json_array_items:
        return TOO_MANY_ITEMS, f"The JSON body has more than {limits.max_json_array_items} array elements."
    depth = limits.max_json_depth
    if not depth_checked and containers > depth and _deeper_than(bare.translate(None, _NOT_BRACKETS), depth):
        return TOO_DEEP, f"The JSON body is nested more than {limits.max_json_depth} levels deep."
    if longest > max_string:
        return STRING_TOO_LONG, f"A string of the JSON body is longer than {max_string} bytes."
    if _has_long_number(bare, longest_number):
        return NUMBER_TOO_LONG, f"A number of the JSON body is longer than {limits.max_json_number_chars} characters."
    return None


def _without_strings(body: bytes) -> tuple[bytes, int]:
    """``body`` with every string replaced by ``""`` and whitespace removed, and the length
    of its longest string (as sent, escapes included).

    Escapes are first overwritten with two plain bytes each (``\\\\`` before ``\\"``, so
    that ``\\\\"`` still ends its string): every quote left delimits a string, and splitting
    on quotes alternates outside and inside. The body is split in windows that each start
    outside a string, so the pieces alive at once are a window's, whatever the body's size."""
    clean = body.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    outside: list[bytes] = []
    longest = 0
    start, size = 0, len(clean)
    while start < size:
        quote = clean.find(b'"', start + _WINDOW)
        if quote < 0:
            cut = size
        elif clean.count(b'"', start, quote) % 2:
            cut = quote + 1  # it closes a string: the window ends after it
        else:
            cut = quote  # it opens one: the window ends before it
        parts = clean[start:cut].split(b'"')
        outside.append(b'""'.join(parts[0::2]).translate(None, _WHITESPACE))
        inside = parts[1::2]
        if inside:
            longest = max(longest, max(map(len, inside)))
        start = cut
    return b"".join(outside), longest


def _structural_brackets(body: bytes) -> bytes | None:
    """The brackets of ``body`` outside its strings, in order, when no string holds one (as
    in nearly every document); ``None`` otherwise.

    Kept are quotes (escapes overwritten first) and brackets. A string without brackets is
    then two adjacent quotes, and removing adjacent pairs from the left pairs every opening
    quote with its own closing one; a quote left means some string holds a bracket."""
    clean = body.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    skeleton = clean.translate(None, _NOT_QUOTES_OR_BRACKETS).replace(b'""', b"")
    return None if b'"' in skeleton else skeleton


def _deeper_than(brackets: bytes, depth: int) -> bool:
    """Whether ``brackets`` (a document's brackets alone) nest deeper than ``depth``: each
    round removes the innermost pairs, so what is left after ``depth`` rounds is deeper (or
    unbalanced, which the parser would refuse anyway)."""
    for _ in range(depth):
        if not brackets:
            return False
        brackets = _INNERMOST.sub(b"", brackets)
    return bool(brackets)


__all__ = [
    "NUMBER_TOO_LONG",
    "STRING_TOO_LONG",
    "TOO_DEEP",
    "TOO_MANY_ITEMS",
    "TOO_MANY_KEYS",
    "is_json",
    "over_body_json_limits",
    "over_json_bounds",
    "over_json_limits",
]
