"""The detection engine: every input of a request matched, hits scored into a verdict.

Kept apart from the stage's hook (``stage.py``) so it can be compiled with mypyc: every
inspected request runs this code.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

from bastion.stages.detection.config import DetectionConfig
from bastion.stages.detection.content import OFF, ContentMap
from bastion.stages.detection.inspect import Cut, Limits, extract
from bastion.stages.detection.matcher import Hit, Matcher, redact
from bastion.stages.detection.protocol import ProtocolChecks
from bastion.stages.detection.rules import ALL_RULES, CATEGORIES, Category
from bastion.types import Block, Decision, Exchange, Request

#: What a client is told when the stage refuses its request.
BLOCK_TITLE: Final = "Forbidden"
BLOCK_DETAIL: Final = "The request was blocked by the gateway's attack detection."
UNINSPECTABLE_TITLE: Final = "Content Too Large"
UNINSPECTABLE_DETAIL: Final = "The request carries more content than the gateway inspects for attacks."

#: At most this many hits are written to the access log for one request.
MAX_LOGGED_HITS: Final = 16
#: Locations of a whole query string or form body (also inspected parameter by parameter).
_WHOLE: Final = frozenset({"query", "form"})


class Verdict:
    """What the engine found in one request.

    A plain class rather than a dataclass: every request gets one, and compiled, this one
    is built by a native call (the dataclass cost a third of a microsecond a request)."""

    __slots__ = ("block_category", "hits", "monitor_category", "score", "total_score", "uninspected")

    def __init__(self) -> None:
        #: Score of the hits in categories that block.
        self.score = 0
        #: Score of every counted hit, including monitored categories.
        self.total_score = 0
        self.hits: list[Hit] = []
        #: Category with the highest blocking score, when the request is to be blocked.
        self.block_category: Category | None = None
        #: Category that would have blocked, had it (or the route) been in block mode.
        self.monitor_category: Category | None = None
        #: Which limit left part of the request uninspected ("inputs", "characters",
        #: "json_depth", "decompressed_size"), or None when all of it was inspected.
        self.uninspected: str | None = None

    def __repr__(self) -> str:
        return (
            f"Verdict(score={self.score}, total_score={self.total_score}, hits={self.hits!r}, "
            f"block_category={self.block_category!r}, monitor_category={self.monitor_category!r}, "
            f"uninspected={self.uninspected!r})"
        )

    def log_record(self) -> dict[str, Any]:
        """The access-log form: rule IDs, categories, locations and redacted snippets."""
        return access_log_record(
            self.score,
            self.total_score,
            self.block_category,
            self.monitor_category,
            self.uninspected,
            [(h.rule.id, h.rule.category, int(h.rule.severity), h.location, h.snippet) for h in self.hits],
        )


def access_log_record(
    score: int,
    total_score: int,
    block_category: str | None,
    monitor_category: str | None,
    uninspected: str | None,
    hits: list[tuple[int, str, int, str, str]],
) -> dict[str, Any]:
    """A verdict's access-log record, whichever engine gave it; ``hits`` are (rule ID,
    category, severity, location, snippet), the first :data:`MAX_LOGGED_HITS` logged."""
    return {
        "score": score,
        "total_score": total_score,
        "blocked": block_category is not None,
        "category": block_category or monitor_category,
        "uninspected": uninspected,
        "hits": [
            {"rule": rule, "category": category, "severity": severity, "location": location, "snippet": snippet}
            for rule, category, severity, location, snippet in hits[:MAX_LOGGED_HITS]
        ],
    }


#: Compiled matchers by (paranoia, categories, backend): compiling the rule databases takes
#: most of a second, and every route of a service usually has the same settings.
_MATCHERS: Final[dict[tuple[int, frozenset[str], str], Matcher]] = {}


def shared_matcher(paranoia: int, categories: list[Category], prefer: str = "hyperscan") -> Matcher:
    """The matcher for these settings, compiled once per process and shared by every route
    that uses them (its memory of clean values depends on nothing else)."""
    key = (paranoia, frozenset(categories), prefer)
    matcher = _MATCHERS.get(key)
    if matcher is None:
        matcher = _MATCHERS[key] = Matcher(paranoia, categories, prefer=prefer)
    return matcher


class DetectionEngine:
    """Config-bound detector, compiled once; :meth:`evaluate` is the per-request work."""

    def __init__(
        self, config: DetectionConfig, *, prefer: str = "hyperscan", content: ContentMap | None = None
    ) -> None:
        self.config = config
        #: What the route's JSON body fields hold, from its OpenAPI operation (see
        #: :mod:`.content`); ``None`` when it declares nothing.
        self._content = content
        self._modes = {c: config.category_mode(c) for c in CATEGORIES}
        active = [c for c, m in self._modes.items() if m != "off"]
        self.matcher = shared_matcher(config.paranoia, active, prefer)
        self._limits = Limits(
            max_inputs=config.max_inputs,
            max_json_depth=config.max_json_depth,
            max_total_chars=config.max_inspected_chars,
            max_decompressed=config.max_inspected_chars,
        )
        self._exclusions = tuple(config.exclusions)
        self.active = bool(active) and config.enabled
        #: The protocol checks, unless their category is off.
        self._protocol: ProtocolChecks | None = None
        if self._modes["protocol"] != "off":
            self._protocol = ProtocolChecks(frozenset(config.allowed_charsets))

    def evaluate(self, request: Request) -> Verdict:
        """Inspect every input of ``request`` and score what matches."""
        verdict = Verdict()
        if not self.active:
            return verdict
        # Nearly every request matches nothing: find that out without building the
        # inputs' locations, and build them (extract again) only when something matched.
        cut = Cut()
        matcher = self.matcher
        content = self._content
        inputs = extract(request, self._limits, named=False, cut=cut, known=matcher.known, content=content)
        verdict.uninspected = cut.reason
        checks = self._protocol
        protocol = checks.findings(request) if checks is not None else None
        if not protocol and not matcher.probe(inputs):
            return verdict
        best: dict[int, Hit] = {}
        for hit in matcher.match_inputs(extract(request, self._limits, known=matcher.known, content=content)):
            if hit.content and hit.rule.category in OFF[hit.content]:
                continue  # the field's declared content makes this category moot there
            if hit.rule.id == SESSION_FIXATION and _same_site(request):
                continue  # the site's own link (URL rewriting when cookies are off)
            seen = best.get(hit.rule.id)
            if (seen is not None and seen.location not in _WHOLE) or self._excluded(hit):
                continue
            # A hit in one parameter names the input better than one in the whole string.
            best[hit.rule.id] = hit
        # After the attack rules: on a tie, the request is named for its attack.
        for rule_id, location, value in protocol or ():
            hit = Hit(ALL_RULES[rule_id], location, redact(value, 0))
            if rule_id not in best and not self._excluded(hit):
                best[rule_id] = hit
        if not best:
            return verdict
        verdict.hits = sorted(best.values(), key=lambda h: -h.rule.severity)
        blocking: dict[Category, int] = {}
        monitored: dict[Category, int] = {}
        for hit in verdict.hits:
            category = hit.rule.category
            points = int(hit.rule.severity)
            verdict.total_score += points
            if self._modes[category] == "block":
                verdict.score += points
                blocking[category] = blocking.get(category, 0) + points
            monitored[category] = monitored.get(category, 0) + points
        threshold = self.config.threshold
        if verdict.score >= threshold:
            verdict.block_category = _top(blocking)
        elif verdict.total_score >= threshold:
            verdict.monitor_category = _top(monitored)
        return verdict

    def _excluded(self, hit: Hit) -> bool:
        rule = hit.rule
        return any(e.covers(rule.id, rule.category, hit.location) for e in self._exclusions)


class DetectionHook:
    """The stage's request hook for the native engine, compiled (``stage.py`` is not): every
    inspected request goes through it, and it spares each one an interpreted frame."""

    def __init__(self, name: str, engine: DetectionEngine, block_uninspectable: bool) -> None:
        self.name = name
        self.engine = engine
        #: Whether a request left partly uninspected is refused (see ``DetectionStage``).
        self.block_uninspectable = block_uninspectable

    def on_request(self, exchange: Exchange) -> Block | None:
        """``None`` to go on (monitor decisions recorded), or the refusal."""
        engine = self.engine
        if not engine.active:
            return None
        verdict = engine.evaluate(exchange.request)
        if not verdict.hits and verdict.uninspected is None:
            return None
        return decide(
            self.name, exchange, verdict.log_record(), verdict.block_category, verdict.monitor_category,
            verdict.uninspected, self.block_uninspectable,
        )


def decide(
    name: str,
    exchange: Exchange,
    record: dict[str, Any],
    block_category: str | None,
    monitor_category: str | None,
    uninspected: str | None,
    block_uninspectable: bool,
) -> Block | None:
    """What a verdict with something to say means for ``exchange``, whichever engine gave it:
    its access-log ``record`` in the facts, then a refusal, or monitor decisions."""
    exchange.facts[name] = record
    if block_category is not None:
        return Block(403, BLOCK_TITLE, BLOCK_DETAIL, reason=f"detection.{block_category}")
    if uninspected is not None:
        # Part of the request was not inspected: an attack could sit past the limit.
        if block_uninspectable:
            return Block(413, UNINSPECTABLE_TITLE, UNINSPECTABLE_DETAIL, reason="detection.uninspectable")
        exchange.decisions.append(Decision(name, "monitor", "detection.uninspectable", 413))
    if monitor_category is not None:
        exchange.decisions.append(Decision(name, "monitor", f"detection.{monitor_category}", 403))
    return None


#: The rule for a session cookie sent as a parameter (see matcher.SESSION_PARAMS).
SESSION_FIXATION: Final = 12005


def _same_site(request: Request) -> bool:
    """Whether the request's Referer names its own host: a session ID in the link is then the
    site's own URL rewriting, not a link another site made (no Referer: not known to be)."""
    referer = request.header("referer")
    if not referer:
        return False
    try:
        origin = urlsplit(referer).hostname
        own = urlsplit("//" + (request.host or request.header("host") or "")).hostname
    except ValueError:
        return False
    return origin is not None and origin == own


def _top(scores: dict[Category, int]) -> Category:
    """The category with the highest score (the first one on a tie). A request with an
    attack in it is named for the attack: ``protocol`` only when nothing else hit."""
    if "protocol" in scores and len(scores) > 1:
        scores = {c: p for c, p in scores.items() if c != "protocol"}
    best: Category = next(iter(scores))
    for category, points in scores.items():
        if points > scores[best]:
            best = category
    return best
