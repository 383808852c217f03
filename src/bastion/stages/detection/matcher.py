"""Match inputs against the rule set: one compiled database, plus the code detectors.

The signatures are compiled once into a hyperscan database (every pattern in one pass over
the data, linear time, no backtracking). Where hyperscan cannot be loaded (an older CPU
without SSSE3, a platform without wheels) RE2's ``Set`` does the same job a little slower.
Python's ``re`` is never used on request data.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from bastion.stages.detection import dbcache, libinj, ssrf
from bastion.stages.detection.content import FILE_NAME
from bastion.stages.detection.inspect import KNOWN_MAX_CHARS, Input, Known
from bastion.stages.detection.normalize import (
    MAX_VIEW_CHARS,
    MAX_VIEWS,
    base64_text,
    contains_any,
    views,
    windows,
)
from bastion.stages.detection.rules import ALL_RULES, RULES, Category, Rule


def _optional(module: str) -> Any:
    """Import an optional accelerator; ``None`` when it is missing or cannot load."""
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover - depends on the machine
        return None


_hs: Final = _optional("hyperscan")
_re2: Final = _optional("re2")

#: Categories still inspected in raw markup (an XML body as sent, tags and all).
MARKUP_CATEGORIES: Final[frozenset[Category]] = frozenset({"xxe", "ssi", "jndi", "recon"})
#: MongoDB operators that have no business being a JSON key in an API request.
NOSQL_OPERATORS: Final = frozenset(
    {
        "$ne",
        "$eq",
        "$gt",
        "$gte",
        "$lt",
        "$lte",
        "$in",
        "$nin",
        "$regex",
        "$where",
        "$exists",
        "$or",
        "$and",
        "$not",
        "$nor",
        "$expr",
        "$function",
        "$accumulator",
        "$elemmatch",
        "$jsonschema",
        "$text",
        "$mod",
        "$all",
        "$size",
        "$type",
        "$options",
        "$lookup",
        "$merge",
        "$out",
    }
)
#: Values up to this length are remembered once seen in a clean request (see Matcher._run).
CLEAN_CACHE_MAX_CHARS: Final = KNOWN_MAX_CHARS
#: At most this many remembered values per matcher, and at most this many characters in
#: all (a few MB at worst: long User-Agents and bearer tokens repeat too).
CLEAN_CACHE_ENTRIES: Final = 8192
CLEAN_CACHE_TOTAL_CHARS: Final = 1 << 20
#: Locations where a decoded line break is suspicious at paranoia 2.
_LINE_LOCATIONS: Final = ("path", "query", "header", "cookie")
#: The session cookies of web frameworks and servers. A request that carries one as a query
#: or form parameter sets the session through a link another site made: session fixation.
#: (Not "sessionid", "session_id" or "sid": APIs name their own resources so, as Stripe's
#: checkout redirect does.)
SESSION_PARAMS: Final = frozenset(
    {
        "jsessionid",
        "phpsessid",
        "asp.net_sessionid",
        "aspsessionid",
        "laravel_session",
        "connect.sid",
        "sails.sid",
        "koa.sess",
        "koa:sess",
        "_rails_session",
        "_session_id",
        "rack.session",
        "ci_session",
        "cakephp",
        "zend_session_id",
        "play_session",
        "_flask_session",
        "jservsession",
        "weblogicsession",
        "cfid",
        "cftoken",
        "next-auth.session-token",
        "__secure-next-auth.session-token",
        "__host-next-auth.session-token",
        "meteor_login_token",
    }
)
#: Where a session cookie's name is a parameter (see :data:`SESSION_PARAMS`).
_PARAM_NAME_LOCATIONS: Final = ("query-name", "form-name")


def session_param(name: str) -> bool:
    """Whether ``name`` is a framework's session cookie (ASP's carries a random suffix)."""
    lowered = name.lower()
    return lowered in SESSION_PARAMS or lowered.startswith("aspsessionid")


#: Extensions a web server runs as a program (PHP, JSP, ASP, ColdFusion, CGI, SSI) rather
#: than serve: an upload named so becomes a web shell where uploads are served.
_SCRIPT_EXTENSIONS: Final = frozenset(
    {
        "php", "php3", "php4", "php5", "php7", "php8", "phtml", "pht", "phar", "phps", "pgif",
        "jsp", "jspx", "jspf", "jsw", "jsv", "asp", "aspx", "asa", "asax", "ascx", "ashx", "asmx",
        "cfm", "cfml", "cgi", "shtml",
    }
)  # fmt: skip
#: A web server's own files: an upload so named reconfigures the server (or its PHP).
_SERVER_FILES: Final = frozenset({".htaccess", ".htpasswd", "web.config", ".user.ini", "php.ini", "wp-config.php"})


def script_upload(name: str) -> bool:
    """Whether an upload's file name is a server-side script, a web server's own file or a
    PHP session file, as the server that stores it will read the name: the directory is
    dropped, and so is what follows a NUL, IIS's ";" and NTFS's "::" ("a.asp;.jpg"), and
    trailing dots and spaces (Windows: "a.php..."), and spaces around the extension
    ("a. php": what a check that trims the extension reads as "php"). A copy of WordPress's
    configuration under another name ("wp-config-php.bak") counts as the file itself."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
    for cut in ("\x00", ";", "::"):
        base = base.split(cut, 1)[0]
    base = base.rstrip(". ")
    if base in _SERVER_FILES or base.startswith("wp-config"):
        return True
    if base.startswith("sess_") and len(base) >= 13 and base[5:].replace("-", "").replace(",", "").isalnum():
        return True
    stem, dot, ext = base.rpartition(".")
    return bool(dot) and bool(stem.strip()) and ext.strip() in _SCRIPT_EXTENSIONS


