"""The exchange record: typed, complete before the sinks see it, read-only once they do; the
principal's ids in it; stages' own facts in it; sinks in order, a failing one harmless."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.pipeline.registry import ORDER
from bastion.pipeline.stage import RequestStage, StageConfig
from bastion.proxy.metrics import METRICS
from bastion.testing import RawResponse, parse_responses, raw_request
from bastion.types import Decision, Exchange, ExchangeRecord, Principal

from .conftest import SHARED_UPSTREAM, gateway_config
from .inprocess import InProcessGateway
from .scripted import ScriptedUpstream


class SignIn(RequestStage):
    """Stands in for the auth stage: a request with ``x-consumer`` is signed in as that
    consumer, with a credential id, scopes, roles and a claim that must never be logged."""

    def __init__(self) -> None:
        super().__init__("signin", StageConfig())

    def on_request(self, exchange: Exchange) -> None:
        consumer = exchange.request.header("x-consumer")
        if consumer is not None:
            exchange.principal = Principal(
                consumer,
                consumer_name="Acme Ltd",
                credential_id="key-7",
                scopes=frozenset({"orders:read"}),
                roles=frozenset({"buyer"}),
                claims={"email": "ops@acme.test"},
            )


class Probe(RequestStage):
    """A stage leaving a fact of its own for the record, under its name."""

    def __init__(self) -> None:
        super().__init__("probe", StageConfig())

    def on_request(self, exchange: Exchange) -> None:
        exchange.facts[self.name] = {"seen": exchange.request.path}


class Keep:
    """A sink that keeps what it is handed, noting its turn in a shared list."""

    def __init__(self, name: str, turns: list[str]) -> None:
        self.name = name
        self.turns = turns
        self.records: list[ExchangeRecord] = []
        #: The requests counter of the route, as this sink found it when called.
        self.counted: list[float] = []

    def __call__(self, record: ExchangeRecord) -> None:
        self.turns.append(self.name)
        self.records.append(record)
        self.counted.append(METRICS.counters["bastion_requests"].get(("api", "api:/", str(record.status)), 0.0))


class Broken:
    """A sink that fails on every record."""

    name = "broken"

    def __call__(self, record: ExchangeRecord) -> None:
        raise RuntimeError("the audit store is down")


Setup = tuple[InProcessGateway, Keep, Keep, list[str]]


@pytest.fixture
def gateway(upstream: ScriptedUpstream, tmp_path: Path) -> Iterator[Setup]:
    """The in-process gateway: the sign-in and probe stages on a public catch-all route;
    after the metrics and the access log, the sinks ``first``, ``broken``, ``last``."""
    config = gateway_config(upstream.url, upstream_options=SHARED_UPSTREAM)
    turns: list[str] = []
    first, last = Keep("first", turns), Keep("last", turns)
    with InProcessGateway(config, tmp_path, [SignIn(), Probe()], sinks=[first, Broken(), last]) as gw:
        yield gw, first, last, turns


def _get(gw: InProcessGateway, path: str, *headers: str) -> RawResponse:
    """One GET with ``Connection: close``; its only response."""
    lines = [f"GET {path} HTTP/1.1", "Host: gw.test", "Connection: close", *headers]
    (response,) = parse_responses(raw_request("127.0.0.1", gw.port, ("\r\n".join(lines) + "\r\n\r\n").encode()))
    return response


def _logged(gw: InProcessGateway, token: str) -> dict[str, object]:
    (line,) = [r for r in gw.access_records() if token in str(r["path"])]
    return line


def test_principal_ids_are_in_the_record(gateway: Setup) -> None:
    """A signed-in request's record carries the consumer and credential ids (the sinks'
    record and the access log's line), never its name, scopes, roles or claims; an
    anonymous request's has neither field."""
    gw, first, _, _ = gateway
    signed, anonymous = uuid.uuid4().hex, uuid.uuid4().hex
    assert _get(gw, f"/{signed}", "x-consumer: c-42").status == 200
    assert _get(gw, f"/{anonymous}").status == 200
    line = _logged(gw, signed)
    assert (line["consumer"], line["credential"]) == ("c-42", "key-7")
    assert not {"Acme Ltd", "ops@acme.test", "orders:read", "buyer"} & {str(v) for v in line.values()}
    (record,) = [r for r in first.records if r.path == f"/{signed}"]
    assert (record.consumer, record.credential) == ("c-42", "key-7")
    line = _logged(gw, anonymous)
    assert "consumer" not in line and "credential" not in line


def test_access_log_line_keeps_its_fields_and_order(gateway: Setup, upstream: ScriptedUpstream) -> None:
    """An allowed request's line has the fields the access log always wrote, in the same
    order, then the facts a stage left under its own name, and the time last."""
    gw, _, _, _ = gateway
    token = uuid.uuid4().hex
    assert _get(gw, f"/{token}").status == 200
    line = _logged(gw, token)
    assert list(line) == [
        "ts", "request_id", "client", "method", "path", "route", "service", "status", "bytes_in",
        "bytes_out", "upstream", "latency_ms", "probe", "time",
    ]
    assert line["probe"] == {"seen": f"/{token}"}
    assert (line["status"], line["upstream"], line["bytes_in"]) == (200, upstream.url, 0)


