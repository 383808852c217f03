"""Passive verbose-error detection: any answer during the scan that shows a stack trace, a framework debug page or
a database error is an API8-VERBOSE-ERRORS finding, whatever sent the request (discovery included)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bastion.tester.scan.engine import run_scan
from bastion.tester.scan.identities import IdentityConfig
from bastion.tester.scan.interface import Exchange, ScanOptions
from bastion.tester.scan.registry import BY_ID
from bastion.tester.scan.report import to_json
from bastion.tester.scan.traces import trace_in
from tests.tester.scan.servers import serve

#: One body per trace format of the class, none of them taken from an app of this project.
TRACES = {
    "a Python traceback": 'Traceback (most recent call last):\n  File "/srv/app/views.py", line 88, in get\n'
                          "    return rows[0]\nIndexError: list index out of range\n",
    "a Java stack trace": "java.lang.NullPointerException: null\n\tat com.acme.shop.OrderService.find(OrderService"
                          ".java:42)\n\tat com.acme.shop.OrderController.get(OrderController.java:17)\n",
    "a .NET stack trace": "System.InvalidOperationException: Sequence contains no elements\n   at Acme.Api.Orders"
                          "Controller.Get(Int32 id) in C:\\src\\Acme.Api\\OrdersController.cs:line 31\n",
    "a Node.js stack trace": "TypeError: Cannot read properties of undefined (reading 'id')\n    at getOrder "
                             "(/usr/src/app/routes/orders.js:27:19)\n    at Layer.handle (/usr/src/app/node_modules/"
                             "express/lib/router/layer.js:95:5)\n",
    "a PHP error": "<br />\n<b>Fatal error</b>:  Uncaught Error: Call to a member function fetch() on bool in "
                   "/var/www/html/api/orders.php:14\nStack trace:\n#0 {main}\n",
    "a Ruby backtrace": "NoMethodError (undefined method `id' for nil:NilClass):\n  app/controllers/orders_controller"
                        ".rb:12:in `show'\n",
    "a Go panic": "panic: runtime error: index out of range [3] with length 3\n\ngoroutine 18 [running]:\n"
                  "main.handler(0xc000126000)\n\t/app/main.go:41 +0x1d9\n",
    "a database error": '{"error": "ERROR: unterminated quoted string at or near \\"\'\\" LINE 1: SELECT * FROM '
                        'orders WHERE note = \'\'\'"}',
}


def _exchange(body: str, *, url: str = "http://127.0.0.1:1/orders", sent: bytes = b"") -> Exchange:
    return Exchange("GET", url, (), sent, 500, (), body.encode(), 0.01, "alice")


@pytest.mark.parametrize("label", sorted(TRACES))
def test_each_trace_format_of_the_class_is_recognised(label: str) -> None:
    """Python, Java, .NET, Node.js, PHP, Ruby, Go and SQL error texts are each named for what they are."""
    assert trace_in(_exchange(TRACES[label])) == label


def test_ordinary_errors_and_echoed_payloads_are_not_traces() -> None:
    """A generic problem document is no trace; neither is a signature the request itself carried (an API that
    echoes the query string back is not leaking anything of its own)."""
    assert trace_in(_exchange('{"type": "about:blank", "title": "Not Found", "status": 404}')) is None
    payload = 'File "/etc/x.py", line 1'
    echoed = _exchange(f'{{"error": "no result for {payload}"}}', url=f"http://127.0.0.1:1/search?q={payload}")
    assert trace_in(echoed) is None


SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "widgets", "version": "1"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        "/widgets": {"get": {"operationId": "listWidgets", "responses": {"200": {"description": "ok"}}}},
        "/widgets/{widgetId}": {"get": {"operationId": "getWidget", "parameters": [
            {"name": "widgetId", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 8}}],
            "responses": {"200": {"description": "ok"}}}},
    },
}


def _widgets(trace: bool) -> Starlette:
    """Its list answers 500 — with a Go panic when ``trace``, with a bare "Internal Server Error" when not."""

    async def listing(request: Request) -> Response:
        return PlainTextResponse(TRACES["a Go panic"] if trace else "Internal Server Error", 500)

    async def one(request: Request) -> Response:
        return JSONResponse({"id": request.path_params["widgetId"]})

    return Starlette(routes=[Route("/widgets", listing), Route("/widgets/{widgetId}", one)])


@pytest.mark.parametrize("trace", [True, False])
def test_a_trace_seen_during_discovery_is_a_finding(tmp_path: Any, trace: bool) -> None:
    """Discovery lists the widgets; the list answers 500 with a Go panic. The verbose-errors check has nothing to
    provoke (no typed parameter, no body), yet the answer is reported as API8-VERBOSE-ERRORS on `GET /widgets`,
    saying it came during discovery, with the redacted exchange as evidence. The same 500 without a trace is no
    finding."""
    import yaml

    spec = tmp_path / "openapi.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    with serve(_widgets(trace)) as origin:
        options = ScanOptions(base_url=origin, max_rps=500)
        result = run_scan(spec, options, [IdentityConfig("alice", headers={"Authorization": "Bearer abc.def"})],
                          [BY_ID["API8-VERBOSE-ERRORS"]])
    found = [(f.check.id, f.target) for f in result.findings]
    if not trace:
        assert found == []
        return
    assert found == [("API8-VERBOSE-ERRORS", "GET /widgets")]
    [finding] = result.findings
    assert "during discovery" in finding.message and "a Go panic" in finding.message
    evidence = to_json(result)["findings"][0]["evidence"][0]
    assert "abc.def" not in str(evidence)  # the identity's credential is redacted
