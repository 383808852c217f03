"""Normalise a request target before routing, and refuse the ambiguous ones.

The upstream receives the normalised path, so what Bastion routed on and what the upstream
serves are the same string. Encodings that could make the two differ (``%2f``, ``%2e%2e``,
backslashes, NUL) are refused rather than guessed at.

``;params`` are dropped from every segment of the normalised path. A path that has some also
gets a *matrix form*, the same path with them kept (see :func:`split_target`): the router
uses it only for templates that declare a matrix-style parameter.
"""

from __future__ import annotations

from typing import Final

_ALPHA_DIGIT = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_UNRESERVED = frozenset(_ALPHA_DIGIT + b"-._~")
#: Bytes allowed literally in a path (RFC 3986 pchar + "/" + "%" for escapes).
_PATH_CHARS = _ALPHA_DIGIT + b"-._~!$&'()*+,;=:@/%"
#: Bytes allowed literally in a query: printable ASCII except space, '#', and the few that
#: common clients never send raw. Lenient on purpose: queries carry arbitrary user text.
_PERCENT = ord("%")
_QUERY_CHARS = bytes(c for c in range(0x21, 0x7F) if c not in b"#")
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _check_table(allowed: bytes) -> bytes:
    """A ``bytes.translate`` table that keeps each allowed byte and changes every other one:
    the text is unchanged by it exactly when all its bytes are allowed. Given a table alone,
    ``translate`` maps byte by byte (given bytes to delete, it first fills a table of 256
    entries, ~1,000 instructions a call, callgrind)."""
    return bytes(c if c in allowed else (c + 1) % 256 for c in range(256))


_PATH_TABLE: Final = _check_table(_PATH_CHARS)
_QUERY_TABLE: Final = _check_table(_QUERY_CHARS)


class BadTarget(ValueError):
    """The request target cannot be routed safely. ``detail`` never echoes the input."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def normalize_target(raw: bytes, max_length: int = 8192) -> tuple[str, str]:
    """Split ``raw`` into a normalised path and the raw query string.

    Raises :class:`BadTarget` (400, or 414 when longer than ``max_length``).
    """
    path, query, _ = split_target(raw, max_length)
    return path, query


def split_target(raw: bytes, max_length: int = 8192) -> tuple[str, str, str | None]:
    """:func:`normalize_target`'s path and query, and the path's matrix form.

    The matrix form is the normalised path with each segment's ``;params`` kept (their
    escapes normalised like the segment's), segments that are only ``;params`` kept too,
    and dot segments resolved alike: a ``..`` removes a segment together with the
    ``;params``-only segments after it, so ``/items/;c=x/../admin`` is ``/admin`` in both.
    It is ``None`` when the path has no ``;params``, or when they hold an escape the path
    itself would be refused for (``%2F``, ``%5C``, ``%00``, a broken escape): routes with
    matrix-style parameters then do not match, and nothing else changes.
    """
    if len(raw) > max_length:
        raise BadTarget(414, "The request target is too long.")
    if not raw.startswith(b"/"):
        raise BadTarget(400, "Only origin-form request targets (starting with '/') are accepted.")
    path, _, query = raw.partition(b"?")
    if query and query.translate(_QUERY_TABLE) != query:
        raise BadTarget(400, "The query string contains characters that must be percent-encoded.")
    if path.translate(_PATH_TABLE) != path:
        raise BadTarget(400, "The path contains characters that must be percent-encoded.")
    # Fast path: nothing to decode, no dot segments, no empty segments, no parameters.
    # The tests run on the text (all ASCII, checked above): CPython's ``bytes in bytes``
    # first tries the operand as an integer, building and clearing a TypeError, about
    # 2,000 instructions a test; ``str in str`` is a plain search.
    text = path.decode("ascii")
    params = ";" in text
    if "%" not in text and not params and "//" not in text and "/." not in text:
        return text, query.decode("ascii"), None
    if not params:
        return _normalize_path(path), query.decode("ascii"), None
    normalised, matrix = _normalize_with_params(path)
    return normalised, query.decode("ascii"), matrix


def _normalize_path(path: bytes) -> str:
    trailing = path.endswith(b"/") or path.endswith(b"/.") or path.endswith(b"/..")
    out: list[str] = []
    for seg in path.split(b"/")[1:]:
        if not seg:
            continue  # duplicate slashes
        decoded, had_escape = _decode_unreserved(seg)
        if decoded in (".", ".."):
            _refuse_escaped_dots(had_escape)
            if decoded == "..":
                _climb(out)
            continue
        out.append(decoded)
    return _join(out, trailing)


def _normalize_with_params(path: bytes) -> tuple[str, str | None]:
    """The normalised path (``;params`` dropped) and its matrix form (kept), in one pass."""
    trailing = path.endswith(b"/") or path.endswith(b"/.") or path.endswith(b"/..")
    out: list[str] = []
    matrix: list[str] = []
    #: Where each segment of ``out`` starts in ``matrix`` (a ``..`` cuts ``matrix`` there).
    starts: list[int] = []
    keep = True  # False once some ;params cannot be kept safely: no matrix form
    for raw_seg in path.split(b"/")[1:]:
        seg, semi, params = raw_seg.partition(b";")
        kept = ""
        if semi and keep:
            checked = _params(params)
            if checked is None:
                keep = False
            else:
                kept = checked
        if not seg:
            if semi and keep:
                matrix.append(";" + kept)  # a segment of ;params only
            continue  # duplicate slashes, or ;params only: not in the normalised path
        decoded, had_escape = _decode_unreserved(seg)
        if decoded in (".", ".."):
            _refuse_escaped_dots(had_escape)
            if decoded == "..":
                _climb(out)
                del matrix[starts.pop():]
            continue
        starts.append(len(matrix))
        matrix.append(decoded + ";" + kept if semi else decoded)
        out.append(decoded)
    normalised = _join(out, trailing)
    if not keep:
        return normalised, None
    with_params = _join(matrix, trailing)
    return normalised, (with_params if with_params != normalised else None)


def _params(params: bytes) -> str | None:
    """A segment's ``;params`` with escapes normalised; ``None`` if they may not be forwarded."""
    try:
        return _decode_unreserved(params)[0]
    except BadTarget:
        return None


