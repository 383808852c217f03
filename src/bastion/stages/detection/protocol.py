"""The ``protocol`` category: what a strict API gateway refuses in a request's headers and
encodings because an upstream would read it differently than the gateway's stages did.

The HTTP/1.1 core already refuses what breaks framing and routing (smuggling vectors, a
missing or invalid Host, versions other than 1.x, bodies on GET). These checks are the next
layer: well-framed requests whose headers or encodings ask the upstream for something the
gateway never authorised (a proxy, an unseen range), or carry a body the stages cannot read
as the upstream will (a content type that is not a media type, a charset other than the
ones APIs use, multipart part names that parsers split differently), or encode a character
in a form no standard client produces (overlong UTF-8, IIS ``%u``, a NUL) — the encodings
filters are evaded with. Each is a rule of its own (``17001``...), so a route that needs one
excludes it by ID; the whole category follows ``categories.protocol``.

Kept in plain functions over the request's headers and raw target: no pattern scan, one
pass over the headers, work only when a header of interest is present.
"""

from __future__ import annotations

from typing import Final

from bastion.types import Request

#: Headers no API client needs, each the vector of a known upstream misreading: ``Proxy``
#: becomes CGI's ``HTTP_PROXY`` (httpoxy), ``Request-Range`` is a pre-standard ``Range`` that
#: range limits do not see, ``If`` and ``Lock-Token`` drive WebDAV locking.
UNUSED_HEADERS: Final = frozenset({"proxy", "request-range", "if", "lock-token"})
#: Characters of an RFC 9110 token (media type, subtype and parameter names). ``str.strip``
#: with this set leaves nothing of a token: a set test in C, not a loop in Python.
_TCHARS: Final = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

# Rule IDs (described in rules.DETECTORS). Method override headers are the ``access``
# stage's (refused on every route unless ``method_override: allow``).
UNUSED_HEADER_RULE: Final = 17001
MEDIA_TYPE_RULE: Final = 17002
CHARSET_RULE: Final = 17003
PART_NAME_RULE: Final = 17004
ENCODING_RULE: Final = 17005
LEFTOVER_FILE_RULE: Final = 17006

#: Extensions of files that are on a server by accident, never as an API's resource: an
#: editor's or an admin's backup copy, a database or its dump (what scanners ask for).
LEFTOVER_EXTENSIONS: Final = frozenset(
    {"bak", "backup", "old", "orig", "save", "swp", "swo", "sql", "db", "sqlite", "sqlite3", "mdb", "rdb", "dbf"}
)


#: Content-Type values whose verdict an engine remembers: clients send the same few.
CONTENT_TYPES_REMEMBERED: Final = 256


class ProtocolChecks:
    """The protocol checks with one engine's settings, remembering the verdict on each
    ``Content-Type`` value it has read (bounded)."""

    __slots__ = ("_types", "charsets")

    def __init__(self, charsets: frozenset[str]) -> None:
        #: Allowed charsets, lower case.
        self.charsets = charsets
        self._types: dict[str, int] = {}

    def findings(self, request: Request) -> list[tuple[int, str, str]]:
        """``(rule ID, location, value)`` for each protocol rule ``request`` breaks: its
        headers, its path and raw target, and a form or multipart body."""
        found: list[tuple[int, str, str]] = []
        ctype = ""
        body = request.body
        for name, value in request.headers:
            if name in UNUSED_HEADERS:
                found.append((UNUSED_HEADER_RULE, f"header:{name}", value))
            elif name == "content-type":
                if not body and not value.strip():
                    # Some client libraries send an empty Content-Type on every request;
                    # without a body it declares nothing any parser reads.
                    continue
                ctype = ctype or value
                rule = self._content_type(value)
                if rule:
                    found.append((rule, "header:content-type", value))
            elif name == "accept" and "charset" in value.lower() and not accept_charsets_allowed(value, self.charsets):
                found.append((CHARSET_RULE, "header:accept", value))
        path = request.path
        if ("." in path or "~" in path) and leftover_file(path):
            found.append((LEFTOVER_FILE_RULE, "path", path))
        target = request.raw_target
        if "%" in target and encoding_problem(target):
            found.append((ENCODING_RULE, "target", target))
        if body and ctype:
            kind = ctype.lstrip()[:33].lower()
            if kind.startswith("multipart/"):
                found.extend(multipart_findings(body))
            elif kind.startswith("application/x-www-form-urlencoded") and b"%" in body:
                text = body.decode("latin-1")
                if encoding_problem(text):
                    found.append((ENCODING_RULE, "form", text))
        return found

    def _content_type(self, value: str) -> int:
        rule = self._types.get(value)
        if rule is None:
            rule = content_type_problem(value, self.charsets)
            if len(self._types) < CONTENT_TYPES_REMEMBERED:
                self._types[value] = rule
        return rule