def upload_climbs(name: str) -> bool:
    """Whether an upload's file name has a parent-folder segment (``../x``, ``..\\x``, a
    ``..`` written with Windows' trailing dots or spaces): a server that joins it to its
    upload folder, or an archive tool that keeps it, writes outside that folder."""
    if ".." not in name:
        return False
    return any(seg.count(".") >= 2 and not seg.strip(" .") for seg in name.replace("\\", "/").split("/"))


#: Locations that never hold a line break, decoded or not: the path and the names of
#: parameters and cookies (a subset of the above, so their values are remembered apart).
_NO_LINE_LOCATIONS: Final = ("path", "query-name", "cookie-name")
#: A printable value with none of these has a single view and cannot trigger the gated detectors
#: (libinjection, SSRF URLs, line breaks): see :meth:`Matcher.match_inputs`.
_PLAIN_CHARS: Final = "%+&\\<'\"`#"
_HOST_START: Final = frozenset("0123456789[")
#: The base64 alphabets (standard and URL-safe, with padding): see :func:`views`.
_B64_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=")
#: Hex digits and dashes (UUIDs, hashes, trace IDs) are never base64 of text.
_HEXDASH: Final = frozenset("0123456789abcdefABCDEF-")


class Backend(Protocol):
    """A compiled set of patterns: which pattern IDs occur in ``data``, with end offsets."""

    name: str

    def scan(self, data: bytes) -> list[tuple[int, int]]:
        """(pattern id, end offset) of each pattern found in ``data``."""
        ...


