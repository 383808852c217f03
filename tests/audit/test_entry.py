"""An exchange record as an audit row: the decision spelled out (allowed, monitored, blocked
by which stage and rule, with its category), the evidence the stages left, the rate limits'
state, and the fields the documentation shows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bastion.audit.entry import audit_row, iso_time
from bastion.types import Decision, ExchangeRecord

DOC = Path(__file__).parents[2] / "docs" / "audit.md"


def _record(**fields: Any) -> ExchangeRecord:
    base: dict[str, Any] = dict(
        ts=1765100000.123, request_id="r-1", client="203.0.113.9", method="GET", path="/orders/7",
        route="getOrder", service="orders", status=200, bytes_in=0, bytes_out=10, seconds=0.0004,
        host="api.example.com", user_agent="curl/8.5.0", tls="TLSv1.3", upstream_seconds=0.0002,
    )
    base.update(fields)
    return ExchangeRecord(**base)


def test_an_allowed_request() -> None:
    """A forwarded request is ``allowed``, with no stage, rule or category; who, where and
    how long are all there, the latencies in milliseconds."""
    row = audit_row(_record(consumer="c-42", credential="key-7", upstream="http://u"), "id1", "gw1", 1)
    assert (row["decision"], row["stage"], row["rule"], row["category"], row["reason"]) == (
        "allowed", None, None, None, None)
    assert (row["id"], row["instance"], row["worker"], row["consumer"], row["credential"]) == (
        "id1", "gw1", 1, "c-42", "key-7")
    assert (row["host"], row["user_agent"], row["tls"], row["latency_ms"], row["upstream_ms"]) == (
        "api.example.com", "curl/8.5.0", "TLSv1.3", 0.4, 0.2)
    assert row["details"] == {}


def test_blocked_by_detection_names_the_rule_category_and_evidence() -> None:
    """A detection block names the stage, the first matching rule and its category, and keeps
    the stage's (redacted) hits as evidence."""
    hits = {"score": 5, "category": "sqli", "hits": [{"rule": 942100, "category": "sqli", "snippet": "1' OR ..."}]}
    record = _record(
        status=403, blocked_by="detection", decisions=(Decision("detection", "block", "detection.sqli", 403),),
        facts=MappingProxyType({"detection": hits}),
    )
    row = audit_row(record, "id", "gw", 0)
    assert (row["decision"], row["stage"], row["rule"], row["category"], row["reason"]) == (
        "blocked", "detection", "942100", "sqli", "detection.sqli")
    assert row["details"]["evidence"] == {"detection": hits}
    assert row["details"]["decisions"] == [
        {"stage": "detection", "action": "block", "reason": "detection.sqli", "status": 403}]


def test_rate_limited_and_core_refusals() -> None:
    """A stage's refusal is named by its reason code and category; the rate limits' state
    is its own field; a core refusal (no route) is blocked by ``core``."""
    limited = audit_row(_record(
        status=429, blocked_by="ratelimit", decisions=(Decision("ratelimit", "block", "ratelimit.exceeded", 429),),
    ), "id", "gw", 0)
    assert (limited["decision"], limited["stage"], limited["rule"], limited["category"]) == (
        "blocked", "ratelimit", "ratelimit.exceeded", "ratelimit")
    allowed = audit_row(_record(facts=MappingProxyType({"ratelimit": "consumer-10-per-60s;r=9;t=54"})), "id", "gw", 0)
    assert allowed["ratelimit"] == "consumer-10-per-60s;r=9;t=54" and "evidence" not in allowed["details"]
    core = audit_row(_record(status=404, route=None, blocked_by="core", reason="route.not_found"), "id", "gw", 0)
    assert (core["decision"], core["stage"], core["rule"], core["category"]) == (
        "blocked", "core", "route.not_found", "route")


def test_shadow_mode_is_monitored() -> None:
    """A block in shadow mode lets the request through: ``monitored``, naming the stage."""
    row = audit_row(_record(decisions=(Decision("validation", "monitor", "validation.body", 400),)), "id", "gw", 0)
    assert (row["decision"], row["stage"], row["rule"], row["category"]) == (
        "monitored", "validation", "validation.body", "validation")


def test_client_chosen_text_is_clipped() -> None:
    """A huge User-Agent or Host cannot make a row larger than the store's columns."""
    row = audit_row(_record(user_agent="a" * 10_000, host="h" * 1000), "id", "gw", 0)
    assert (len(row["user_agent"]), len(row["host"])) == (512, 255)


def test_the_documented_line_has_the_fields_of_a_row() -> None:
    """docs/audit.md's JSON line has exactly the fields a row has, plus ``time``; and the time
    is written as it shows it."""
    (line,) = re.findall(r"```json\n(.*?)\n```", DOC.read_text(), re.S)
    documented = json.loads(line)
    assert list(documented) == [*audit_row(_record(), "id", "gw", 0), "time"]
    assert iso_time(1765100000.123) == "2025-12-07T09:33:20.123Z"
