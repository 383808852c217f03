"""Bounded normalisation: the distinct views of one input value that the matcher inspects.

Attackers hide payloads behind encodings a backend will undo (``%2527`` is ``'`` after two
URL-decodings, ``&#x3c;`` is ``<`` in HTML, ``\\u0027`` is ``'`` in JSON or JavaScript,
``/**/`` is a space to MySQL). Rather than guess which decoding the backend applies, we
inspect every view reachable by a small, fixed number of decoding passes. Each pass is a
linear scan with ``str`` methods or a stdlib decoder (no Python ``re`` over request data),
and every view is capped at :data:`MAX_VIEW_CHARS`, so the work per value is bounded.
"""

from __future__ import annotations

import binascii
import html
import html.entities
import unicodedata
from typing import Final
from urllib.parse import unquote_to_bytes

#: No view longer than this is produced; longer values are inspected in windows (see
#: :func:`windows`).
MAX_VIEW_CHARS: Final = 16_384
#: Windows overlap by this much so a payload straddling a window edge is still whole in one.
WINDOW_OVERLAP: Final = 512
#: At most this many views per value (the raw value included).
MAX_VIEWS: Final = 24
#: Repeated URL-decoding stops after this many passes.
MAX_URL_PASSES: Final = 3
#: Base64 candidates shorter than this are not decoded (short tokens decode to noise).
MIN_BASE64_CHARS: Final = 8

_B64_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=")
_HEX: Final = frozenset("0123456789abcdefABCDEF")
#: UUIDs, hashes and trace IDs: valid base64 alphabet, never base64 of text.
_HEXDASH: Final = frozenset("0123456789abcdefABCDEF-")
#: Control characters that browsers and shells drop or that C code treats as terminators.
_DROP_TABLE: Final = {c: None for c in (*range(0, 9), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)}
_SHELL_QUOTE_CHARS: Final = "'\"\\"
#: Quote removal only matters where a shell could be reached (a separator or a path).
_SHELL_CONTEXT_CHARS: Final = ";|&`$/(\n"
_CONTROLS: Final = frozenset(chr(c) for c in _DROP_TABLE)
_PRINTABLE_EXTRA: Final = frozenset("\t\r\n")
#: A printable ASCII value with none of these characters has no view but itself (and base64).
_TRIGGER_CHARS: Final = "%+&\\<'\""
_TRIGGER_CHARS_BUT_APOSTROPHE: Final = "%+&\\<\""
#: Shell syntax that is not a trigger, and the apostrophe: all the shortcuts of views() allow.
_QUIET_MARKS: Final = b"';|`$/("
#: The apostrophe as a byte value (tested with ``in`` on bytes).
_QUOTE: Final = ord("'")
#: Every byte but those views() looks at: triggers, shell syntax, "*" and "{" (of "/*" and
#: "${"), control characters (the value is then not printable) and DEL.
_UNREMARKABLE: Final = bytes(
    b for b in range(0x20, 0x100) if b != 0x7F and chr(b) not in _TRIGGER_CHARS + _SHELL_CONTEXT_CHARS + "*{"
)


def windows(value: str, size: int = MAX_VIEW_CHARS) -> list[str]:
    """Split ``value`` into overlapping windows of at most ``size`` characters.

    A long value is inspected window by window, so the cost stays linear in its length
    and no single decoding pass ever works on more than ``size`` characters.
    """
    if len(value) <= size:
        return [value]
    step = size - WINDOW_OVERLAP
    return [value[i : i + size] for i in range(0, len(value) - WINDOW_OVERLAP, step)]


