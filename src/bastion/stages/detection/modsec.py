"""``engine: modsecurity``: SecRules (the OWASP CRS, typically) run by libmodsecurity.

For users who already tune the Core Rule Set. Each request is fed to a ModSecurity
transaction (connection, URI, headers, body: phases 1 and 2); ModSecurity's intervention
decides, the rules it matched become the verdict's hits. The rules are parsed once per
process for each distinct configuration and shared by every route that uses it.

How Bastion's settings map (see also docs/config-reference.md):

- ``paranoia`` and ``threshold`` set the CRS variables ``tx.paranoia_level`` and
  ``tx.inbound_anomaly_score_threshold`` before the rule files run (a ``crs-setup.conf``
  that sets them itself wins). CRS scores a critical rule 5, an error 4, a warning 3 and a
  notice 2, as Bastion's own rules do, so the threshold means the same.
- ``enforce``: the rule engine is always on; by default Bastion refuses (403) what
  ModSecurity would refuse, whatever status or redirect the rule asked for; with
  ``enforce: false`` (shadow mode) it forwards it and logs the decision.
- ``max_inspected_chars``: a body longer than this is inspected up to it
  (``SecRequestBodyLimitAction ProcessPartial``) and the request counts as uninspected
  (``characters``); so does a query string with more than ``max_inputs`` parameters
  (``inputs``) and a body ModSecurity could not parse: malformed JSON or XML, more than
  ``max_inputs`` arguments or JSON deeper than ``max_json_depth`` (``request_body``).
  ``uninspectable`` then decides, as for the native engine.
- Hits: a rule's category comes from its ``attack-*`` tag (``sqli``, ``xss``, ``cmdi`` for
  ``rce``, ``path_traversal`` for ``lfi``...), its location is the ModSecurity variable it
  matched (``ARGS:id``, ``REQUEST_HEADERS:User-Agent``), its snippet the matched data,
  escaped and cut to 40 characters. The CRS's scoring rules (949xxx, 959xxx, 980xxx) are not
  hits: they count the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bastion.stages.detection.config import DetectionConfig
from bastion.stages.detection.engine import access_log_record
from bastion.stages.detection.matcher import redact
from bastion.stages.detection.secrules import load_rules
from bastion.types import Request

if TYPE_CHECKING:
    from libmodsecurity import ModSecurity, RuleMessage, RulesSet

#: Bastion's own rule IDs in the rules it generates around the user's files.
RULE_JSON_BODY = 1000001
RULE_XML_BODY = 1000002
RULE_SETTINGS = 1000003
RULE_BODY_ERROR = 1000004
#: The CRS rules that add up the others' scores and decide (not detections themselves).
_SCORING_RANGES = ((949000, 949999), (959000, 959999), (980000, 980999))
#: CRS ``attack-*`` tags under the names of Bastion's own categories where they mean the same.
_CATEGORY_NAMES = {
    "rce": "cmdi",
    "lfi": "path_traversal",
    "injection-php": "php",
    "injection-java": "java",
    "injection-nodejs": "nodejs",
    "injection-generic": "generic",
    "reputation-scanner": "recon",
    "reputation-ip": "reputation",
    "fixation": "session_fixation",
    "multipart-header": "multipart",
}
#: Anomaly points of a ModSecurity severity (0 emergency ... 7 debug), as the CRS counts them.
_POINTS = {0: 5, 1: 5, 2: 5, 3: 4, 4: 3, 5: 2}
_SNIPPET_CHARS = 40
_LOCATION_CHARS = 128


@dataclass(frozen=True, slots=True)
class SecRuleHit:
    """One SecRule that matched (what :class:`matcher.Hit` is for the native engine)."""

    rule_id: int
    category: str
    #: Anomaly points (5 critical, 4 error, 3 warning, 2 notice, 0 below).
    severity: int
    location: str
    snippet: str


@dataclass(slots=True)
class ModSecurityVerdict:
    """What ModSecurity decided about one request, in the native verdict's shape."""

    score: int = 0
    total_score: int = 0
    hits: list[SecRuleHit] = field(default_factory=list)
    block_category: str | None = None
    monitor_category: str | None = None
    uninspected: str | None = None

    def log_record(self) -> dict[str, Any]:
        """The access-log form, with the same fields as the native engine's."""
        return access_log_record(
            self.score,
            self.total_score,
            self.block_category,
            self.monitor_category,
            self.uninspected,
            [(h.rule_id, h.category, h.severity, h.location, h.snippet) for h in self.hits],
        )