class HyperscanBackend:
    """All patterns in one hyperscan block-mode database."""

    name = "hyperscan"

    def __init__(self, rules: Iterable[Rule]) -> None:
        if _hs is None:
            raise RuntimeError("hyperscan is not installed")
        selected = list(rules)
        self._db: Any = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        self._empty = not selected
        #: Whether the database came from the on-disk cache rather than a compile.
        self.from_cache = False
        if selected:
            flags = _hs.HS_FLAG_CASELESS | _hs.HS_FLAG_SINGLEMATCH | _hs.HS_FLAG_DOTALL | _hs.HS_FLAG_MULTILINE
            expressions = [r.pattern.encode() for r in selected]
            ids = [r.id for r in selected]
            key = dbcache.database_key(expressions, ids, flags, _hs.HS_MODE_BLOCK, str(_hs.__version__))
            cached = dbcache.read(key)
            if cached is not None:
                try:
                    self._db = _hs.loadb(cached, _hs.HS_MODE_BLOCK)
                    self.from_cache = True
                except Exception:  # any bytes hyperscan refuses mean compiling, as without a cache
                    self._db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            if not self.from_cache:
                self._db.compile(expressions=expressions, ids=ids, elements=len(selected), flags=flags)
                dbcache.write(key, _hs.dumpb(self._db))
            self._scratch: Any = _hs.Scratch(self._db)

    def scan(self, data: bytes) -> list[tuple[int, int]]:
        if self._empty:
            return []
        found: list[tuple[int, int]] = []

        def on_match(rule_id: int, start: int, end: int, flags: int, ctx: object) -> None:
            found.append((rule_id, end))

        self._db.scan(data, match_event_handler=on_match, scratch=self._scratch)
        return found


class Re2Backend:
    """All patterns in one RE2 ``Set`` (the fallback when hyperscan cannot load)."""

    name = "re2"

    def __init__(self, rules: Iterable[Rule]) -> None:
        if _re2 is None:
            raise RuntimeError("google-re2 is not installed")
        selected = list(rules)
        self._ids = [r.id for r in selected]
        options = _re2.Options()
        options.case_sensitive = False
        options.dot_nl = True
        self._set: Any = _re2.Set.SearchSet(options)
        for rule in selected:
            # Multi-line, like the hyperscan database: ^ and $ also match at line breaks.
            self._set.Add("(?m)" + rule.pattern)
        self._set.Compile()
        self._empty = not selected

    def scan(self, data: bytes) -> list[tuple[int, int]]:
        if self._empty:
            return []
        # A Set reports which patterns match but not where; the snippet then shows the start.
        return [(self._ids[i], 0) for i in (self._set.Match(data) or ())]


def make_backend(rules: Iterable[Rule], prefer: str = "hyperscan") -> Backend:
    """The fastest backend that loads here, compiled for ``rules``."""
    selected = list(rules)
    if prefer == "hyperscan" and _hs is not None:
        try:
            return HyperscanBackend(selected)
        except Exception as exc:  # pragma: no cover - e.g. a CPU without SSSE3
            # Not fail-open: the same rules run on RE2, only slower; say so once.
            logging.getLogger("bastion.detection").warning("hyperscan unavailable (%s); using RE2", exc)
    return Re2Backend(selected)


@dataclass(frozen=True, slots=True)
class Hit:
    """One rule that matched one input."""

    rule: Rule
    location: str
    snippet: str
    #: The content kind of the input (see :mod:`.content`; "": none declared).
    content: str = ""


def redact(view: str, end: int, width: int = 40) -> str:
    """At most ``width`` characters of ``view`` ending at ``end`` (a byte offset into its
    UTF-8 form, 0 for unknown), with control and non-printable characters escaped."""
    raw = view.encode("utf-8", "surrogatepass")
    piece = raw[: width * 4] if end <= 0 else raw[max(0, end - width * 4) : end]
    text = piece.decode("utf-8", "replace")
    text = text[:width] if end <= 0 else text[-width:]
    return "".join(c if c.isprintable() and c != "\\" else _escape(c) for c in text)[:width]


