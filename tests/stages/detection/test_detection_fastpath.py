"""The fast path (unnamed extraction + probe) never decides differently from the full one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from detection_helpers import make_request

from bastion.stages.detection import DetectionEngine
from bastion.stages.detection.content import FILE_NAME
from bastion.stages.detection.inspect import KNOWN_MAX_CHARS, Cut, Input, Known, Limits, extract
from bastion.stages.detection.normalize import base64_text
from bastion.types import Request
from tests.corpora import GOTESTWAF, require

BENCH = Path(__file__).resolve().parents[3] / "bench" / "detection"
CORPORA = [
    BENCH / "benign.jsonl",
    GOTESTWAF,
]


def _requests(path: Path) -> list[Request]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        target = row["path"]
        p, _, q = target.partition("?")
        request = Request(row["method"], target, p, q, [(k.lower(), v) for k, v in row["headers"]])
        request.body = (row.get("body") or "").encode() or None
        out.append(request)
    return out


def _kind(inp: Input) -> tuple[str, str, bool, bool]:
    """An input with its location cut to the kind, as ``named=False`` gives it."""
    kind = inp.location.split(":", 1)[0]
    return kind, inp.value, inp.is_key, inp.markup


@pytest.mark.parametrize("corpus", CORPORA, ids=lambda p: p.name)
def test_unnamed_extraction_has_the_same_inputs(corpus: Path) -> None:
    """``extract(named=False)`` yields the same values, flags and location kinds, in order
    (multipart and XML parts keep their full names there; only the kind is compared)."""
    require(corpus)
    for request in _requests(corpus):
        named = [_kind(i) for i in extract(request)]
        unnamed = [_kind(i) for i in extract(request, named=False)]
        assert unnamed == named


@pytest.mark.parametrize("corpus", CORPORA, ids=lambda p: p.name)
def test_probe_is_false_only_when_nothing_matches(engine: DetectionEngine, corpus: Path) -> None:
    """Whenever the full matcher finds a hit, the probe over the unnamed inputs says so too."""
    require(corpus)
    matcher = engine.matcher
    for request in _requests(corpus):
        hits = matcher.match_inputs(extract(request))
        if hits:
            assert matcher.probe(extract(request, named=False)), request.raw_target


def test_alphanumeric_base64_payload_is_still_decoded(engine: DetectionEngine) -> None:
    """A payload whose base64 is letters and digits only still gets its decoded view inspected."""
    encoded = "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg"  # <script>alert(1)</script>, unpadded
    assert encoded.isalnum() and base64_text(encoded) == "<script>alert(1)</script>"
    verdict = engine.evaluate(make_request("/p?data=" + encoded))
    assert verdict.block_category == "xss"


def test_packed_ip_in_plain_digits_is_still_checked(engine: DetectionEngine) -> None:
    """A plain-digit value goes through the numeric-host check (paranoia 2 rule) at PL2."""
    from bastion.stages.detection import DetectionConfig

    strict = DetectionEngine(DetectionConfig(paranoia=2))
    verdict = strict.evaluate(make_request("/fetch?host=2130706433"))
    assert 6002 in {h.rule.id for h in verdict.hits}
    assert not engine.evaluate(make_request("/items?id=2130706433")).hits


def test_whole_query_hit_names_the_parameter(engine: DetectionEngine) -> None:
    """A rule that matches both the whole query string and one parameter logs the parameter."""
    verdict = engine.evaluate(make_request("/s?a=1&b=2&id=1%27%20UNION%20SELECT%20pw%20FROM%20users--"))
    assert verdict.block_category == "sqli"
    assert "query:id" in {h.location for h in verdict.hits}
    assert "query" not in {h.location for h in verdict.hits if h.rule.category == "sqli"}


def _decisions(engine: DetectionEngine, requests: list[Request]) -> list[tuple[str | None, frozenset[tuple[int, str]]]]:
    out = []
    for request in requests:
        verdict = engine.evaluate(request)
        out.append((verdict.block_category, frozenset((h.rule.id, h.location) for h in verdict.hits)))
    return out


@pytest.mark.parametrize("paranoia", [1, 2])
def test_remembered_clean_values_never_change_a_decision(paranoia: int) -> None:
    """Values remembered from clean requests are skipped later: replaying both corpora
    through an engine warmed on them gives exactly the verdicts and hits of a cold engine
    that sees each request first."""
    from bastion.stages.detection import DetectionConfig

    requests = [r for corpus in CORPORA for r in _requests(require(corpus))]
    engine = DetectionEngine(DetectionConfig(paranoia=paranoia))
    cold = []
    for request in requests[::3]:
        engine.matcher.forget()
        cold.extend(_decisions(engine, [request]))
    _decisions(engine, requests)
    assert engine.matcher.remembered > 0
    assert _decisions(engine, requests[::3]) == cold


#: Location kinds where a line break is suspicious (Known's line_* sets).
_LINE_KINDS = frozenset({"path", "query", "query-name", "header", "cookie", "cookie-name"})


@pytest.mark.parametrize("corpus", CORPORA, ids=lambda p: p.name)
def test_known_values_are_left_out_but_still_count_against_the_limits(corpus: Path) -> None:
    """``extract(known=...)`` gives the inputs of ``extract()`` without the known values, in
    the same order, and the limits cut exactly where they cut without them: a known value
    still counts as an input and as characters inspected."""
    require(corpus)
    known = Known(lines_apart=True)

    def is_known(inp: Input) -> bool:
        bucket = known.bucket(inp.is_key, inp.location in _LINE_KINDS)
        # (Markup and an upload's file name are never left out: see _Sink.add.)
        return not inp.markup and inp.content != FILE_NAME and len(inp.value) <= KNOWN_MAX_CHARS and inp.value in bucket

    cuts = set()
    left_out = 0
    for limits in (Limits(), Limits(max_inputs=6), Limits(max_total_chars=150), Limits(9, 32, 400)):
        known.clear()
        for request in _requests(corpus):
            full_cut, known_cut = Cut(), Cut()
            everything = extract(request, limits, named=False, cut=full_cut)
            kept = extract(request, limits, named=False, cut=known_cut, known=known)
            expected = [i for i in everything if not is_known(i)]
            assert kept == expected, request.raw_target
            assert known_cut.reason == full_cut.reason, request.raw_target
            left_out += len(everything) - len(kept)
            cuts.add(full_cut.reason)
            for inp in everything[::2]:  # remember some, as the matcher would
                if not inp.markup and inp.content != FILE_NAME and len(inp.value) <= KNOWN_MAX_CHARS:
                    known.bucket(inp.is_key, inp.location in _LINE_KINDS).add(inp.value)
    assert left_out > 1000
    assert {"inputs", "characters", None} <= cuts


def test_a_clean_value_is_remembered_per_kind(engine: DetectionEngine) -> None:
    """``$ne`` is harmless as a JSON value but a NoSQL operator as a key: remembering the
    value does not let the key through."""
    as_value = make_request("/u", method="POST", body='{"op": "$ne"}', content_type="application/json")
    as_key = make_request("/u", method="POST", body='{"password": {"$ne": 1}}', content_type="application/json")
    assert engine.evaluate(as_value).block_category is None
    assert engine.evaluate(as_value).block_category is None
    assert engine.evaluate(as_key).block_category == "nosqli"


def test_a_line_break_remembered_in_a_body_is_still_checked_in_a_header() -> None:
    """At paranoia 2 a line break is suspicious in headers but not in JSON text: a value
    seen clean in a body is still checked when it arrives in a header."""
    from bastion.stages.detection import DetectionConfig

    strict = DetectionEngine(DetectionConfig(paranoia=2))
    text = "first line\nsecond line"
    body = make_request("/n", method="POST", body=json.dumps({"note": text}), content_type="application/json")
    assert strict.evaluate(body).block_category is None
    verdict = strict.evaluate(make_request("/n", headers=[("x-note", text)]))
    assert 12901 in {h.rule.id for h in verdict.hits}


def test_remembered_values_are_bounded() -> None:
    """The memory of clean values is bounded: it starts over when full."""
    from bastion.stages.detection import DetectionConfig
    from bastion.stages.detection.matcher import CLEAN_CACHE_ENTRIES, CLEAN_CACHE_TOTAL_CHARS

    engine = DetectionEngine(DetectionConfig())
    for i in range(CLEAN_CACHE_ENTRIES // 4 + 10):
        engine.evaluate(make_request(f"/items?a=x{i}&b=y{i}&c=z{i}"))
    assert 0 < engine.matcher.remembered <= CLEAN_CACHE_ENTRIES
    for i in range(1000):  # long values: the bound on characters applies first
        engine.evaluate(make_request("/items", headers=[("x-note", f"{i} " + "word " * 400)]))
    assert 0 < engine.matcher._clean_chars <= CLEAN_CACHE_TOTAL_CHARS


def test_json_parsed_by_validation_is_inspected_the_same() -> None:
    """When validation has parsed the body, detection walks that value instead of parsing
    again, and decides exactly as it would from the bytes."""
    import orjson

    from bastion.stages.detection import DetectionConfig

    engine = DetectionEngine(DetectionConfig())
    checked = 0
    for corpus in CORPORA:
        if not corpus.exists():
            continue
        for request in _requests(corpus):
            if not request.body or "json" not in (request.header("content-type") or ""):
                continue
            try:
                value = orjson.loads(request.body)
            except orjson.JSONDecodeError:
                continue
            engine.matcher.forget()
            plain = _decisions(engine, [request])
            request.parsed_json = (value,)
            engine.matcher.forget()
            assert _decisions(engine, [request]) == plain, request.raw_target
            checked += 1
    assert checked > 100


def test_plain_json_keys_are_remembered_boundedly_and_never_hide_a_payload() -> None:
    """JSON keys found plain are remembered (a set lookup instead of character tests on the
    next request); the memory is bounded, and names that can carry an attack are inspected
    every time, before and after plain keys were remembered."""
    from bastion.stages.detection import inspect

    doc = {f"field_{i}": "x" for i in range(inspect.PLAIN_KEYS_MAX + 10)}
    for _ in range(2):
        request = make_request("/", method="POST", body=json.dumps(doc), content_type="application/json")
        keys = [i for i in extract(request, named=False) if i.is_key]
        assert keys == []
        assert 0 < len(inspect._PLAIN_KEYS) <= inspect.PLAIN_KEYS_MAX
    risky = {"__proto__": 1, "constructor": {"prototype": 1}, "$ne": 1, "a b": 1, "é": 1, "k" * 100: 1}
    for _ in range(2):
        request = make_request("/", method="POST", body=json.dumps(risky), content_type="application/json")
        found = {i.value for i in extract(request, named=False) if i.is_key}
        assert found == {"__proto__", "constructor", "constructor.prototype", "$ne", "a b", "é"}
    assert "k" * 100 not in inspect._PLAIN_KEYS  # long keys are tested, not remembered
    assert not {"__proto__", "constructor", "$ne"} & inspect._PLAIN_KEYS