def _discard(message: str) -> None:
    """ModSecurity's text log: without a callback it prints every match on stdout."""


_ENGINE: ModSecurity | None = None
#: Parsed rule sets by their source (generated text, files and their modification times).
_RULES: dict[tuple[str, tuple[tuple[str, int, int], ...], str], RulesSet] = {}


def _engine() -> ModSecurity:
    global _ENGINE
    if _ENGINE is None:
        from libmodsecurity import ModSecurity

        _ENGINE = ModSecurity()
        _ENGINE.set_connector_information("Bastion")
        _ENGINE.set_log_callback(_discard)
    return _ENGINE


def settings_rules(config: DetectionConfig) -> str:
    """The SecLanguage Bastion loads before the user's files: engine, bodies, limits, and the
    CRS paranoia level and threshold."""
    limit = config.max_inspected_chars
    return (
        "SecRuleEngine On\n"
        "SecRequestBodyAccess On\n"
        f"SecRequestBodyLimit {limit}\n"
        f"SecRequestBodyNoFilesLimit {limit}\n"
        "SecRequestBodyLimitAction ProcessPartial\n"
        f"SecArgumentsLimit {config.max_inputs}\n"
        f"SecRequestBodyJsonDepthLimit {config.max_json_depth}\n"
        "SecResponseBodyAccess Off\n"
        "SecAuditEngine Off\n"
        "SecArgumentSeparator &\n"
        "SecCookieFormat 0\n"
        # Parse JSON and XML bodies into ARGS, as the CRS expects.
        'SecRule REQUEST_HEADERS:Content-Type "@rx (?i)^application/(?:[a-z.+-]+\\+)?json" '
        f'"id:{RULE_JSON_BODY},phase:1,t:none,pass,nolog,ctl:requestBodyProcessor=JSON"\n'
        'SecRule REQUEST_HEADERS:Content-Type "@rx (?i)^(?:application|text)/(?:[a-z.+-]+\\+)?xml" '
        f'"id:{RULE_XML_BODY},phase:1,t:none,pass,nolog,ctl:requestBodyProcessor=XML"\n'
        f'SecAction "id:{RULE_SETTINGS},phase:1,t:none,pass,nolog,'
        f"setvar:tx.paranoia_level={config.paranoia},"
        f'setvar:tx.inbound_anomaly_score_threshold={config.threshold}"\n'
        # A body ModSecurity could not parse was not inspected as arguments.
        f'SecRule REQBODY_ERROR "!@eq 0" "id:{RULE_BODY_ERROR},phase:2,t:none,pass,log,'
        "msg:'Request body not parsed'\"\n"
    )


def shared_rules(config: DetectionConfig) -> RulesSet:
    """The parsed rules for ``config``, loaded once per process and shared by every route
    with the same settings (re-read when a file changes, e.g. before a reload)."""
    from libmodsecurity import RulesSet

    settings = config.modsecurity
    files = settings.files()
    stats = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    key = (settings_rules(config), stats, settings.directives)
    rules = _RULES.get(key)
    if rules is None:
        rules = RulesSet()
        problem = None if rules.load(key[0]) >= 0 else rules.get_parser_error()
        # Bastion's mode decides, whatever a rule file says about SecRuleEngine.
        problem = problem or load_rules(rules, files, settings.directives + "\nSecRuleEngine On\n")
        if problem is not None:
            raise ValueError(f"ModSecurity cannot load the rules: {problem}")
        _RULES[key] = rules
    return rules


