"""OpenTelemetry traces: a real gateway with ``audit.otel`` exports a span per request over
OTLP/HTTP (JSON) to a real local collector that parses what arrives; the client's W3C
``traceparent`` is continued and the gateway's span goes upstream; a collector that is
down costs only the spans, counted. The ``traceparent`` parser is held to the W3C rules."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.audit.otel import OtelExporter
from bastion.config.audit import OtelSettings
from bastion.proxy.metrics import Metrics
from bastion.services import WorkerIdentity
from bastion.stages.tracing import parse_traceparent
from bastion.testing import GatewayProcess, free_port, parse_one_response, raw_request
from bastion.types import ExchangeRecord
from tests.config.util import errors_of, write
from tests.proxy.scripted import ScriptedUpstream

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


class Collector:
    """An OTLP/HTTP receiver on a free port: keeps each POSTed JSON document and its headers."""

    def __init__(self) -> None:
        self.exports: list[tuple[dict[str, str], Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.exports.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[dict[str, Any]]:
        return [span for _, doc in self.exports for rs in doc["resourceSpans"] for ss in rs["scopeSpans"]
                for span in ss["spans"]]

    def wait(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.spans()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.spans()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    try:
        yield c
    finally:
        c.close()


def attrs(span: dict[str, Any]) -> dict[str, Any]:
    """A span's attributes as plain values (OTLP JSON: ints are strings)."""
    out: dict[str, Any] = {}
    for kv in span["attributes"]:
        ((kind, value),) = kv["value"].items()
        out[kv["key"]] = int(value) if kind == "intValue" else value
    return out


def test_a_gateway_exports_spans_continuing_the_clients_trace(collector: Collector) -> None:
    """Through a real gateway: a request with a ``traceparent`` gets a SERVER span in the
    client's trace whose parent is the client's span; the upstream receives a
    ``traceparent`` naming that trace and the gateway's span; the span carries the HTTP
    semantic conventions' attributes and Bastion's request ID and decision. A request
    without one starts a trace whose ID is its request ID; a 404 (no route, no stage) is a
    span too, with the status code and the core's reason."""
    config = {
        "audit": {"enabled": True, "store": False,
                  "otel": {"endpoint": collector.url, "service_name": "shop-gw", "flush_interval": 0.1,
                           "headers": {"authorization": "${OTEL_TOKEN}"}}},
        "services": [{"name": "api", "upstream": "", "routes": [
            {"path": "/orders/{id}", "methods": ["GET"], "public": True, "operation_id": "getOrder"}]}],
    }
    with ScriptedUpstream() as upstream:
        config["services"][0]["upstream"] = upstream.url  # type: ignore[index]
        with GatewayProcess(config, env={"OTEL_TOKEN": "Bearer otel-test-token"}) as gw:
            def get(target: str, extra: str = "") -> tuple[int, dict[str, str]]:
                raw = raw_request(gw.host, gw.port, f"GET {target} HTTP/1.1\r\nHost: shop\r\n{extra}"
                                  "User-Agent: otel-test\r\nConnection: close\r\n\r\n".encode())
                response = parse_one_response(raw)[0]
                return response.status, {k.lower(): v for k, v in response.headers}

            status, _ = get("/orders/7?token=secret", f"traceparent: 00-{CLIENT_TRACE}-{CLIENT_SPAN}-01\r\n")
            assert status == 200
            status, second = get("/orders/8")
            assert get("/nowhere")[0] == 404
            spans = collector.wait(3)
            sent_up = [r.header("traceparent") for r in upstream.records("/orders/")]
    headers, doc = collector.exports[0]
    assert headers["content-type"] == "application/json"
    assert headers["authorization"] == "Bearer otel-test-token"
    resource = attrs(doc["resourceSpans"][0]["resource"])
    assert resource["service.name"] == "shop-gw"
    by_path = {attrs(s)["url.path"]: s for s in spans}
    assert set(by_path) == {"/orders/7", "/orders/8", "/nowhere"}

    continued = by_path["/orders/7"]
    assert (continued["traceId"], continued["parentSpanId"]) == (CLIENT_TRACE, CLIENT_SPAN)
    assert continued["kind"] == 2 and continued["name"] == "GET /orders/{id}"
    assert sent_up[0] == f"00-{CLIENT_TRACE}-{continued['spanId']}-01"
    assert int(continued["endTimeUnixNano"]) >= int(continued["startTimeUnixNano"]) > 0
    a = attrs(continued)
    assert a["http.request.method"] == "GET" and a["http.route"] == "/orders/{id}"
    assert a["http.response.status_code"] == 200 and a["bastion.decision"] == "allowed"
    assert a["bastion.route"] == "getOrder" and a["user_agent.original"] == "otel-test"
    assert len(a["bastion.request_id"]) == 32
    assert "secret" not in json.dumps(continued)  # the query is never exported

    started = by_path["/orders/8"]
    assert "parentSpanId" not in started
    assert started["traceId"] == attrs(started)["bastion.request_id"] == second["x-request-id"]
    assert sent_up[1] == f"00-{started['traceId']}-{started['spanId']}-01"

    refused = attrs(by_path["/nowhere"])
    assert refused["http.response.status_code"] == 404 and refused["bastion.reason"] == "route.not_found"
    assert "http.route" not in refused and by_path["/nowhere"]["status"] == {"code": 0}


