"""Extract every input of a request that a backend might interpret.

Each input carries a location string for the access log and for exclusions:
``path``, ``path:2`` (the third segment), ``path:2..`` (the path from the third segment
on), ``query:id``, ``query-name:id``,
``header:x-forwarded-host``, ``cookie:session``, ``form:comment``, ``json:$.user.name``,
``json-key:$.user``, ``multipart:avatar``, ``multipart-filename:avatar``, ``xml``,
``xml:text``, ``xml:attribute``, ``graphql`` (a string value or comment of an ``application/graphql`` body),
``body``. Parsing is linear and bounded (depth, number of inputs, bytes).

Most requests match nothing, and then nobody reads a location. ``extract(..., named=False)``
gives the same inputs in the same order, but with only the location's kind (``json``,
``query``, ``header``...) instead of the full name; the engine extracts again with names
only when something matched.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import orjson

from bastion.stages.detection.content import FILE_NAME, PAGE_ADDRESS, PAGE_ADDRESS_HEADERS, PATH_NAMES, ContentMap
from bastion.stages.detection.graphql import graphql_texts, looks_like_graphql
from bastion.stages.detection.normalize import base64_text, url_decode
from bastion.stages.detection.protocol import media_type_params
from bastion.types import Request

#: Headers whose values the proxy itself parses and validates; nothing else reads them.
SKIPPED_HEADERS: Final = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "te"})
#: Headers that name an uploaded file (what upload widgets and some APIs send).
UPLOAD_NAME_HEADERS: Final = frozenset({"x-filename", "x_filename", "x-file-name", "x.filename", "x-file_name"})
#: Form bodies up to this size are also inspected whole (see the query string case).
FORM_WHOLE_MAX: Final = 16_384
#: Longest location name kept (field names are attacker-controlled).
MAX_NAME: Final = 64


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one request can make the inspector do."""

    max_inputs: int = 1024
    max_json_depth: int = 32
    max_total_chars: int = 2 * 1024 * 1024
    max_decompressed: int = 1024 * 1024


class Input:
    """One value to inspect. ``is_key`` marks names (JSON keys, parameter names).

    A plain class rather than a NamedTuple: compiled, it is a native object, several
    times cheaper to build, and a request can have hundreds of inputs."""

    __slots__ = ("content", "is_key", "location", "markup", "value")

    def __init__(
        self, location: str, value: str, is_key: bool = False, markup: bool = False, content: str = ""
    ) -> None:
        self.location = location
        self.value = value
        self.is_key = is_key
        #: Categories-only restriction: raw markup is inspected only for XML-specific attacks.
        self.markup = markup
        #: The content kind the API's schema declares for this value ("": none), which
        #: turns some categories off for it (see :mod:`.content`).
        self.content = content

    def __repr__(self) -> str:
        extra = f", content={self.content!r}" if self.content else ""
        return f"Input({self.location!r}, {self.value!r}, is_key={self.is_key}, markup={self.markup}{extra})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Input) and (self.location, self.value, self.is_key, self.markup, self.content) == (
            other.location, other.value, other.is_key, other.markup, other.content)

    def __hash__(self) -> int:
        return hash((self.location, self.value, self.is_key, self.markup, self.content))