def test_sinks_get_each_record_in_order_after_the_metrics(gateway: Setup) -> None:
    """Every record goes to the sinks in their configured order, once each; the metrics
    sink, configured first, has counted the request by the time the later sinks see it."""
    gw, first, last, turns = gateway
    before = METRICS.counters["bastion_requests"].get(("api", "api:/", "200"), 0.0)
    for _ in range(2):
        assert _get(gw, f"/{uuid.uuid4().hex}").status == 200
    gw.access_records()  # a round trip through the gateway's loop: the records are handed on
    assert turns == ["first", "last", "first", "last"]
    assert first.records == last.records
    assert first.counted == [before + 1, before + 2]


def test_failing_sink_is_counted_and_logged_once(gateway: Setup, caplog: pytest.LogCaptureFixture) -> None:
    """A sink that raises on every record does not fail the requests (each is answered and
    logged, and the sink after it still gets each record); its failures are counted in
    ``bastion_sink_errors`` every time and logged once with the sink's name."""
    gw, _, last, _ = gateway
    errors = METRICS.counters["bastion_sink_errors"]
    before = errors.get(("broken",), 0.0)
    tokens = [uuid.uuid4().hex for _ in range(3)]
    with caplog.at_level(logging.ERROR, logger="bastion.proxy"):
        for token in tokens:
            assert _get(gw, f"/{token}").status == 200
    assert all(_logged(gw, t)["status"] == 200 for t in tokens)
    assert errors[("broken",)] == before + 3
    assert [r.path for r in last.records] == [f"/{t}" for t in tokens]
    failures = [r for r in caplog.records if "'broken' failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None and "the audit store is down" in str(failures[0].exc_info[1])


def test_record_handed_to_sinks_is_complete_and_read_only(gateway: Setup) -> None:
    """The record a sink gets is complete (status, bytes out, the stage's facts) and can
    not be changed afterwards: not its fields, its facts, nor its decisions."""
    gw, first, _, _ = gateway
    token = uuid.uuid4().hex
    answer = _get(gw, f"/{token}", "x-consumer: c-1")
    assert _logged(gw, token)["status"] == 200
    (record,) = [r for r in first.records if r.path == f"/{token}"]
    assert (record.status, record.bytes_out) == (200, len(answer.body)) and answer.body
    assert record.facts == {"probe": {"seen": f"/{token}"}}
    with pytest.raises(AttributeError):
        record.status = 500  # type: ignore[misc]
    assert record.status == 200
    with pytest.raises(TypeError):
        record.facts["probe"] = "changed"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Decision("auth", "block", "auth.missing").reason = "changed"  # type: ignore[misc]
    assert isinstance(record.decisions, tuple)


def test_no_stage_is_named_like_a_field_of_the_line() -> None:
    """A stage's facts go into the access log line under the stage's name, after the core
    fields: no registered stage is named like one of them (which it would overwrite), except
    ``auth``, whose field (``auth: delegated``) is the auth stage's own fact."""
    # Every core field the line can have: a record with each optional one set (the class's
    # __slots__ are not visible once compiled), plus the access log's own "time".
    full = ExchangeRecord(
        0.0, "id", "127.0.0.1", "GET", "/", "r", "s", 200, 0, 0, 0.0,
        auth="a", upstream="u", upstream_error="e", blocked_by="b", reason="r",
        decisions=(Decision("x", "block", "r"),), consumer="c", credential="k",
    )
    core = {*full.as_dict(), "time"}
    assert {"latency_ms", "consumer", "decisions", "upstream_error"} <= core
    assert {spec.name for spec in ORDER} & core == {"auth"}


def test_record_has_host_user_agent_tls_and_upstream_latency(gateway: Setup) -> None:
    """The record carries what the audit log needs beyond the access line: the Host asked
    for, the User-Agent, the connection's TLS version (none over plain HTTP) and the wait on
    the upstream, which is part of the total; a refusal before forwarding has no upstream wait."""
    gw, first, _, _ = gateway
    token = uuid.uuid4().hex
    assert _get(gw, f"/{token}", "User-Agent: audit-test/1.0").status == 200
    assert _get(gw, f"/{token}/%2e%2e%00").status == 400
    gw.access_records()
    forwarded, refused = [r for r in first.records if token in (r.path or "") or r.status == 400][-2:]
    assert (forwarded.host, forwarded.user_agent, forwarded.tls) == ("gw.test", "audit-test/1.0", None)
    assert forwarded.upstream_seconds is not None
    assert 0 < forwarded.upstream_seconds <= forwarded.seconds
    assert (refused.status, refused.host, refused.user_agent, refused.upstream_seconds) == (400, "gw.test", None, None)
