"""The stage: config schema, modes, exclusions, block response and access-log context."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from detection_helpers import make_request
from pydantic import ValidationError

import bastion.stages.detection as detection
from bastion.stages.detection import SPEC, DetectionConfig, DetectionEngine, DetectionStage, Exclusion
from bastion.stages.detection.matcher import Matcher
from bastion.stages.detection.rules import ALL_RULES, CATEGORIES, RULES
from bastion.types import Block, Exchange

ATTACK = "/search?q=" + quote("<script>alert(1)</script>")


def _run(stage: DetectionStage, target: str = ATTACK) -> tuple[object, Exchange]:
    exchange = Exchange(make_request(target), request_id="r1")
    return stage.on_request(exchange), exchange


def test_spec_and_public_api() -> None:
    """The package exposes the stage spec and exactly the names in ``__all__``."""
    assert SPEC.name == "detection"
    assert SPEC.config_model is DetectionConfig
    assert SPEC.default_on is False
    assert SPEC.extension == "x-bastion-detection"
    assert DetectionStage.needs_request_body is True
    assert sorted(detection.__all__) == sorted(
        ["SPEC", "DetectionConfig", "DetectionEngine", "DetectionStage", "Exclusion", "Verdict"]
    )
    assert isinstance(SPEC.build(DetectionConfig()), DetectionStage)


def test_block_mode_returns_403_block_and_logs() -> None:
    """In block mode an attack gets the generic 403 Block and the hits go to the context."""
    outcome, exchange = _run(DetectionStage(DetectionConfig()))
    assert outcome == Block(
        403,
        "Forbidden",
        "The request was blocked by the gateway's attack detection.",
        reason="detection.xss",
    )
    record = exchange.facts["detection"]
    assert record["blocked"] is True
    assert {h["location"] for h in record["hits"]} >= {"query:q"}


def test_shadow_mode_logs_but_passes() -> None:
    """In shadow mode (enforce: false) the request passes, the detection is logged as not
    blocked, and a monitor decision is made (with the status it would have had)."""
    outcome, exchange = _run(DetectionStage(DetectionConfig(enforce=False)))
    assert outcome is None
    assert exchange.facts["detection"]["category"] == "xss"
    assert exchange.facts["detection"]["blocked"] is False
    assert [(d.action, d.reason, d.status) for d in exchange.decisions] == [("monitor", "detection.xss", 403)]


def test_disabled_stage_does_nothing() -> None:
    """With enabled: false (the loader leaves the stage out anyway) nothing is inspected or logged."""
    outcome, exchange = _run(DetectionStage(DetectionConfig(enabled=False)))
    assert outcome is None
    assert "detection" not in exchange.facts


def test_category_overrides() -> None:
    """A category can be monitored or switched off while the others block."""
    outcome, exchange = _run(DetectionStage(DetectionConfig(categories={"xss": "monitor"})))
    assert outcome is None and exchange.decisions[0].action == "monitor"
    outcome, exchange = _run(DetectionStage(DetectionConfig(categories={"xss": "off"})))
    assert outcome is None and "detection" not in exchange.facts
    outcome, _ = _run(DetectionStage(DetectionConfig(categories={"xss": "block", "sqli": "monitor"})))
    assert isinstance(outcome, Block)


def test_benign_request_leaves_no_trace() -> None:
    """A clean request passes without a detection record."""
    outcome, exchange = _run(DetectionStage(DetectionConfig()), "/search?q=blue+shoes")
    assert outcome is None and exchange.facts == {} and exchange.decisions == []


@pytest.mark.parametrize(
    "exclusion",
    [
        Exclusion(category="xss", location="query:q"),
        Exclusion(category="xss", location="query*"),
        Exclusion(category="xss"),
    ],
)
def test_exclusions_silence_matching_hits(exclusion: Exclusion) -> None:
    """An exclusion by category (and optionally location or prefix) stops those hits counting."""
    outcome, _ = _run(DetectionStage(DetectionConfig(exclusions=[exclusion])))
    assert outcome is None


def test_exclusion_by_rule_id_and_other_location() -> None:
    """Excluding a rule elsewhere, or one rule of several, does not unblock the request."""
    outcome, _ = _run(DetectionStage(DetectionConfig(exclusions=[Exclusion(category="xss", location="query:other")])))
    assert isinstance(outcome, Block)
    outcome, _ = _run(DetectionStage(DetectionConfig(exclusions=[Exclusion(rule_id=2001)])))
    assert isinstance(outcome, Block)  # other XSS rules still match


def test_config_validation() -> None:
    """The schema rejects unknown fields, bad paranoia, unknown categories and empty exclusions."""
    with pytest.raises(ValidationError):
        DetectionConfig(paranoia=5)
    with pytest.raises(ValidationError):
        DetectionConfig(unknown=True)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        DetectionConfig.model_validate({"categories": {"nope": "block"}})
    with pytest.raises(ValidationError):
        Exclusion(location="query:q")
    with pytest.raises(ValidationError):
        Exclusion(rule_id=999_999)
    for name, field in DetectionConfig.model_fields.items():
        assert field.description, name


def test_threshold_and_paranoia() -> None:
    """A higher threshold lets single-rule hits through; higher paranoia adds rules."""
    verdict = DetectionEngine(DetectionConfig(threshold=1000)).evaluate(make_request(ATTACK))
    assert verdict.block_category is None and verdict.monitor_category is None and verdict.hits
    assert len(Matcher(4)._rules) > len(Matcher(1)._rules)


def test_rule_table_is_consistent() -> None:
    """Rule IDs are unique, categories known, paranoia 1..4, and every category has rules."""
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    assert {r.category for r in ALL_RULES.values()} == set(CATEGORIES)
    assert all(1 <= r.paranoia <= 4 for r in ALL_RULES.values())


def test_re2_backend_agrees_with_hyperscan() -> None:
    """The RE2 fallback compiles the same rules and finds the same categories."""
    hs = DetectionEngine(DetectionConfig(paranoia=4))
    re2 = DetectionEngine(DetectionConfig(paranoia=4), prefer="re2")
    assert re2.matcher.backend_name == "re2"
    for target in (ATTACK, "/x?a=" + quote("1 union select 1"), "/x?b=" + quote("; ls -la /"), "/x?c=ok"):
        a = {h.rule.id for h in hs.evaluate(make_request(target)).hits}
        b = {h.rule.id for h in re2.evaluate(make_request(target)).hits}
        assert a == b, target


def test_routes_with_the_same_settings_share_one_compiled_matcher() -> None:
    """Compiling the rule databases takes most of a second: engines with the same paranoia
    and categories share one matcher (a 17-route service once took 29 s to start)."""
    from bastion.stages.detection import DetectionConfig, DetectionEngine

    a = DetectionEngine(DetectionConfig(paranoia=2))
    b = DetectionEngine(DetectionConfig(paranoia=2, threshold=7))
    c = DetectionEngine(DetectionConfig(paranoia=3))
    assert a.matcher is b.matcher
    assert a.matcher is not c.matcher


_SQLI = "1' UNION SELECT password FROM users--"


def _uninspectable_requests() -> dict[str, object]:
    import gzip
    import json

    nested: object = _SQLI
    for _ in range(40):
        nested = {"a": nested}
    return {
        "characters": make_request("/orders", method="POST", content_type="application/json",
                                   body=json.dumps({"pad": "a" * 2_100_000, "q": _SQLI})),
        "inputs": make_request("/orders", method="POST", content_type="application/json",
                               body=json.dumps({**{f"f{i}": "x" for i in range(1100)}, "q": _SQLI})),
        "json_depth": make_request("/orders", method="POST", content_type="application/json",
                                   body=json.dumps(nested)),
        "decompressed_size": make_request(
            "/orders", method="POST", content_type="application/json",
            headers=[("content-encoding", "gzip")],
            body=gzip.compress(json.dumps({"pad": " " * 3_000_000, "q": _SQLI}).encode())),
    }


@pytest.mark.parametrize("limit", ["characters", "inputs", "json_depth", "decompressed_size"])
def test_an_attack_past_the_inspection_limits_is_not_let_through(limit: str) -> None:
    """Found by fuzzing: an attack placed after 2 MB of padding, after 1,024 fields, deeper
    than the JSON walk goes, or in a gzip body past the inflation bound was silently not
    inspected. Such requests are now refused (413, detection.uninspectable) in block mode;
    with ``uninspectable: monitor`` they pass with a logged decision."""
    request = _uninspectable_requests()[limit]
    exchange = Exchange(request, request_id="r1")  # type: ignore[arg-type]
    outcome = DetectionStage(DetectionConfig()).on_request(exchange)
    assert isinstance(outcome, Block)
    assert (outcome.status, outcome.reason) == (413, "detection.uninspectable")
    assert exchange.facts["detection"]["uninspected"] == limit
    lenient = Exchange(request, request_id="r2")  # type: ignore[arg-type]
    assert DetectionStage(DetectionConfig(uninspectable="monitor")).on_request(lenient) is None
    assert [(d.stage, d.action, d.reason) for d in lenient.decisions] == [
        ("detection", "monitor", "detection.uninspectable")]


def test_uninspectable_is_blocked_where_any_category_blocks() -> None:
    """Monitoring by default but blocking SQL injection still refuses what cannot be
    inspected whole: a SQL injection could sit past the limit."""
    request = _uninspectable_requests()["characters"]
    config = DetectionConfig(categories={**dict.fromkeys(CATEGORIES, "monitor"), "sqli": "block"})
    outcome = DetectionStage(config).on_request(Exchange(request, request_id="r1"))  # type: ignore[arg-type]
    assert isinstance(outcome, Block) and outcome.reason == "detection.uninspectable"
    monitored = Exchange(request, request_id="r2")  # type: ignore[arg-type]
    assert DetectionStage(DetectionConfig(enforce=False)).on_request(monitored) is None
    assert [d.reason for d in monitored.decisions] == ["detection.uninspectable"]


def test_requests_within_the_limits_are_not_flagged() -> None:
    """An ordinary JSON request is inspected whole: nothing is noted as uninspected."""
    import json

    request = make_request("/orders", method="POST", content_type="application/json",
                           body=json.dumps({"items": [{"sku": "A-1", "qty": 2}], "note": "leave at the door"}))
    verdict = DetectionEngine(DetectionConfig()).evaluate(request)
    assert verdict.uninspected is None and not verdict.hits


# -- the deprecated stage-wide 'mode' ----------------------------------------------------


def test_legacy_mode_reads_as_the_settings_it_meant() -> None:
    """'mode' is still accepted: 'monitor' is shadow mode (enforce: false), 'off' is
    enabled: false, 'block' is the default; with a category set to 'block', 'monitor' was
    the mode of the other categories, and stays that (those categories keep blocking)."""
    read = DetectionConfig.model_validate
    assert read({"mode": "monitor", "paranoia": 2}) == read({"enforce": False, "paranoia": 2})
    assert read({"mode": "off"}) == read({"enabled": False})
    assert read({"mode": "block", "threshold": 7}) == read({"threshold": 7})
    mixed = read({"mode": "monitor", "categories": {"xss": "block"}})
    assert mixed.enforce is True
    assert mixed.categories == {**dict.fromkeys(CATEGORIES, "monitor"), "xss": "block"}
    outcome, _ = _run(DetectionStage(mixed))
    assert isinstance(outcome, Block) and outcome.reason == "detection.xss"


def test_legacy_monitor_mode_decides_and_logs_as_before() -> None:
    """A route configured with the old 'mode: monitor' makes the decisions and writes the
    detection record that shadow mode makes and writes, for attacks and for uninspectable
    requests alike."""
    uninspectable = _uninspectable_requests()["characters"]
    for config in (DetectionConfig.model_validate({"mode": "monitor"}), DetectionConfig(enforce=False)):
        outcome, exchange = _run(DetectionStage(config))
        assert outcome is None
        assert exchange.facts["detection"]["blocked"] is False
        assert exchange.facts["detection"]["score"] == 0  # nothing blocking scored
        assert [(d.action, d.reason, d.status) for d in exchange.decisions] == [("monitor", "detection.xss", 403)]
        cut = Exchange(uninspectable, request_id="r2")  # type: ignore[arg-type]
        assert DetectionStage(config).on_request(cut) is None
        assert [(d.action, d.reason, d.status) for d in cut.decisions] == [("monitor", "detection.uninspectable", 413)]


def test_legacy_mode_with_a_wrong_value_names_the_replacements() -> None:
    """A wrong value of the deprecated 'mode' is refused with what to write instead."""
    with pytest.raises(ValidationError) as err:
        DetectionConfig.model_validate({"mode": "shadow"})
    message = str(err.value)
    assert "'mode' must be 'block', 'monitor' or 'off' (got 'shadow')" in message
    assert "'enforce: false'" in message and "'enabled: false'" in message


def test_the_chain_runs_the_compiled_hook_as_the_stage_does() -> None:
    """The chain calls the native engine's compiled hook (handed by the stage), and a request
    gets from it what the stage's own hook gives: a 403 with the same logged hits in block
    mode, a pass with the same monitor decision in shadow mode, nothing for a clean request."""
    from bastion.pipeline import Chain
    from bastion.stages.detection.engine import DetectionHook
    from bastion.types import Response

    for config in (DetectionConfig(), DetectionConfig(enforce=False)):
        stage = DetectionStage(config)
        hook = stage.request_hook()
        assert isinstance(hook.__self__, DetectionHook)  # type: ignore[attr-defined]
        chain = Chain([stage])
        for target in (ATTACK, "/search?q=blue+shoes"):
            own, own_ex = _run(stage, target)
            ex = Exchange(make_request(target), request_id="r1")
            answer = chain.request(ex)
            assert ex.facts.get("detection") == own_ex.facts.get("detection")
            # (The chain records a block itself; the stage's own decisions are monitors.)
            assert [(d.action, d.reason, d.status) for d in ex.decisions if d.action == "monitor"] == [
                (d.action, d.reason, d.status) for d in own_ex.decisions
            ]
            if isinstance(own, Block):
                assert isinstance(answer, Response) and answer.status == own.status == 403
            else:
                assert own is None and answer is None