def leftover_file(path: str) -> bool:
    """Whether a path segment names a backup copy (``index.php~``, ``app.py.bak``), a
    database or a dump (``users.db``, ``dump.rdb``, ``site.sql``): files a web server behind
    a catch-all route would hand out, which no API serves on purpose."""
    for segment in path.split("/"):
        if segment.endswith("~") and len(segment) > 1:
            return True
        dot = segment.rfind(".")
        if dot > 0 and segment[dot + 1 :].lower() in LEFTOVER_EXTENSIONS:
            return True
    return False


def media_type_params(value: str) -> list[tuple[str, str]] | None:
    """The parameters of a media type (names in lower case, values unquoted), or ``None``
    when ``value`` is not ``type/subtype *( OWS ";" OWS [ name=value ] )`` (RFC 9110
    8.3.1), names a parameter twice, or quotes a value holding a ``;`` (which parsers that
    split on ``;`` before unquoting read as two parameters)."""
    head, _, rest = value.partition(";")
    kind, slash, sub = head.strip().partition("/")
    if not slash or not kind or not sub or not _is_token(kind) or not _is_token(sub):
        return None
    params: list[tuple[str, str]] = []
    i, n = 0, len(rest)
    while i < n:
        if rest[i] in " \t;":  # whitespace, or an empty parameter ("text/plain;")
            i += 1
            continue
        eq = rest.find("=", i)
        if eq < 0:
            return None
        key = rest[i:eq].strip().lower()
        if not key or not _is_token(key) or any(k == key for k, _ in params):
            return None
        j = eq + 1
        while j < n and rest[j] in " \t":
            j += 1
        if j < n and rest[j] == '"':
            close = rest.find('"', j + 1)
            if close < 0 or ";" in rest[j + 1 : close]:
                return None
            val = rest[j + 1 : close]
            i = close + 1
            while i < n and rest[i] in " \t":
                i += 1
            if i < n and rest[i] != ";":
                return None  # text after the closing quote
        else:
            end = rest.find(";", j)
            i = n if end < 0 else end
            val = rest[j:i].strip()
        params.append((key, val))
    return params


def content_type_problem(value: str, charsets: frozenset[str]) -> int:
    """The protocol rule a ``Content-Type`` value breaks (0: none): not a media type
    (:func:`media_type_params`), a multipart type without a boundary, or a charset other
    than ``charsets``."""
    params = media_type_params(value)
    if params is None:
        return MEDIA_TYPE_RULE
    if value.lstrip()[:10].lower() == "multipart/" and not any(k == "boundary" and v for k, v in params):
        return MEDIA_TYPE_RULE  # RFC 2046 5.1.1: its parts cannot be found
    for key, val in params:
        if key == "charset" and val.strip("'").lower() not in charsets:
            return CHARSET_RULE
    return 0


def accept_charsets_allowed(value: str, charsets: frozenset[str]) -> bool:
    """Whether every ``charset`` parameter of an ``Accept`` value is one of ``charsets``
    (what the upstream would encode its answer in; others are how filters of the response
    are evaded)."""
    for element in value.split(","):
        for piece in element.split(";")[1:]:
            key, _, val = piece.partition("=")
            if key.strip().lower() == "charset" and val.strip().strip("\"'").lower() not in charsets:
                return False
    return True