def _escape(c: str) -> str:
    if c == "\\":
        return "\\\\"
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class Matcher:
    """The rule set for one paranoia level and set of enabled categories, compiled once."""

    def __init__(
        self,
        paranoia: int = 1,
        categories: Iterable[Category] | None = None,
        *,
        prefer: str = "hyperscan",
    ) -> None:
        enabled = frozenset(categories) if categories is not None else None
        self.paranoia = paranoia

        def wanted(rule: Rule) -> bool:
            return rule.paranoia <= paranoia and (enabled is None or rule.category in enabled)

        self._rules = [r for r in RULES if wanted(r)]
        self._backend = make_backend(self._rules, prefer)
        self._markup_backend = make_backend([r for r in self._rules if r.category in MARKUP_CATEGORIES], prefer)
        self.backend_name = self._backend.name
        self._detectors = {rid: r for rid, r in ALL_RULES.items() if not r.pattern and wanted(r)}
        self._lib_sqli = libinj.AVAILABLE and 1901 in self._detectors
        self._lib_xss = libinj.AVAILABLE and 2901 in self._detectors
        self._packed_ip = 6002 in self._detectors
        #: Whether a value's verdict may depend on its location's kind (the line-break
        #: detectors), so that values seen clean are remembered apart by location.
        self._line_rule = 12901 in self._detectors or 12902 in self._detectors
        #: Values already seen clean, by kind (see :meth:`_run`); extraction can leave
        #: them out (``extract(..., known=matcher.known)``).
        self._session_rule = 12005 in self._detectors
        self.known = Known(lines_apart=self._line_rule)
        self._clean_count = 0
        self._clean_chars = 0

    def match_input(self, inp: Input) -> list[Hit]:
        """Every rule that matches some view of ``inp``, each rule once."""
        seen: dict[int, Hit] = {}
        backend = self._markup_backend if inp.markup else self._backend
        for window in windows(inp.value):
            candidates = [window] if inp.markup else views(window)
            for view in candidates:
                data = view.encode("utf-8", "surrogatepass")
                for rule_id, end in backend.scan(data):
                    if rule_id not in seen:
                        seen[rule_id] = Hit(ALL_RULES[rule_id], inp.location, redact(view, end), inp.content)
                if not inp.markup:
                    self._detect(view, inp, seen)
        return list(seen.values())

    def match_inputs(self, inputs: Iterable[Input]) -> list[Hit]:
        """Every (rule, input) match over ``inputs``, each rule once per input.

        All views of all inputs are first scanned as one buffer, NUL-separated (the rules'
        anchors and negated classes treat NUL as a value boundary). A pattern that matches
        within some view also matches in the buffer, so when the buffer has no match
        (nearly every legitimate request) no input does, and the cost is one scan.
        Otherwise the inputs are rescanned one by one to attribute the hits and to drop
        any match that only spanned two views.
        """
        hits = self._run(inputs, probe=False)
        return hits if hits is not None else []

    def probe(self, inputs: Iterable[Input]) -> bool:
        """Whether :meth:`match_inputs` could find anything in ``inputs``.

        The same views, detectors and single buffer scan, but it stops at the first code
        detector that fires and attributes nothing, so locations are never read: the
        inputs may come from ``extract(..., named=False)``. ``False`` is exact (no hit at
        all); ``True`` may be a match that only spans two views.
        """
        return self._run(inputs, probe=True) is None

    def _run(self, inputs: Iterable[Input], probe: bool) -> list[Hit] | None:
        """:meth:`match_inputs`; with ``probe``, ``None`` as soon as anything matched."""
        hits: list[Hit] = []
        lines: list[str] = []
        pending: list[Input] = []
        fresh: list[tuple[set[str], str]] = []
        known = self.known
        line_rule = self._line_rule
        session = self._session_rule
        for inp in inputs:
            value = inp.value
            if inp.markup or inp.content == FILE_NAME:
                # (An upload's name: few, and checked whole by the upload-name detector too.)
                found = self.match_input(inp)
                if probe and found:
                    return None
                hits.extend(found)
                continue
            if len(value) <= CLEAN_CACHE_MAX_CHARS:
                # Whether a value matches is a function of the value alone (and of its kind),
                # and API traffic repeats values: headers, tokens, enums, IDs. A value that
                # was part of a clean request is skipped (extract(known=...) leaves most out
                # already); its views can only have taken part in matches spanning two views,
                # which the rescan below discards anyway.
                bucket = known.bucket(inp.is_key, line_rule and inp.location.startswith(_LINE_LOCATIONS))
                if value in bucket:
                    continue
                if not (inp.is_key and session and session_param(value)):
                    # (A session cookie's name is never remembered: as a cookie it is
                    # clean, as a parameter it is not, and both are names of line locations.)
                    fresh.append((bucket, value))
            pending.append(inp)
            if value.isalnum() and value.isascii():
                # Letters and digits only (words, numbers, IDs): nothing to decode, no
                # quote or markup for a detector; only base64 and a packed IP remain.
                if len(value) >= 8 and len(value) % 4 != 1 and not _HEXDASH.issuperset(value):
                    decoded = views(value)
                    if len(decoded) > 1:
                        lines.extend(decoded)
                        seen: dict[int, Hit] = {}
                        for view in decoded:
                            self._detect(view, inp, seen)
                        if probe and seen:
                            return None
                        hits.extend(seen.values())
                        continue
                lines.append(value)
                if (self._packed_ip and value[0] in _HOST_START) or (inp.is_key and session and session_param(value)):
                    seen = {}
                    self._detect(value, inp, seen)
                    if probe and seen:
                        return None
                    hits.extend(seen.values())
                continue
            if (
                len(value) <= MAX_VIEW_CHARS
                and value.isascii()
                and not contains_any(value, _PLAIN_CHARS)
                and ("/" not in value or ("//" not in value and "/*" not in value))
                and ("$" not in value or "${" not in value)
                and "  " not in value
                and value.isprintable()  # last: the one test that costs (a lookup per character)
            ):
                # Fast path: a value without any decoding, quoting or markup character;
                # only a value that could be base64 of text has another view.
                # (Spaces around it too: base64 decoders skip them, and base64_text strips them.)
                core = value.strip(" ") if value[:1] == " " or value[-1:] == " " else value
                if (
                    len(core) >= 8
                    and _B64_CHARS.issuperset(core)
                    and len(core.rstrip("=")) % 4 != 1
                    and not _HEXDASH.issuperset(core)
                ):
                    # What views(value) gives here, without its checks all over again.
                    text = base64_text(value)
                    decoded = [value] if text is None else [value, *views(text, decode_base64=False)][:MAX_VIEWS]
                    if len(decoded) > 1:
                        lines.extend(decoded)
                        seen = {}
                        for view in decoded:
                            self._detect(view, inp, seen)
                        if probe and seen:
                            return None
                        hits.extend(seen.values())
                        continue
                lines.append(value)
                # Without quotes, markup, '//' or line breaks, only these detectors can
                # fire: the packed IP (values starting like a host), SQL comments ("--",
                # checked for such values and keys) and the NoSQL and prototype keys.
                if (value[:1] in _HOST_START and (self._packed_ip or "--" in value)) or (
                    inp.is_key
                    and (
                        value[:1] == "$"
                        or value == "constructor.prototype"
                        or "--" in value
                        or (session and session_param(value))
                    )
                ):
                    seen = {}
                    self._detect(value, inp, seen)
                    if probe and seen:
                        return None
                    hits.extend(seen.values())
                continue
            seen = {}
            for window in windows(value):
                for view in views(window):
                    lines.append(view)
                    self._detect(view, inp, seen)
            if probe and seen:
                return None
            hits.extend(seen.values())
        if lines:
            buffer = "\x00".join(lines).encode("utf-8", "surrogatepass")
            if self._backend.scan(buffer):
                return None if probe else self._attribute(pending, hits)
        if probe:
            # Nothing matched: every value seen for the first time is known clean now.
            self._remember(fresh)
        return hits

    @property
    def remembered(self) -> int:
        """How many values are remembered as clean."""
        return self._clean_count

    def forget(self) -> None:
        """Forget every value remembered as clean."""
        self.known.clear()
        self._clean_count = 0
        self._clean_chars = 0

    def _remember(self, fresh: list[tuple[set[str], str]]) -> None:
        if not fresh:
            return
        chars = 0
        for _, value in fresh:
            chars += len(value)
        if self._clean_count + len(fresh) > CLEAN_CACHE_ENTRIES or self._clean_chars + chars > CLEAN_CACHE_TOTAL_CHARS:
            # Bounded: start over rather than track ages. Unique values (an attacker's or
            # free text) then only cost the lookup that missed.
            self.forget()
        for bucket, value in fresh:
            bucket.add(value)
        self._clean_count += len(fresh)
        self._clean_chars += chars

    def _attribute(self, pending: list[Input], hits: list[Hit]) -> list[Hit]:
        """Rescan the inputs one by one to attribute the buffer's matches."""
        detected = {(h.rule.id, h.location) for h in hits}
        for inp in pending:
            for hit in self._scan_patterns(inp):
                if (hit.rule.id, hit.location) not in detected:
                    hits.append(hit)
        return hits

    def _scan_patterns(self, inp: Input) -> list[Hit]:
        seen: dict[int, Hit] = {}
        for window in windows(inp.value):
            for view in views(window):
                for rule_id, end in self._backend.scan(view.encode("utf-8", "surrogatepass")):
                    if rule_id not in seen:
                        seen[rule_id] = Hit(ALL_RULES[rule_id], inp.location, redact(view, end), inp.content)
        return list(seen.values())

    def _add(self, seen: dict[int, Hit], rule_id: int, inp: Input, view: str) -> None:
        if rule_id in self._detectors and rule_id not in seen:
            seen[rule_id] = Hit(self._detectors[rule_id], inp.location, redact(view, 0), inp.content)

    def _detect(self, view: str, inp: Input, seen: dict[int, Hit]) -> None:
        """The rules implemented in code."""
        det = self._detectors
        if (
            self._lib_sqli
            and 1901 not in seen
            # (A two-character needle is a slow scan; a one-character one is memchr: the
            # rare character first.)
            and (
                "'" in view
                or '"' in view
                or "`" in view
                or "#" in view
                or ("-" in view and "--" in view)
                or ("/" in view and "/*" in view)
            )
            and libinj.is_sqli(view)
        ):
            self._add(seen, 1901, inp, view)
        if self._lib_xss and 2901 not in seen and "<" in view and libinj.is_xss(view):
            self._add(seen, 2901, inp, view)
        if 6001 in det and 6001 not in seen and "/" in view and "//" in view and ssrf.check_ssrf(view):
            self._add(seen, 6001, inp, view)
        if (
            6002 in det
            and 6002 not in seen
            and len(view) <= 64
            and view[:1] in _HOST_START
            and ssrf.check_bare_encoded_host(view)
        ):
            self._add(seen, 6002, inp, view)
        if inp.is_key:
            if 7901 in det and view.startswith("$") and view.lower() in NOSQL_OPERATORS:
                self._add(seen, 7901, inp, view)
            if 15901 in det and view == "constructor.prototype":
                self._add(seen, 15901, inp, view)
            if 12005 in det and inp.location.startswith(_PARAM_NAME_LOCATIONS) and session_param(view):
                self._add(seen, 12005, inp, view)
        if inp.content == FILE_NAME:
            if 3041 in det and script_upload(view):
                self._add(seen, 3041, inp, view)
            if 4011 in det and upload_climbs(view):
                self._add(seen, 4011, inp, view)
        # (The location first: most views are a body's, where neither applies.)
        if 12902 in det and inp.location.startswith(_NO_LINE_LOCATIONS) and ("\n" in view or "\r" in view):
            self._add(seen, 12902, inp, view)
        if 12901 in det and ("\n" in view or "\r" in view) and inp.location.startswith(_LINE_LOCATIONS):
            self._add(seen, 12901, inp, view)
