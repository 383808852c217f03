"""The redact stage in process, through the real chain runner: its config errors, the
actions per type, and the chunked body giving what the whole body gives however the
upstream's reads cut it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bastion.config import ConfigError, load_config
from bastion.pipeline.chain import Chain
from bastion.stages.redact import RedactConfig, RedactStage
from bastion.stages.redact import stage as redact_stage
from bastion.types import Block, Exchange, Request, Response

BODY = (
    b'{"cards": ["4111111111111111", "5500-0000-0000-0004"], "order": "ORD-2024-000123", '
    b'"aws": "AKIAIOSFODNN7EXAMPLE", "ssn": "123-45-6789", "ts": 1733565760000, '
    b'"iban": "DE89 3704 0044 0532 0130 00", "hash": "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"}'
)

#: Built once: a stage compiles its patterns when built (at config load).
MASKING = RedactStage(RedactConfig(types=["pii", "secrets", "password_hash"], action="mask"))


def _exchange(headers: list[tuple[str, str]] | None = None, body: bytes | None = None) -> Exchange:
    exchange = Exchange(Request("GET", "/x", "/x", "", [("host", "api.test")]), "req-1")
    exchange.response = Response(200, headers or [], body)
    return exchange


def _through(stage: RedactStage, pieces: list[bytes]) -> tuple[bytes, Exchange]:
    """``pieces`` through the chain's body filter, as the proxy feeds an upstream's reads."""
    chain = Chain([stage])
    exchange = _exchange()
    assert chain.response(exchange) is None
    body = chain.body_filter(exchange)
    assert body is not None
    out = [body.feed(piece, False) or b"" for piece in pieces]
    out.append(body.feed(b"", True) or b"")
    return b"".join(out), exchange


def test_unknown_types_and_overrides_outside_types_are_config_errors() -> None:
    """A misspelt type names itself and the known ones; an override of a type not scanned
    says what to do."""
    with pytest.raises(ValidationError, match="unknown sensitive data type 'cc'; known types: card"):
        RedactConfig(types=["cc"])
    with pytest.raises(ValidationError, match="actions names 'email', but email is not in types"):
        RedactConfig(types=["card"], actions={"email": "block"})


def test_a_type_override_beats_its_group_and_the_default() -> None:
    """``action`` applies to every type; a group's override to its members; a type's own
    override wins over its group's."""
    config = RedactConfig(types=["card", "secrets"], action="alert", actions={"aws_key": "block", "secrets": "remove"})
    actions = config.action_of()
    assert actions["card"] == "alert"
    assert actions["github_token"] == "remove"
    assert actions["aws_key"] == "block"


def test_each_action_on_a_whole_body() -> None:
    """mask keeps the last four, remove leaves a mark, alert changes nothing; every value
    is counted in the record under its type."""
    stage = RedactStage(
        RedactConfig(
            types=["pii", "secrets", "password_hash"],
            actions={"card": "mask", "ssn": "remove", "iban": "alert", "password_hash": "remove"},
        )
    )
    out, exchange = _through(stage, [BODY])
    assert out == (
        b'{"cards": ["************1111", "****-****-****-0004"], "order": "ORD-2024-000123", '
        b'"aws": "****************MPLE", "ssn": "[REDACTED ssn]", "ts": 1733565760000, '
        b'"iban": "DE89 3704 0044 0532 0130 00", "hash": "[REDACTED password_hash]"}'
    )
    assert exchange.facts["redact"] == {"found": {"card": 2, "aws_key": 1, "ssn": 1, "iban": 1, "password_hash": 1}}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(BODY)), max_size=12))
def test_any_chunking_of_the_upstream_body_gives_the_same_output(cuts: list[int]) -> None:
    """However the upstream's reads cut the body (a card or key split anywhere, pieces of a
    byte), what the client gets is what redacting the whole body gives."""
    stage = MASKING
    whole, _ = _through(stage, [BODY])
    points = sorted(set(cuts))
    pieces = [BODY[a:b] for a, b in zip([0, *points], [*points, len(BODY)], strict=True)]
    out, _ = _through(stage, pieces)
    assert out == whole
    assert b"4111111111111111" not in out and b"AKIAIOSFODNN7EXAMPLE" not in out