def _refuse_escaped_dots(had_escape: bool) -> None:
    if had_escape:
        raise BadTarget(400, "Encoded dot segments are not accepted in the path.")


def _climb(out: list[str]) -> None:
    if not out:
        raise BadTarget(400, "The path climbs above the root.")
    out.pop()


def _join(segments: list[str], trailing: bool) -> str:
    result = "/" + "/".join(segments)
    if trailing and segments:
        result += "/"
    return result


def _decode_unreserved(seg: bytes) -> tuple[str, bool]:
    """Decode escapes of unreserved characters; keep (upper-cased) the others."""
    if _PERCENT not in seg:  # a byte's value: see split_target
        return seg.decode("ascii"), False
    parts = seg.split(b"%")
    out = [parts[0].decode("ascii")]
    for part in parts[1:]:
        if len(part) < 2 or part[0] not in _HEX or part[1] not in _HEX:
            raise BadTarget(400, "The path contains an invalid percent-escape.")
        value = int(part[:2], 16)
        if value in (0x2F, 0x5C):
            raise BadTarget(400, "Encoded slashes are not accepted in the path.")
        if value == 0:
            raise BadTarget(400, "Encoded NUL bytes are not accepted in the path.")
        if value in _UNRESERVED:
            out.append(chr(value))
        else:
            out.append("%" + part[:2].decode("ascii").upper())
        out.append(part[2:].decode("ascii"))
    return "".join(out), True


_AUTHORITY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]_"


def split_absolute(raw: bytes) -> tuple[str, bytes]:
    """Split an absolute-form target (``http://host:port/path?q``) into host and origin form."""
    rest = raw.split(b"://", 1)[1]
    cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
    authority = rest[:cut].decode("ascii", "replace")
    if not authority or authority.strip(_AUTHORITY_CHARS) or "@" in authority:
        raise BadTarget(400, "The request target's authority is not a valid host.")
    origin = rest[cut:]
    if not origin.startswith(b"/"):
        origin = b"/" + origin
    return authority, origin