def _record(n: int) -> ExchangeRecord:
    return ExchangeRecord(ts=1765100000.0 + n, request_id=f"r-{n}", client="203.0.113.9", method="GET",
                          path=f"/x/{n}", route=None, service=None, status=503, bytes_in=0, bytes_out=10,
                          seconds=0.001)


def test_a_collector_that_is_down_costs_only_the_spans_counted() -> None:
    """With nothing listening at the endpoint, close() still returns; every span is counted
    in ``bastion_otel_export_errors``; a 5xx span has the ERROR status."""
    metrics = Metrics()

    async def run() -> None:
        async with httpx.AsyncClient(timeout=2) as http:
            exporter = OtelExporter(OtelSettings(endpoint=f"http://127.0.0.1:{free_port()}/v1/traces", batch_size=2),
                                    WorkerIdentity("test", 0, 1, os.getpid()), http, {}, metrics)
            exporter.start()
            for n in range(5):
                exporter(_record(n))
            assert exporter.span(_record(9))["status"] == {"code": 2}
            await exporter.close()

    asyncio.run(run())
    assert metrics.counters["bastion_otel_export_errors"] == {(): 5.0}


def test_a_full_queue_drops_and_counts() -> None:
    """Past ``queue_size`` spans waiting, a span is dropped on the request path and counted."""
    metrics = Metrics()
    exporter = OtelExporter(OtelSettings(endpoint="http://127.0.0.1:9/v1/traces", queue_size=100),
                            WorkerIdentity("test", 0, 1, os.getpid()), httpx.AsyncClient(), {}, metrics)
    for n in range(103):
        exporter(_record(n))
    assert metrics.counters["bastion_otel_dropped"] == {(): 3.0}


@pytest.mark.parametrize(("value", "parsed"), [
    (f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01", (CLIENT_TRACE, CLIENT_SPAN, "01")),
    (f"01-{CLIENT_TRACE}-{CLIENT_SPAN}-00-future", (CLIENT_TRACE, CLIENT_SPAN, "00")),  # a later version's extra field
    (f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01-extra", None),  # version 00 has exactly four fields
    (f"ff-{CLIENT_TRACE}-{CLIENT_SPAN}-01", None),  # version ff is invalid
    (f"00-{'0' * 32}-{CLIENT_SPAN}-01", None),  # all-zero trace ID
    (f"00-{CLIENT_TRACE}-{'0' * 16}-01", None),  # all-zero parent ID
    (f"00-{CLIENT_TRACE.upper()}-{CLIENT_SPAN}-01", None),  # upper-case hex
    (f"00-{CLIENT_TRACE}-{CLIENT_SPAN}", None),  # no flags
    ("garbage", None),
])
def test_traceparent_follows_the_w3c_rules(value: str, parsed: tuple[str, str, str] | None) -> None:
    """Only a well-formed ``traceparent`` is continued; anything else starts a new trace."""
    assert parse_traceparent(value) == parsed


def test_otel_settings_are_checked(tmp_path: Path) -> None:
    """A collector header in plain text is refused (it is usually a credential), as is otel
    without the audit log on; each error names file, line and field."""
    path = write(tmp_path, """\
        services: [{name: a, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]
        audit:
          enabled: true
          otel: {endpoint: 'http://127.0.0.1:4318/v1/traces', headers: {authorization: 'Bearer abc'}}
        """)
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:4: audit.otel.headers.authorization:") and "plain text" in error
    path = write(tmp_path, """\
        services: [{name: a, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]
        audit:
          otel: {endpoint: 'http://127.0.0.1:4318/v1/traces'}
        """)
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:2: audit:") and "otel exports the audit log's requests" in error