def _wire(text: str) -> bytes:
    """The bytes a header or target had on the wire (Bastion decodes them as latin-1)."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _between(text: str, start: str, end: str) -> str | None:
    i = text.find(start)
    if i < 0:
        return None
    i += len(start)
    j = text.find(end, i)
    return text[i:] if j < 0 else text[i:j]


def _text(message: RuleMessage, name: str) -> str:
    """A text field of ``message``. The bindings decode ModSecurity's bytes as strict UTF-8,
    and a rule's log data carries request bytes (``%ff`` in a query is enough), so reading
    it can raise: the bytes are then taken from the error, undecodable ones replaced."""
    try:
        return str(getattr(message, name))
    except UnicodeDecodeError as exc:
        raw = exc.object
        return bytes(raw).decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else ""


def _hit(message: RuleMessage) -> SecRuleHit:
    """A matched rule as a hit: category from its tags, location and snippet from its log data."""
    category = "modsecurity"
    for tag in message.tags:
        if tag.startswith("attack-"):
            name = tag[len("attack-") :]
            category = _CATEGORY_NAMES.get(name, name)
            break
    # "Matched Data: <data> found within <VARIABLE>: <value>", or the operator's own text.
    data = _text(message, "data")
    snippet = _between(data, "Matched Data: ", " found within ") if data.startswith("Matched Data: ") else None
    location = _between(data, " found within ", ": ") if snippet is not None else None
    if location is None:
        location = _between(_text(message, "match"), "against variable `", "'")
    return SecRuleHit(
        rule_id=message.rule_id,
        category=category,
        severity=_POINTS.get(message.severity, 0),
        location=redact(location or "", 0, _LOCATION_CHARS),
        snippet=redact(snippet if snippet is not None else data, 0, _SNIPPET_CHARS),
    )


def _scoring(rule_id: int) -> bool:
    return any(low <= rule_id <= high for low, high in _SCORING_RANGES)


class ModSecurityEngine:
    """Config-bound ModSecurity detector; :meth:`evaluate` is the per-request work.

    Same interface as :class:`DetectionEngine` (``active``, ``evaluate``)."""

    def __init__(self, config: DetectionConfig) -> None:
        self.config = config
        self.active = config.enabled
        self._engine = _engine()
        self._rules = shared_rules(config)
        self._block = config.enforce
        self._max_chars = config.max_inspected_chars
        self._max_inputs = config.max_inputs

    def evaluate(self, request: Request) -> ModSecurityVerdict:
        """Run ``request`` through ModSecurity's request phases and read what it decided."""
        from libmodsecurity import Transaction

        verdict = ModSecurityVerdict()
        if not self.active:
            return verdict
        tx = Transaction(self._engine, self._rules)
        tx.process_connection(request.client_ip, 0, "0.0.0.0", 0)
        # The stubs say str, but the bindings (pybind11, std::string) take bytes too: the
        # request's bytes as they were on the wire, not re-encoded as UTF-8.
        tx.process_uri(_wire(request.raw_target), request.method, request.http_version)  # type: ignore[arg-type]
        body = request.body or b""
        has_length = False
        for name, value in request.headers:
            has_length = has_length or name == "content-length"
            tx.add_request_header(_wire(name), _wire(value))  # type: ignore[arg-type]
        if body and not has_length:
            # A chunked body arrives without one (Transfer-Encoding is not passed on).
            tx.add_request_header("content-length", str(len(body)))
        tx.process_request_headers()
        intervention = tx.intervention()
        if intervention is None:
            if body:
                tx.append_request_body(body[: self._max_chars])
            tx.process_request_body()
            intervention = tx.intervention()
        if len(body) > self._max_chars:
            verdict.uninspected = "characters"
        elif request.query.count("&") >= self._max_inputs:
            verdict.uninspected = "inputs"
        blocking: dict[str, int] = {}
        for message in tx.get_rule_messages():
            if message.rule_id == RULE_BODY_ERROR:
                verdict.uninspected = verdict.uninspected or "request_body"
            elif not _scoring(message.rule_id):
                hit = _hit(message)
                verdict.hits.append(hit)
                verdict.total_score += hit.severity
                blocking[hit.category] = blocking.get(hit.category, 0) + hit.severity
        verdict.hits.sort(key=lambda h: -h.severity)
        if intervention is not None and (intervention.disruptive or intervention.status != 200):
            category = max(blocking, key=lambda c: blocking[c]) if blocking else "modsecurity"
            if self._block:
                verdict.score = verdict.total_score
                verdict.block_category = category
            else:
                verdict.monitor_category = category
        return verdict