def test_block_decides_on_the_whole_body_and_the_headers() -> None:
    """A type on block asks for the whole body (so the decision comes before the head goes
    out) and answers 502; a header value on block does too."""
    stage = RedactStage(RedactConfig(types=["card", "ssn"], actions={"ssn": "block"}))
    assert stage.needs_response_body and stage.response_body_required
    outcome = stage.on_response(_exchange(body=b'{"ssn": "123-45-6789"}'))
    assert isinstance(outcome, Block) and outcome.status == 502 and outcome.reason == "redact.blocked"
    assert stage.on_response(_exchange(body=b'{"card": "4111111111111111"}')) is None  # masked later
    assert isinstance(stage.on_response(_exchange([("x-debug", "ssn=123-45-6789")], b"{}")), Block)
    assert not RedactStage(RedactConfig(types=["card"])).needs_response_body


def test_header_values_are_masked_unless_in_shadow_mode() -> None:
    """A secret in a header value is masked; with ``enforce: false`` it is only counted."""
    exchange = _exchange([("x-key", "AKIAIOSFODNN7EXAMPLE"), ("content-type", "application/json")], b"{}")
    RedactStage(RedactConfig(types=["secrets"])).on_response(exchange)
    assert exchange.response is not None
    assert exchange.response.headers == [("x-key", "****************MPLE"), ("content-type", "application/json")]
    shadow = _exchange([("x-key", "AKIAIOSFODNN7EXAMPLE")], b"{}")
    RedactStage(RedactConfig(types=["secrets"], enforce=False)).on_response(shadow)
    assert shadow.response is not None and shadow.response.headers == [("x-key", "AKIAIOSFODNN7EXAMPLE")]
    assert shadow.facts["redact"] == {"found": {"aws_key": 1}}


def test_a_route_that_would_pass_bodies_unseen_is_a_load_error(tmp_path: Path) -> None:
    """``response_body_over_limit: pass`` would forward a body the stage cannot see (over the
    limit, or in a coding the proxy does not decode): refused at load on a redact route."""
    path = tmp_path / "bastion.yaml"
    path.write_text(
        "services:\n"
        "  - name: api\n"
        "    upstream: http://127.0.0.1:9\n"
        "    response_body_over_limit: pass\n"
        "    routes: [{path: /, public: true, policies: {redact: {types: [card]}}}]\n"
    )
    with pytest.raises(ConfigError, match="'pass' would forward a response over max_response_body_bytes without "
                                          "the redact stage seeing it"):
        load_config(path)


def test_header_values_found_clean_are_remembered_and_the_others_still_scanned() -> None:
    """Values found clean are not scanned again (at most MAX_REMEMBERED of them, forgotten
    all at once); a value with a secret is never taken for clean: it is masked every time,
    beside remembered ones, and counted each time."""
    stage = RedactStage(RedactConfig(types=["secrets"]))
    clean = [("server", "nginx/1.24.0"), ("content-type", "application/json")]
    for _ in range(2):
        exchange = _exchange(list(clean), b"{}")
        assert stage.on_response(exchange) is None
        assert exchange.response is not None and exchange.response.headers == clean
    for n in range(1, 3):
        exchange = _exchange([*clean, ("x-key", "AKIAIOSFODNN7EXAMPLE")], b"{}")
        assert stage.on_response(exchange) is None
        assert exchange.response is not None
        assert exchange.response.headers == [*clean, ("x-key", "****************MPLE")]
        assert exchange.facts["redact"] == {"found": {"aws_key": 1}}, n
    for i in range(redact_stage.MAX_REMEMBERED + 5):
        stage.on_response(_exchange([("x-request", f"r-{i}")], b"{}"))
    assert len(stage._clean_values) <= redact_stage.MAX_REMEMBERED
    exchange = _exchange([("x-key", "AKIAIOSFODNN7EXAMPLE")], b"{}")
    stage.on_response(exchange)
    assert exchange.response is not None and exchange.response.headers == [("x-key", "****************MPLE")]