def _repair_overlong(data: bytes) -> bytes:
    """Rewrite overlong UTF-8 encodings of ASCII (``C0 AE`` for ``.``) as the ASCII byte.

    Old decoders accepted them; modern ones turn them into U+FFFD, which would hide the
    ``../`` an overlong sequence smuggles past a naive filter.
    """
    if data.isascii():
        return data
    # Only C0, C1 and E0 lead such a form. Most non-ASCII text has none or few: jump from
    # one to the next with bytes.find (a loop over every byte of a long value costs
    # milliseconds per pass); only where they are dense is every byte looked at.
    leads = data.count(b"\xc0") + data.count(b"\xc1") + data.count(b"\xe0")
    if not leads:
        return data
    if leads * 16 > len(data):
        return _repair_each_byte(data)
    found = [data.find(lead) for lead in _OVERLONG_LEADS]
    out = bytearray()
    i = 0
    n = len(data)
    while True:
        for k in range(3):
            if 0 <= found[k] < i:
                found[k] = data.find(_OVERLONG_LEADS[k], i)
        j = min([p for p in found if p >= 0], default=-1)
        if j < 0:
            out += data[i:]
            return bytes(out)
        out += data[i:j]
        b = data[j]
        if b != 0xE0 and j + 1 < n and 0x80 <= data[j + 1] <= 0xBF:
            out.append(((b & 0x1F) << 6) | (data[j + 1] & 0x3F))
            i = j + 2
        elif b == 0xE0 and j + 2 < n and 0x80 <= data[j + 1] <= 0x81 and 0x80 <= data[j + 2] <= 0xBF:
            out.append(((data[j + 1] & 0x3F) << 6) | (data[j + 2] & 0x3F))
            i = j + 3
        else:
            out.append(b)
            i = j + 1


_OVERLONG_LEADS: Final = (b"\xc0", b"\xc1", b"\xe0")