def _is_token(text: str) -> bool:
    return not text.strip(_TCHARS)


def ambiguous_part_name(disposition: str) -> bool:
    """Whether a multipart part's ``Content-Disposition`` quotes a name or file name that
    parsers split or unescape differently: holding a ``"``-escape or backslash, an ``=``,
    or a ``;`` that does not end an HTML character reference (``&auml;``, ``&#228;``: what
    browsers send for characters outside the form's charset)."""
    i = disposition.find('"')
    while 0 <= i < len(disposition):
        close = disposition.find('"', i + 1)
        if close < 0:
            return True  # an unbalanced quote
        quoted = disposition[i + 1 : close]
        if "\\" in quoted or "=" in quoted or (";" in quoted and not _only_references(quoted)):
            return True
        i = disposition.find('"', close + 1)
    return False


def _only_references(text: str) -> bool:
    """Whether every ``;`` of ``text`` ends an HTML character reference."""
    start = 0
    while True:
        semi = text.find(";", start)
        if semi < 0:
            return True
        amp = text.rfind("&", start, semi)
        ref = text[amp + 1 : semi] if amp >= 0 else ""
        if not ref or not (ref.isalnum() or (ref[0] == "#" and ref[1:].isalnum() and len(ref) > 1)):
            return False
        start = semi + 1


def multipart_findings(body: bytes) -> list[tuple[int, str, str]]:
    """Protocol findings in a multipart body: each part whose name is ambiguous."""
    found: list[tuple[int, str, str]] = []
    lower = body.lower()
    at = lower.find(b"content-disposition:")
    while at >= 0:
        end = body.find(b"\n", at)
        line = body[at + 20 : len(body) if end < 0 else end].decode("latin-1").strip()
        if ambiguous_part_name(line):
            found.append((PART_NAME_RULE, "multipart-head", line))
            break
        at = lower.find(b"content-disposition:", at + 20)
    return found


#: Hex digits, to read percent-escapes.
_HEX: Final = "0123456789abcdefABCDEF"


def encoding_problem(raw: str) -> bool:
    """Whether a raw (still percent-encoded) target, form body or cookie encodes a character
    in a form no standard client produces: a NUL (``%00``: truncates in C upstreams), IIS's
    ``%uXXXX``, or an overlong or impossible UTF-8 sequence (``%c0%ae`` for ``.``, a byte
    from ``%f5`` up followed by a continuation byte): the encodings used to slip ``../`` and
    quotes past filters. A lone byte above 0x7f passes: latin-1 clients send those."""
    i = raw.find("%")
    while 0 <= i < len(raw) - 2:
        a, b = raw[i + 1], raw[i + 2]
        if (a == "u" or a == "U") and i + 5 < len(raw) and _hex4(raw, i + 2):
            return True
        if a in _HEX and b in _HEX:
            byte = int(raw[i + 1 : i + 3], 16)
            if byte == 0:
                return True
            if byte >= 0xF5 and _continuation(raw, i + 3):
                return True  # no UTF-8 sequence starts so (latin-1 has no C1 controls)
            if byte in (0xC0, 0xC1) and _continuation(raw, i + 3):
                return True  # a two-byte form of an ASCII character
            if byte == 0xE0 and _continuation(raw, i + 3, 0x80, 0x9F):
                return True
            if byte == 0xF0 and _continuation(raw, i + 3, 0x80, 0x8F):
                return True
        i = raw.find("%", i + 1)
    return False


def _hex4(raw: str, at: int) -> bool:
    for c in raw[at : at + 4]:
        if c not in _HEX:
            return False
    return len(raw) >= at + 4


def _continuation(raw: str, at: int, low: int = 0x80, high: int = 0xBF) -> bool:
    """Whether ``raw`` has at ``at`` a percent-escaped byte in ``low``..``high``."""
    if raw[at : at + 1] != "%" or len(raw) < at + 3:
        return False
    digits = raw[at + 1 : at + 3]
    if digits[0] not in _HEX or digits[1] not in _HEX:
        return False
    return low <= int(digits, 16) <= high
