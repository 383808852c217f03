"""The access log: one JSON line per request, allowed or blocked, with what decided it."""

from __future__ import annotations

from bastion.testing import GatewayProcess

from .scripted import ScriptedUpstream
from .util import assert_problem, one


def test_forwarded_request_is_logged(gateway: GatewayProcess, upstream: ScriptedUpstream,
                                     token: str) -> None:
    """A proxied request gets one record with its request ID, client, method, normalised
    path, route, service, status, bytes in and out, latency and the upstream target; no
    block fields."""
    resp = one(gateway, "POST", f"/echo//x?{token}", body=b"0123456789")
    assert resp.status == 200
    request_id = resp.header("x-request-id")
    record = gateway.wait_for_access_record(lambda r: r["request_id"] == request_id)
    assert record["method"] == "POST"
    assert record["path"] == "/echo/x"
    assert record["route"] == "api:/"
    assert record["service"] == "api"
    assert record["client"] == "127.0.0.1"
    assert record["status"] == 200
    assert record["bytes_in"] == 10
    assert record["bytes_out"] == len(resp.body)
    assert record["upstream"] == upstream.url
    assert isinstance(record["latency_ms"], int | float) and 0 <= record["latency_ms"] < 5000
    assert isinstance(record["time"], str) or isinstance(record["ts"], float)
    assert "blocked_by" not in record and "reason" not in record
    assert len([r for r in gateway.access_log_records() if r["request_id"] == request_id]) == 1


def test_streamed_response_bytes_are_logged(gateway: GatewayProcess, token: str) -> None:
    """For a streamed (chunked) response, ``bytes_out`` counts the body bytes sent."""
    resp = one(gateway, "GET", f"/chunked?{token}")
    assert resp.body == b"hello chunked world"
    record = gateway.wait_for_access_record(
        lambda r: r["request_id"] == resp.header("x-request-id"))
    assert (record["status"], record["bytes_out"]) == (200, len(b"hello chunked world"))


def test_body_limit_block_is_logged(gateway: GatewayProcess, token: str) -> None:
    """A 413 is logged with the route it was for, ``blocked_by: core`` and the reason."""
    resp = one(gateway, "POST", f"/limited?{token}", body=b"x" * 2000)
    doc = assert_problem(resp, 413)
    record = gateway.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])
    assert record["status"] == 413
    assert record["route"] == "api:/limited"
    assert (record["blocked_by"], record["reason"]) == ("core", "http.body_too_large")


def test_refused_target_is_logged(gateway: GatewayProcess, token: str) -> None:
    """A request refused for its target (an encoded slash) is logged with the reason
    ``http.target`` and no route."""
    resp = one(gateway, "GET", f"/a%2fb?{token}")
    doc = assert_problem(resp, 400)
    record = gateway.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])
    assert (record["status"], record["blocked_by"], record["reason"]) == (400, "core", "http.target")
    assert record["route"] is None


def test_upstream_failure_is_logged(gateway: GatewayProcess, token: str) -> None:
    """A request that failed upstream is logged with the status the client got and the
    kind of failure."""
    resp = one(gateway, "GET", f"/drop?{token}")
    doc = assert_problem(resp, 502)
    record = gateway.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])
    assert (record["status"], record["upstream_error"]) == (502, "error")