def _repair_each_byte(data: bytes) -> bytes:
    """:func:`_repair_overlong` by a loop over every byte."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        b = data[i]
        if b in (0xC0, 0xC1) and i + 1 < n and 0x80 <= data[i + 1] <= 0xBF:
            out.append(((b & 0x1F) << 6) | (data[i + 1] & 0x3F))
            i += 2
            continue
        if b == 0xE0 and i + 2 < n and 0x80 <= data[i + 1] <= 0x81 and 0x80 <= data[i + 2] <= 0xBF:
            out.append(((data[i + 1] & 0x3F) << 6) | (data[i + 2] & 0x3F))
            i += 3
            continue
        out.append(b)
        i += 1
    return bytes(out)


def url_decode(value: str) -> str:
    """One URL-decoding pass (``%XX`` and ``+``), repairing overlong UTF-8 sequences.

    Also decodes the non-standard ``%uXXXX`` form that IIS accepts.
    """
    if "%u" in value or "%U" in value:
        value = _decode_percent_u(value)
    text = value.replace("+", " ") if "+" in value else value
    try:
        raw = unquote_to_bytes(text)
    except UnicodeEncodeError:
        # A lone surrogate (left by a decoded JS ``\ud800`` escape) has no UTF-8 form.
        raw = unquote_to_bytes(without_surrogates(text))
    return _repair_overlong(raw).decode("utf-8", "replace")


def without_surrogates(value: str) -> str:
    """``value`` with surrogate pairs joined and each lone surrogate replaced by U+FFFD, as
    a UTF-16 runtime (JavaScript, Java) converting the text to UTF-8 would."""
    return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _decode_percent_u(value: str) -> str:
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        j = value.find("%", i)
        if j < 0:
            out.append(value[i:])
            break
        out.append(value[i:j])
        if j + 5 < n and value[j + 1] in "uU" and all(c in _HEX for c in value[j + 2 : j + 6]):
            out.append(chr(int(value[j + 2 : j + 6], 16)))
            i = j + 6
        else:
            out.append("%")
            i = j + 1
    return "".join(out)


#: Characters some runtimes read as a dot, slash or backslash: NFKC folds the fullwidth and
#: small forms, not these (IIS and Java's "best fit" code pages map them to ASCII).
_PATH_LOOKALIKES: Final = {
    "\u2024": ".",  # one dot leader
    "\ufe52": ".",  # small full stop
    "\uff0e": ".",  # fullwidth full stop
    "\u2215": "/",  # division slash
    "\u2044": "/",  # fraction slash
    "\u29f8": "/",  # big solidus
    "\uff0f": "/",  # fullwidth solidus
    "\u2216": "\\",  # set minus
    "\u29f9": "\\",  # big reverse solidus
    "\ufe68": "\\",  # small reverse solidus
    "\uff3c": "\\",  # fullwidth reverse solidus
}
PATH_LOOKALIKE_CHARS: Final = frozenset(_PATH_LOOKALIKES)
_PATH_LOOKALIKE_TABLE: Final = str.maketrans(_PATH_LOOKALIKES)
_PATH_CODES: Final = {0x2E: ".", 0x2F: "/", 0x5C: "\\"}
#: A "hex digit" as IIS's old decoder read it: any letter, 'g' being 16 and 'z' 35, so
#: ``%bg%qf`` is the bytes C0 AF (an overlong "/") and ``%c0%9v`` the same.
_LAX_NIBBLE: Final = {c: int(c, 36) for c in "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"}
#: Lead byte of a UTF-8 sequence (overlong forms included) -> (continuation bytes, payload mask).
_UTF8_LEADS: Final = {
    **{b: (1, 0x1F) for b in range(0xC0, 0xE0)},
    **{b: (2, 0x0F) for b in range(0xE0, 0xF0)},
    **{b: (3, 0x07) for b in range(0xF0, 0xF8)},
    **{b: (4, 0x03) for b in range(0xF8, 0xFC)},
    **{b: (5, 0x01) for b in range(0xFC, 0xFE)},
}


def _lax_byte(value: str, j: int) -> int:
    """The byte of the escape ``%XY`` at ``value[j]`` read as IIS did (-1 if none)."""
    if j + 2 >= len(value) or value[j] != "%":
        return -1
    hi = _LAX_NIBBLE.get(value[j + 1], -1)
    lo = _LAX_NIBBLE.get(value[j + 2], -1)
    if hi < 0 or lo < 0:
        return -1
    return (hi * 16 + lo) & 0xFF


def _escaped_path_char(value: str, j: int) -> tuple[str, int]:
    """The dot, slash or backslash an escape at ``value[j]`` (a '%') stands for, however
    it is written, and where the escape ends; ``("", j)`` when it is something else.

    Written as ``%uXXXX`` (of the ASCII character or a look-alike), as a lax ``%XY``, or as
    a UTF-8 sequence of such escapes, overlong or not (``%c0%ae``, ``%e0%80%af``,
    ``%f0%80%80%af``, ``%fc%80%80%80%80%ae``): decoders of old and lenient servers mask
    the bits of each byte without checking them, so neither do we."""
    n = len(value)
    if j + 5 < n and value[j + 1] in "uU":
        digits = value[j + 2 : j + 6]
        if all(h in _HEX for h in digits):
            char = chr(int(digits, 16))
            mapped = _PATH_CODES.get(ord(char)) or _PATH_LOOKALIKES.get(char, "")
            return (mapped, j + 6) if mapped else ("", j)
    lead = _lax_byte(value, j)
    if lead < 0:
        return "", j
    if lead in _PATH_CODES:
        return _PATH_CODES[lead], j + 3
    shape = _UTF8_LEADS.get(lead)
    if shape is None:
        return "", j
    count, mask = shape
    code = lead & mask
    pos = j + 3
    for _ in range(count):
        byte = _lax_byte(value, pos)
        if byte < 0:
            return "", j
        code = (code << 6) | (byte & 0x3F)
        pos += 3
    mapped = _PATH_CODES.get(code, "")
    return (mapped, pos) if mapped else ("", j)


def path_view(value: str) -> str:
    """``value`` with every encoded or look-alike dot, slash and backslash written as one.

    A traversal needs only those three characters, and each has a dozen spellings that
    some server on the way decodes (overlong UTF-8, ``%u``, IIS's lax hex digits, Unicode
    look-alikes). Everything else stays as it is, so this view differs from the value
    only where a path separator was hidden: it adds no other text for the rules to see.
    One linear scan; escapes of anything else are copied, not decoded."""
    if not value.isascii() and not PATH_LOOKALIKE_CHARS.isdisjoint(value):
        value = value.translate(_PATH_LOOKALIKE_TABLE)
    if "%" not in value:
        return value
    out: list[str] = []
    i = 0
    while True:
        j = value.find("%", i)
        if j < 0:
            out.append(value[i:])
            return "".join(out)
        out.append(value[i:j])
        char, end = _escaped_path_char(value, j)
        if char:
            out.append(char)
            i = end
        else:
            out.append("%")
            i = j + 1


def js_unescape(value: str) -> str:
    """Decode JavaScript/JSON/C escapes: ``\\uXXXX``, ``\\u{X..}``, ``\\xXX``, octal ``\\NNN``.

    Unknown escapes keep their character (``\\<`` becomes ``<``), as a JS engine does.
    """
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        j = value.find("\\", i)
        if j < 0 or j + 1 >= n:
            out.append(value[i:])
            break
        out.append(value[i:j])
        c = value[j + 1]
        if c in "uU" and j + 5 < n and all(h in _HEX for h in value[j + 2 : j + 6]):
            out.append(chr(int(value[j + 2 : j + 6], 16)))
            i = j + 6
        elif c in "uU" and j + 2 < n and value[j + 2] == "{":
            end = value.find("}", j + 3, j + 10)
            digits = value[j + 3 : end] if end > 0 else ""
            if digits and all(h in _HEX for h in digits) and int(digits, 16) <= 0x10FFFF:
                out.append(chr(int(digits, 16)))
                i = end + 1
            else:
                out.append(c)
                i = j + 2
        elif (
            c in "xX"
            and j + 3 < n + 1
            and all(h in _HEX for h in value[j + 2 : j + 4])
            and (len(value[j + 2 : j + 4]) == 2)
        ):
            out.append(chr(int(value[j + 2 : j + 4], 16)))
            i = j + 4
        elif "0" <= c <= "7":
            k = j + 1
            while k < n and k < j + 4 and "0" <= value[k] <= "7":
                k += 1
            code = int(value[j + 1 : k], 8)
            out.append(chr(code) if code < 256 else value[j + 1 : k])
            i = k
        elif c == "n":
            out.append("\n")
            i = j + 2
        elif c == "r":
            out.append("\r")
            i = j + 2
        elif c == "t":
            out.append("\t")
            i = j + 2
        else:
            out.append(c)
            i = j + 2
    return "".join(out)


def strip_sql_comments(value: str, replacement: str) -> str:
    """Replace ``/* ... */`` comments by ``replacement``; MySQL ``/*! ... */`` keep their body.

    An unterminated comment runs to the end of the value, as in the SQL engines.
    """
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        j = value.find("/*", i)
        if j < 0:
            out.append(value[i:])
            break
        out.append(value[i:j])
        end = value.find("*/", j + 2)
        body_end = n if end < 0 else end
        if j + 2 < n and value[j + 2] == "!":
            # Versioned comment: MySQL runs the body (after an optional version number).
            k = j + 3
            while k < body_end and value[k].isdigit():
                k += 1
            out.append(" ")
            out.append(value[k:body_end])
            out.append(" ")
        else:
            out.append(replacement)
        i = n if end < 0 else end + 2
    return "".join(out)


def collapse_whitespace(value: str) -> str:
    """Map every whitespace character to a space and squeeze runs of spaces to one."""
    # str.split() already splits at every Unicode whitespace character (tabs, NBSP, U+2028...).
    return " ".join(value.split())


def strip_short_tags(value: str) -> str:
    """Drop tiny tags (``<x>``, ``<b>``) that a filter would delete, rejoining what they split."""
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        j = value.find("<", i)
        if j < 0:
            out.append(value[i:])
            break
        end = value.find(">", j + 1, j + 5)
        if end > j + 1 and value[j + 1 : end].isalpha():
            out.append(value[i:j])
            i = end + 1
        else:
            out.append(value[i : j + 1])
            i = j + 1
    return "".join(out)


def collapse_lookups(value: str) -> str:
    """Resolve Log4j-style nested lookups that only rebuild letters.

    ``${::-j}`` and ``${lower:j}`` become ``j``, so ``${${::-j}ndi:`` reads ``${jndi:``.
    """
    for _ in range(8):
        start = value.find("${")
        found = False
        while start >= 0:
            end = value.find("}", start + 2)
            if end < 0:
                break
            inner = value[start + 2 : end]
            if "${" in inner:
                start = value.find("${", start + 2)
                continue
            sep = inner.rfind(":-")
            head, _, tail = inner.partition(":")
            if sep >= 0:
                repl = inner[sep + 2 :]
            elif head.lower() in ("lower", "upper") and tail:
                repl = tail
            else:
                start = value.find("${", end)
                continue
            value = value[:start] + repl + value[end + 1 :]
            found = True
            start = value.find("${", start)
        if not found:
            break
    return value


def truncate_wide(value: str) -> str:
    """Keep only the low byte of non-Latin-1 characters whose low byte is syntax.

    Some runtimes write U+560D as the byte 0x0D, turning ``嘍嘊`` into CR LF.
    """
    if len(value.encode("latin-1", "ignore")) == len(value):
        return value  # nothing wide (the common case: ASCII and Latin-1 text; a copy in C)
    if _WIDE_BMP.isdisjoint(value) and len(value.encode("utf-16-le", "surrogatepass")) == 2 * len(value):
        return value  # wide, but all in the BMP and none would change (set tests in C, not a loop)
    return "".join(chr(ord(c) & 0xFF) if ord(c) > 0xFF and (ord(c) & 0xFF) in _WIDE_SYNTAX else c for c in value)


_WIDE_SYNTAX: Final = frozenset(b"\r\n<>'\"/\\;")
#: The characters of the Basic Multilingual Plane that :func:`truncate_wide` changes.
_WIDE_BMP: Final = frozenset(chr(high << 8 | low) for high in range(1, 256) for low in _WIDE_SYNTAX)
#: The format characters (category Cf) of the Basic Multilingual Plane (see :func:`_nfkc`).
_FORMAT_BMP: Final = frozenset(c for c in map(chr, range(0x10000)) if unicodedata.category(c) == "Cf")


#: Named character references a browser also decodes without the ';' ("&amp", "&lt"...).
_LEGACY_ENTITIES: Final = frozenset(name for name in html.entities.html5 if not name.endswith(";"))
_LONGEST_ENTITY: Final = max(len(name) for name in html.entities.html5)


def _may_have_entity(value: str) -> bool:
    """Whether :func:`html.unescape` could change ``value``: some '&' starts a numeric
    reference, a name closed by ';', or a legacy name. Most '&'s in API values separate
    query parameters ("a=1&b=2"), and ``html.unescape`` costs microseconds."""
    start = value.find("&")
    while start >= 0:
        nxt = value[start + 1 : start + 2]
        if nxt == "#":
            return True
        end = start + 1
        stop = min(len(value), start + 1 + _LONGEST_ENTITY)
        while end < stop and value[end].isalnum():
            end += 1
        if end > start + 1:
            if value[end : end + 1] == ";":
                return True
            name = value[start + 1 : end]
            if any(name[:k] in _LEGACY_ENTITIES for k in range(2, len(name) + 1)):
                return True
        start = value.find("&", start + 1)
    return False


def contains_any(text: str, chars: str) -> bool:
    """Whether some character of ``chars`` (a few) occurs in ``text``. Each ``in`` is a
    memchr-like scan in C; ``frozenset.isdisjoint(text)`` hashes every character of the
    text, several times slower on the long, clean values most requests carry."""
    for c in chars:  # noqa: SIM110 - a plain loop compiles to C; any() over a generator does not
        if c in text:
            return True
    return False


def _printable(text: str) -> bool:
    """Mostly printable: a stray NUL or control byte (a classic evasion) is tolerated."""
    if text.isprintable():
        return True
    odd = sum(1 for c in text if not c.isprintable() and c not in _PRINTABLE_EXTRA)
    return odd <= max(1, len(text) // 20)


def base64_text(value: str) -> str | None:
    """The text ``value`` encodes in (URL-safe or standard, padded or not) base64, if it is
    printable text with at least one non-alphanumeric character; otherwise ``None``.

    Random tokens and IDs also look like base64, but they decode to binary noise.
    """
    s = value.strip()
    if len(s) < MIN_BASE64_CHARS or not _B64_CHARS.issuperset(s) or _HEXDASH.issuperset(s):
        return None
    s = s.rstrip("=")
    if len(s) % 4 == 1:
        return None
    if "-" in s or "_" in s:
        s = s.replace("-", "+").replace("_", "/")
    try:
        raw = binascii.a2b_base64(s + "=" * (-len(s) % 4), strict_mode=False)
    except (binascii.Error, ValueError):
        return None
    # Most candidates (paths, MIME types, words) decode to binary: reject those without
    # raising (an exception costs more than the rest of this function).
    text = raw.decode("utf-8", "replace")
    if "\ufffd" in text or len(text) < 4 or not _printable(text) or text.isalnum():
        return None
    return text


def _nfkc(value: str) -> str:
    text = unicodedata.normalize("NFKC", value)
    # Format characters (BOM, zero-width joiners) are invisible and ignored by browsers.
    # (A printable string has no format character: skip the per-character pass.)
    # Nor does text whose characters are all in the BMP and none of them a BMP format
    # character: a set test in C rather than a category lookup per character.
    if (
        not text.isascii()
        and not text.isprintable()
        and (max(text) > "\uffff" or not _FORMAT_BMP.isdisjoint(text))
    ):
        text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return text.casefold()


def views(value: str, *, decode_base64: bool = True) -> list[str]:
    """Every distinct view of ``value`` worth matching, the raw value first.

    The decoding passes (URL, HTML entities, JS escapes) are applied repeatedly, in any
    order, up to :data:`MAX_URL_PASSES` rounds; each decoded view then also gets the
    canonicalising passes (NFKC + case folding, SQL comment removal, control-character
    removal, whitespace collapsing, shell unquoting, Log4j lookup collapsing). A value that
    is base64 of printable text contributes the views of its decoded text too.
    ``value`` should be no longer than :data:`MAX_VIEW_CHARS` (see :func:`windows`).
    """
    if len(value) > MAX_VIEW_CHARS:
        value = value[:MAX_VIEW_CHARS]
    if value.isascii() and "  " not in value:
        # One pass in C keeps only the characters the tests below look at (a dozen scans
        # of the value otherwise). When what is left is apostrophes and shell syntax at
        # most, the value is printable, has no "/*" or "${", and the two shortcuts below
        # apply, decided here at once; anything else takes those tests.
        marks = value.encode("ascii").translate(None, _UNREMARKABLE)
        if not marks.translate(None, _QUIET_MARKS):
            if _QUOTE not in marks:  # a byte's value: bytes 'in' bytes costs a TypeError (routing/target.py)
                return _plain_views(value, decode_base64)
            if marks.count(b"'") != len(marks):
                return [value, value.replace("'", "")]
            return [value]
    if (
        value.isascii()
        and value.isprintable()  # no control character (nor DEL)
        and "  " not in value
        and "/*" not in value
        and "${" not in value
    ):
        if not contains_any(value, _TRIGGER_CHARS):
            return _plain_views(value, decode_base64)
        if not contains_any(value, _TRIGGER_CHARS_BUT_APOSTROPHE):
            # Prose with an apostrophe ("O'Brien", "don't"): nothing to decode, and it is not
            # base64; of the canonical passes only shell unquoting can apply.
            if contains_any(value, _SHELL_CONTEXT_CHARS):
                return [value, value.replace("'", "")]
            return [value]
    elif (
        not value.isascii()
        and not contains_any(value, _TRIGGER_CHARS_BUT_APOSTROPHE)
        and "  " not in value
        and "/*" not in value
        and "${" not in value
        and value.isprintable()
        and _folds_to_itself(value)
    ):
        # Prose in other languages ("Dónal", "Zürich", "São Paulo"): the canonical passes
        # would only add the value with its ASCII letters lowered (and that value unquoted),
        # which matches exactly what the value itself matches (see _folds_to_itself).
        if "'" in value and contains_any(value, _SHELL_CONTEXT_CHARS):
            return [value, value.replace("'", "")]
        return [value]
    return _all_views(value, decode_base64)


def _plain_views(value: str, decode_base64: bool) -> list[str]:
    """:func:`views` of a printable ASCII value with no decoding, quoting or markup character
    (most API values): no pass would change anything but base64 decoding."""
    # Spaces around base64 do not stop a decoder (nor base64_text, which strips them).
    if decode_base64 and len(value) >= MIN_BASE64_CHARS and " " not in value.strip(" "):
        text = base64_text(value)
        if text is not None:
            return [value, *views(text, decode_base64=False)][:MAX_VIEWS]
    return [value]


def _folds_to_itself(value: str) -> bool:
    """Whether every canonical view of ``value`` (printable, with no decoding or markup
    character) differs from it only in the case of ASCII letters, so none is worth matching.

    Such a view matches what ``value`` matches: the signature database is caseless for
    ASCII, and libinjection folds ASCII case except in three places, all excluded here
    (``\\N``, which needs a backslash; PostgreSQL ``$tag$`` quoting; ``sp_password``).
    Non-ASCII characters must stay as they are: libinjection reads the byte 0xA0, which
    "à" has and "À" has not, as whitespace.
    """
    if value[:1] == " " or value[-1:] == " " or "$" in value:
        return False  # whitespace collapsing would trim it; "$" for libinjection
    # Latin-1 text (a copy in C tells; most prose with accents) holds no look-alike, all
    # above U+00FF, and nothing truncate_wide changes: two passes over it spared.
    latin1 = len(value.encode("latin-1", "ignore")) == len(value)
    if not latin1 and not PATH_LOOKALIKE_CHARS.isdisjoint(value):
        return False  # a look-alike slash: the path view writes it as one
    if not unicodedata.is_normalized("NFKC", value):
        return False
    folded = value.casefold()
    # bytes.lower() lowers ASCII letters only: equal iff folding changed nothing else.
    if value.encode("utf-8").lower() != folded.encode("utf-8"):
        return False
    return "sp_password" not in folded and (latin1 or truncate_wide(value) == value)


def _all_views(value: str, decode_base64: bool = True) -> list[str]:
    """:func:`views` without its shortcuts (``value`` already cut to :data:`MAX_VIEW_CHARS`)."""
    seen: dict[str, None] = {value: None}
    decoded = [value]
    frontier = [value]
    for _ in range(MAX_URL_PASSES):
        nxt: list[str] = []
        for v in frontier:
            if "%" in v:
                _add(url_decode(v), seen, nxt)
            elif "+" in v:
                _add(v.replace("+", " "), seen, nxt)
            if "&" in v and _may_have_entity(v):
                _add(html.unescape(v), seen, nxt)
            if "\\" in v:
                _add(js_unescape(v), seen, nxt)
        if not nxt:
            break
        decoded.extend(nxt)
        frontier = nxt
    # Hidden path separators, in the value and in each decoding of it ("%25c0%25af").
    for v in list(decoded):
        if "%" in v or (not v.isascii() and not PATH_LOOKALIKE_CHARS.isdisjoint(v)):
            _add(path_view(v), seen, decoded)
    # A fully decoded chain combines every decoder, whatever the order they were needed in.
    for v in decoded[1:]:
        _canonical_views(v, seen)
    _canonical_views(value, seen)
    if decode_base64:
        # Base64 may itself be URL-encoded ("%20" around it, "%3D" padding): each decoded view.
        for candidate in decoded:
            text = base64_text(candidate)
            if text is not None:
                for sub in views(text, decode_base64=False):
                    if len(seen) >= MAX_VIEWS:
                        break
                    seen.setdefault(sub, None)
    out = list(seen)
    return out[:MAX_VIEWS]


def _add(view: str, seen: dict[str, None], out: list[str]) -> None:
    if view not in seen and len(seen) < MAX_VIEWS:
        view = view[:MAX_VIEW_CHARS]
        seen[view] = None
        out.append(view)


def _canonical_views(v: str, seen: dict[str, None]) -> None:
    """Add the canonical forms of one decoded view."""
    sink: list[str] = []
    base = v
    if not v.isascii():
        base = _nfkc(v)
        _add(base, seen, sink)
        wide = truncate_wide(v)
        if wide != v:
            _add(wide, seen, sink)
    if "/*" in base:
        _add(strip_sql_comments(base, " "), seen, sink)
        _add(strip_sql_comments(base, ""), seen, sink)
    # (str.isprintable is a C loop; the set test only runs when something is unprintable.)
    if not base.isprintable() and not _CONTROLS.isdisjoint(base):
        base = base.translate(_DROP_TABLE)
        _add(base, seen, sink)
    if "\t" in base or "\n" in base or "\r" in base:
        _add(base.replace("\t", "").replace("\n", "").replace("\r", ""), seen, sink)
    if "  " in base or not base.isascii() or "\t" in base or "\n" in base or "\r" in base:
        _add(collapse_whitespace(base), seen, sink)
    if "<" in base and ">" in base:
        _add(strip_short_tags(base), seen, sink)
    if "${" in base:
        _add(collapse_lookups(base), seen, sink)
    if contains_any(base, _SHELL_QUOTE_CHARS) and contains_any(base, _SHELL_CONTEXT_CHARS):
        # Three replace() calls cost a fraction of str.translate with a mapping.
        _add(base.replace("'", "").replace('"', "").replace("\\", ""), seen, sink)