class Cut:
    """Why an extraction left something uninspected (``None``: nothing was left out)."""

    __slots__ = ("reason",)

    def __init__(self) -> None:
        self.reason: str | None = None

    def note(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason


#: Values up to this length can be remembered as clean (see :class:`Known`).
KNOWN_MAX_CHARS: Final = 2048


class Known:
    """Values a matcher has seen in clean requests, by kind: ``values`` and ``keys`` of the
    body; ``line_values`` and ``line_keys`` of the path, query, headers and cookies, where a
    line break is suspicious (the same two sets when the matcher has no rule for that).

    Whether a value matches depends on nothing else, so extraction leaves known values
    out: API traffic repeats its headers, tokens, enums and IDs, and a value left out costs
    a set look-up instead of an input to build and skip. The matcher fills the sets."""

    __slots__ = ("keys", "line_keys", "line_values", "values")

    def __init__(self, lines_apart: bool) -> None:
        self.values: set[str] = set()
        self.keys: set[str] = set()
        self.line_values: set[str] = set() if lines_apart else self.values
        self.line_keys: set[str] = set() if lines_apart else self.keys

    def bucket(self, is_key: bool, line: bool) -> set[str]:
        """The set a value of this kind is remembered in."""
        if line:
            return self.line_keys if is_key else self.line_values
        return self.keys if is_key else self.values

    def clear(self) -> None:
        for bucket in (self.values, self.keys, self.line_values, self.line_keys):
            bucket.clear()


class _Sink:
    """Collects the inputs of one request within the limits, leaving out known values.

    Known values still count against ``max_inputs`` and ``max_total_chars``, so what is
    inspected, and what the limits cut, is the same with or without them."""

    __slots__ = ("chars", "count", "known", "max_chars", "max_inputs", "out", "over")

    def __init__(self, limits: Limits, known: Known | None) -> None:
        self.out: list[Input] = []
        self.count = 0
        self.chars = 0
        self.over = False
        self.max_inputs = limits.max_inputs
        self.max_chars = limits.max_total_chars
        self.known = known

    @property
    def full(self) -> bool:
        """Whether no further input can be taken (the walks stop there)."""
        return self.count >= self.max_inputs

    def add(self, location: str, value: str, is_key: bool = False, line: bool = False, content: str = "") -> None:
        """Take an input (``line``: where a line break is suspicious), unless it is known."""
        if not self._within_limits(value):
            return
        known = self.known
        if (
            known is not None
            and len(value) <= KNOWN_MAX_CHARS
            and content != FILE_NAME  # a name clean as text may not be as an upload's
            and value in known.bucket(is_key, line)
        ):
            return
        self.out.append(Input(location, value, is_key, False, content))

    def add_markup(self, location: str, value: str) -> None:
        """Take raw markup (inspected for markup attacks only, never left out as known)."""
        if self._within_limits(value):
            self.out.append(Input(location, value, markup=True))

    def _within_limits(self, value: str) -> bool:
        """Count ``value``; whether it is within both limits (past one, nothing more is)."""
        count = self.count
        self.count = count + 1
        if count >= self.max_inputs or self.over:
            return False
        self.chars += len(value)
        if self.chars > self.max_chars:
            self.over = True
            return False
        return True


#: The shape of a GraphQL request's ``query``: a GraphQL document.
GRAPHQL: Final = ContentMap()
GRAPHQL.kind = "graphql"
#: A placeholder input where JSON nests deeper than the walk goes.
TOO_DEEP: Final = "<too deep>"


def _name(raw: str) -> str:
    name = raw[:MAX_NAME]
    if not name.isprintable():
        name = "".join(c if c.isprintable() else "?" for c in name)
    return name


def _url_name(raw: str) -> str:
    return _name(url_decode(raw) if ("%" in raw or "+" in raw) else raw)


def _pairs(sink: _Sink, prefix: str, data: str, named: bool, whole_max: int) -> None:
    """Inputs of an ``a=1&b=2`` string; values stay encoded (the normaliser decodes them).

    With more than two inputs (or none), the whole string comes first, if it is at most
    ``whole_max`` characters: a raw '&' or '=' inside a payload splits it across
    parameters, and some backends read the string as one value."""
    line = prefix == "query"
    parts = [item.partition("=") for item in data.split("&") if item]
    count = 0
    for name, eq, value in parts:
        count += (1 if name else 0) + (1 if eq and value else 0)
    if (count > 2 or not count) and len(data) <= whole_max:
        sink.add(prefix, data, False, line)
    key_kind = prefix + "-name"
    for name, eq, value in parts:
        label = _url_name(name) if named else ""
        if name:
            sink.add(f"{key_kind}:{label}" if named else key_kind, name, True, line)
        if eq and value:
            sink.add(f"{prefix}:{label}" if named else prefix, value, False, line)


#: JSON keys already found plain, as a set: a document's keys repeat from one request to the
#: next (orjson even hands out the same key objects), and a set lookup costs a fraction of
#: the character-class tests. Bounded: emptied when full.
_PLAIN_KEYS: Final[set[str]] = set()
PLAIN_KEYS_MAX: Final = 4096
PLAIN_KEY_MAX_CHARS: Final = 64


def _plain_key(key: str) -> bool:
    """Whether a JSON key is a plain identifier, which cannot carry a payload (but not a
    prototype-pollution name: ``__proto__``, ``constructor``)."""
    if key in _PLAIN_KEYS:
        return True
    if not (key.isidentifier() and key.isascii() and "__" not in key and key != "constructor"):
        return False
    if len(key) <= PLAIN_KEY_MAX_CHARS:
        if len(_PLAIN_KEYS) >= PLAIN_KEYS_MAX:
            _PLAIN_KEYS.clear()
        _PLAIN_KEYS.add(key)
    return True


def _json_string(sink: _Sink, location: str, value: str, kind: str) -> None:
    """A JSON string of content ``kind`` ("": none declared); a GraphQL document is its
    string values and comments (whole when it does not parse: see :mod:`.graphql`)."""
    if kind == "graphql":
        texts = graphql_texts(value)
        if texts is None:
            sink.add(location, value)
        else:
            for text in texts:
                sink.add(location, text)
        return
    sink.add(location, value, False, False, kind)


def _shape_of(shape: ContentMap | None, key: str, value: object, depth: int) -> ContentMap | None:
    """What the value of ``key`` holds: as declared under ``shape``, else a GraphQL document
    when it is the ``query`` of the body's object or of an object of a batch (a list of
    them) and starts like one; ``None`` for nothing in particular."""
    sub = shape.properties.get(key) if shape is not None else None
    if sub is None and key == "query" and depth <= 1 and isinstance(value, str) and looks_like_graphql(value):
        return GRAPHQL
    return sub


def _json_walk(
    obj: object, path: str, depth: int, limits: Limits, sink: _Sink, cut: Cut, shape: ContentMap | None = None
) -> None:
    if sink.full:
        return
    if isinstance(obj, str):
        _json_string(sink, "json:" + path, obj, shape.kind if shape is not None else "")
    elif isinstance(obj, dict):
        if depth >= limits.max_json_depth:
            sink.add("json:" + path, TOO_DEEP)
            cut.note("json_depth")
            return
        for key, val in obj.items():
            k = str(key)
            child = f"{path}.{_name(k)}"
            if not _plain_key(k):
                # A plain identifier key cannot carry a payload; anything else is inspected.
                sink.add("json-key:" + child, k, True)
            if k == "constructor" and isinstance(val, dict) and "prototype" in val:
                sink.add("json-key:" + child, "constructor.prototype", True)
            sub = None
            if shape is not None or k == "query":  # (one comparison for an undeclared key)
                sub = _shape_of(shape, k, val, depth)
            _json_walk(val, child, depth + 1, limits, sink, cut, sub)
    elif isinstance(obj, list):
        if depth >= limits.max_json_depth:
            sink.add("json:" + path, TOO_DEEP)
            cut.note("json_depth")
            return
        items = shape.items if shape is not None else None
        for i, val in enumerate(obj):
            _json_walk(val, f"{path}[{i}]", depth + 1, limits, sink, cut, items)


def _json_values(
    obj: object, depth: int, limits: Limits, sink: _Sink, cut: Cut, shape: ContentMap | None = None
) -> None:
    """:func:`_json_walk` without the locations (``named=False``): same inputs, same order."""
    if sink.full:
        return
    if isinstance(obj, str):
        _json_string(sink, "json", obj, shape.kind if shape is not None else "")
    elif isinstance(obj, dict):
        if depth >= limits.max_json_depth:
            sink.add("json", TOO_DEEP)
            cut.note("json_depth")
            return
        for k, val in obj.items():
            key: str = k  # orjson gives str keys
            if not _plain_key(key):
                sink.add("json-key", key, True)
            if key == "constructor" and isinstance(val, dict) and "prototype" in val:
                sink.add("json-key", "constructor.prototype", True)
            if shape is not None or key == "query":  # (one comparison for an undeclared key)
                sub = _shape_of(shape, key, val, depth)
                if sub is not None:
                    _json_values(val, depth + 1, limits, sink, cut, sub)
                    continue
            if isinstance(val, str):
                sink.add("json", val)
            elif isinstance(val, (dict, list)):
                _json_values(val, depth + 1, limits, sink, cut)
    elif isinstance(obj, list):
        if depth >= limits.max_json_depth:
            sink.add("json", TOO_DEEP)
            cut.note("json_depth")
            return
        items = shape.items if shape is not None else None
        for val in obj:
            if items is not None:
                _json_values(val, depth + 1, limits, sink, cut, items)
            elif isinstance(val, str):
                sink.add("json", val)
            elif isinstance(val, (dict, list)):
                _json_values(val, depth + 1, limits, sink, cut)


def _header_param(value: str, param: str) -> str | None:
    """A parameter of a header value like ``multipart/form-data; boundary=xyz``."""
    for piece in value.split(";")[1:]:
        key, _, val = piece.strip().partition("=")
        if key.strip().lower() == param:
            return val.strip().strip('"')
    return None


def _multipart(body: str, boundary: str, limits: Limits, sink: _Sink, cut: Cut) -> None:
    delimiter = "--" + boundary
    for chunk in body.split(delimiter)[1:]:
        if sink.full:
            return
        if chunk.startswith("--"):
            break
        chunk = chunk.removeprefix("\r\n").removeprefix("\n")
        head, sep, content = chunk.partition("\r\n\r\n")
        if not sep:
            head, sep, content = chunk.partition("\n\n")
        content = content.removesuffix("\r\n").removesuffix("\n")
        name = ""
        filename: str | None = None
        ctype = ""
        for line in head.splitlines():
            hname, _, hval = line.partition(":")
            hname = hname.strip().lower()
            if hname == "content-disposition":
                name = _header_param(hval, "name") or ""
                filename = _header_param(hval, "filename")
            elif hname == "content-type":
                ctype = hval.strip().lower()
        label = _name(name)
        if name:
            sink.add(f"multipart-name:{label}", name, True)
        if filename:
            sink.add(f"multipart-filename:{label}", filename, False, False, FILE_NAME)
        if "json" in ctype:
            _json_body(content, f"multipart:{label}", limits, sink, cut)
        elif content and not (filename and not content.isprintable() and "\x00" in content[:512]):
            sink.add(f"multipart:{label}", content)


def _json_body(
    text: str, fallback: str, limits: Limits, sink: _Sink, cut: Cut, named: bool = True, shape: ContentMap | None = None
) -> None:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        sink.add(fallback, text)
        return
    if named:
        _json_walk(doc, "$", 0, limits, sink, cut, shape)
    else:
        _json_values(doc, 0, limits, sink, cut, shape)


def _xml_texts(body: str) -> Iterator[tuple[bool, str]]:
    """Text nodes, CDATA sections (``False``) and quoted attribute values (``True``) of an
    XML document, by one linear scan of its markup. An attribute carries a value as a text
    node does (``<item name="...">``), and a ``>`` inside its quotes does not end the tag."""
    i = 0
    n = len(body)
    while i < n:
        lt = body.find("<", i)
        text = body[i : n if lt < 0 else lt].strip()
        if text:
            yield False, text
        if lt < 0:
            return
        if body.startswith("<![CDATA[", lt):
            end = body.find("]]>", lt + 9)
            stop = n if end < 0 else end
            yield False, body[lt + 9 : stop]
            i = n if end < 0 else end + 3
            continue
        if body.startswith("<!--", lt):
            end = body.find("-->", lt + 4)
            if end < 0:
                return
            i = end + 3
            continue
        values: list[str] = []
        i = _xml_tag(body, lt + 1, values)
        for value in values:
            yield True, value
        if i < 0:
            return


def _xml_tag(body: str, i: int, values: list[str]) -> int:
    """Scan a tag from ``i`` (after its ``<``), adding its quoted values to ``values``: the
    index after its ``>``, or -1 when the document ends first."""
    n = len(body)
    gt = body.find(">", i)
    while True:
        if gt < 0:
            gt = n
        # The first quote before the tag's apparent end; none: that is its end.
        dq = body.find('"', i, gt)
        sq = body.find("'", i, gt)
        quote = dq if sq < 0 or (0 <= dq < sq) else sq
        if quote < 0:
            return gt + 1 if gt < n else -1
        close = body.find(body[quote], quote + 1)
        if close < 0:
            values.append(body[quote + 1 :])
            return -1
        if close > quote + 1:
            values.append(body[quote + 1 : close])
        i = close + 1
        if close > gt:  # the '>' was inside the quotes: look for the next one (never back)
            gt = body.find(">", i)


def _decode_body(request: Request, limits: Limits, cut: Cut) -> str:
    body = request.body or b""
    encoding = (request.header("content-encoding") or "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)
            inflated = inflater.decompress(body, limits.max_decompressed)
            if inflater.unconsumed_tail:
                cut.note("decompressed_size")
            body = inflated
        except zlib.error:
            pass  # not actually compressed: inspect the bytes as sent
    return body.decode("utf-8", "replace")


def extract(
    request: Request,
    limits: Limits | None = None,
    *,
    named: bool = True,
    cut: Cut | None = None,
    known: Known | None = None,
    content: ContentMap | None = None,
) -> list[Input]:
    """All inputs of ``request``, in wire order: path, query, headers, cookies, body.

    With ``named=False`` each location is only its kind (``path``, ``query-name``,
    ``header``, ``json``...): the same inputs for a fraction of the work. What the limits
    leave out is noted in ``cut`` (more inputs or characters than allowed, JSON nested too
    deep, a body that inflates past the limit): the caller decides what that means. Values
    in ``known`` are left out (see :class:`Known`). ``content`` says what the JSON body's
    fields hold, as the API's schema declares (see :mod:`.content`).
    """
    lim = limits or _DEFAULT_LIMITS
    if cut is None:
        cut = Cut()
    sink = _Sink(lim, known)
    target = request.raw_target or request.path
    raw_path, _, raw_query = target.partition("?")
    if not raw_query and request.query:
        raw_query = request.query
    # Validation, when it passed, vouches for some inputs (see Request.inert_headers).
    path = "" if request.inert_path else raw_path.lstrip("/")
    if path:
        # (Only named: the first pass's hits are not filtered by content, and its paths
        # cost nothing more.)
        kind = PATH_NAMES if named and _names_only(path) else ""
        sink.add("path", path, False, True, kind)
        if "/" in path:
            _path_segments(sink, path, named, kind)
    if raw_query:
        _pairs(sink, "query", raw_query, named, len(raw_query))
    inert = request.inert_headers
    for name, value in request.headers:
        if name in SKIPPED_HEADERS or not value or name in inert:
            continue
        if name == "cookie":
            for item in value.split(";"):
                cname, eq, cval = item.strip().partition("=")
                label = _name(cname) if named else ""
                sink.add(f"cookie-name:{label}" if named else "cookie-name", cname, True, True)
                if eq and cval:
                    sink.add(f"cookie:{label}" if named else "cookie", cval, False, True)
        elif name == "content-type" and '"' in value:
            _content_type(sink, value, named)
        else:
            kind = FILE_NAME if name in UPLOAD_NAME_HEADERS else PAGE_ADDRESS if name in PAGE_ADDRESS_HEADERS else ""
            sink.add(f"header:{_name(name.lower())}" if named else "header", value, False, True, kind)
    if request.body:
        _body(request, lim, sink, cut, named, content)
    # The global bounds (number of inputs, characters inspected) were applied as the inputs
    # came: reaching the number means something may have been left.
    if sink.full:
        cut.note("inputs")
    if sink.over:
        cut.note("characters")
    return sink.out


def _content_type(sink: _Sink, value: str, named: bool) -> None:
    """A ``Content-Type`` with quoted parameters (SOAP's ``action``, MTOM's ``type`` and
    ``start``): its media type and each parameter's value, unquoted, as inputs. The quotes
    and ``;`` between parameters are the header's own syntax, which reads as a string break
    and a statement end; what a parameter holds is inspected whole. A value that is not a
    media type (the protocol rule 17002 refuses it) is inspected as sent."""
    location = "header:content-type" if named else "header"
    params = media_type_params(value)
    if params is None:
        sink.add(location, value, False, True)
        return
    sink.add(location, value.partition(";")[0].strip(), False, True)
    for _, param in params:
        if param:
            sink.add(location, param, False, True)


_DEFAULT_LIMITS: Final = Limits()
#: What an API path's names and IDs are made of: an attack placed in a segment carries
#: something else ("%", ";", quotes, parentheses, "|", "&"...).
_PLAIN_SEGMENT_BYTES: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_PLAIN_PATH_BYTES: Final = _PLAIN_SEGMENT_BYTES + b"/"


def _payload_segment(seg: str) -> bool:
    """Whether a path segment has a character names and IDs never have (two C calls for
    the usual letters-and-digits segment, one translate for the rest)."""
    if seg.isascii():
        return not seg.isalnum() and bool(seg.encode("ascii").translate(None, _PLAIN_SEGMENT_BYTES))
    return True


def _names_only(path: str) -> bool:
    """Whether ``path`` is made of name characters and slashes only, and neither it nor a
    segment is base64 of text (a decoded view can hold any script): see
    :data:`~.content.PATH_NAMES`."""
    if not path.isascii() or path.encode("ascii").translate(None, _PLAIN_PATH_BYTES):
        return False
    return base64_text(path) is None and all(base64_text(seg) is None for seg in path.split("/"))


def _path_segments(sink: _Sink, path: str, named: bool, kind: str = "") -> None:
    """Each segment of ``path`` as an input, and the rest of the path from each segment
    that carries payload characters.

    A payload placed in one segment keeps its own slashes (the target parser refuses an
    encoded one), so it spans several segments: ``;mshta http://x/y`` is the segments
    ``;mshta http:``, ``x`` and ``y``. Rules anchored at the start of a value see it
    whole only from the segment where it starts to the end of the path
    (``path:2..``). Only segments with characters a name or an ID never has start such
    an input, so an ordinary API path costs nothing more. ``kind``: the path's content
    kind, given to its segments."""
    segments = path.split("/")
    last = len(segments) - 1
    start = 0
    for i, seg in enumerate(segments):
        if len(seg) > 1:
            sink.add(f"path:{i}" if named else "path", seg, False, True, kind)
        if 0 < i < last and seg and _payload_segment(seg):
            sink.add(f"path:{i}.." if named else "path", path[start:], False, True)
        start += len(seg) + 1


def _body(
    request: Request, lim: Limits, sink: _Sink, cut: Cut, named: bool = True, shape: ContentMap | None = None
) -> None:
    ctype_full = request.header("content-type") or ""
    ctype = ctype_full.split(";", 1)[0].strip().lower()
    parsed = request.parsed_json
    if parsed is not None and "json" in ctype and request.header("content-encoding") is None:
        # Validation parsed these very bytes already (strictly: it refuses invalid UTF-8).
        if named:
            _json_walk(parsed[0], "$", 0, lim, sink, cut, shape)
        else:
            _json_values(parsed[0], 0, lim, sink, cut, shape)
        return
    text = _decode_body(request, lim, cut)
    head = text.lstrip()[:1]
    if ctype == "application/x-www-form-urlencoded":
        _pairs(sink, "form", text, named, FORM_WHOLE_MAX)
    elif ctype.startswith("multipart/"):
        boundary = _header_param(ctype_full, "boundary")
        if boundary:
            _multipart(text, boundary, lim, sink, cut)
        else:
            sink.add("body", text)
    elif "json" in ctype or (not ctype and head in ("{", "[")):
        _json_body(text, "body", lim, sink, cut, named, shape)
    elif ctype == "application/graphql":
        _json_string(sink, "graphql", text, "graphql")
    elif "xml" in ctype or text.lstrip()[:5] in ("<?xml", "<!DOC", "<!doc"):
        sink.add_markup("xml", text)
        for attribute, t in _xml_texts(text):
            sink.add("xml:attribute" if attribute else "xml:text", t)
    else:
        sink.add("body", text)
        if _form_shaped(text):
            # Servers that read a form whatever the declared type (PHP's php://input parsers,
            # frameworks' lenient body parsers) see these pairs: inspect them as a form's.
            _pairs(sink, "form", text, named, 0)


#: The characters of a form field's name as clients encode it (letters, digits, "%XX",
#: brackets for arrays, the punctuation of dotted and dashed names).
_FORM_NAME_BYTES: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%[]+*"


def _form_shaped(text: str) -> bool:
    """Whether a body of a type the inspector does not parse reads as ``name=value&...``:
    one line, a name of form-name characters before the first ``=``. Prose, code, CSV and
    multi-line configuration files do not."""
    eq = text.find("=", 0, 256)
    if eq <= 0 or "\n" in text or not text[:eq].isascii():
        return False
    return not text[:eq].encode("ascii").translate(None, _FORM_NAME_BYTES)
