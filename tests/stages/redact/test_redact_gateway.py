"""The redact stage end to end: a real gateway process in front of a leaking upstream.

The upstream (a small threaded HTTP server in this module) leaks what real APIs leak: a card
number its chunked body splits across writes, an AWS key in JSON, a private key in a 500
debug page, a gzip body (sent whatever the client asked for), an SSN, a secret in a debug
header. The tests assert exactly what the client receives, and what the record says.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bastion.testing import GatewayProcess, RawConnection, RawResponse

CARD = b"4111 1111 1111 1111"
AWS = b"AKIAIOSFODNN7EXAMPLE"
PEM = (
    b"-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    b"KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END RSA PRIVATE KEY-----"
)
#: The chunked body of /card, as the upstream writes it: the card number in three pieces.
CARD_PIECES = [b'{"order": "ORD-2024-000123", "card": "4111 11', b"11 1111 1", b'111", "total": 1733565760000}']


class LeakingApi(BaseHTTPRequestHandler):
    """Every path leaks something; see the module docstring."""

    protocol_version = "HTTP/1.1"
    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _send(self, status: int, body: bytes, ctype: str = "application/json", **headers: str) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/card":
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for piece in CARD_PIECES:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/aws":
            doc = {"id": "550e8400-e29b-41d4-a716-446655440000", "access_key_id": AWS.decode(), "region": "eu-west-1"}
            self._send(200, json.dumps(doc).encode())
        elif path == "/crash":
            page = b"<html><pre>Traceback: config loaded from\n" + PEM + b"\n</pre></html>"
            self._send(500, page, "text/html")
        elif path == "/gzip":
            self._send(200, gzip.compress(b'{"card": "' + CARD + b'"}'), content_encoding="gzip")
        elif path == "/ssn":
            self._send(200, b'{"name": "Jane", "ssn": "123-45-6789"}')
        elif path == "/header":
            self._send(200, b'{"ok": true}', x_upstream_credentials=f"aws {AWS.decode()}")
        elif path == "/clean":
            self._send(200, CLEAN)
        else:
            self._send(404, b"{}")


#: Look-alikes only: a UUID, a timestamp in milliseconds, a number that fails Luhn.
CLEAN = b'{"id": "550e8400-e29b-41d4-a716-446655440000", "ts": 1733565760000, "n": 4111111111111112}'


@pytest.fixture(scope="module")
def leaking_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), LeakingApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _config(upstream: str) -> dict[str, Any]:
    redact = {"types": ["card", "ssn", "secrets"], "action": "mask"}
    return {
        "access_log": {"path": "access.log"},
        "services": [{
            "name": "api",
            "upstream": upstream,
            "routes": [
                {"path": "/ssn", "public": True, "policies": {"redact": {**redact, "actions": {"ssn": "block"}}}},
                {"path": "/crash", "public": True, "policies": {"redact": {**redact, "action": "remove"}}},
                {"path": "/", "prefix": True, "public": True, "policies": {"redact": redact}},
            ],
        }],
    }


@pytest.fixture(scope="module")
def gateway(leaking_api: str) -> Iterator[GatewayProcess]:
    with GatewayProcess(_config(leaking_api)) as gw:
        yield gw


def _get(gw: GatewayProcess, path: str, *headers: str) -> RawResponse:
    extra = "".join(f"{h}\r\n" for h in headers)
    with RawConnection(gw.host, gw.port, timeout=10) as conn:
        conn.send(f"GET {path} HTTP/1.1\r\nHost: api.test\r\n{extra}\r\n".encode())
        return conn.read_response()


def _record(gw: GatewayProcess, path: str) -> dict[str, Any]:
    return gw.wait_for_access_record(lambda r: r.get("path") == path)


def test_a_card_number_split_across_chunks_is_masked(gateway: GatewayProcess) -> None:
    """The upstream writes the card number in three chunks; the client gets it masked to its
    last four digits, everything else byte for byte, and the record counts one card."""
    resp = _get(gateway, "/card")
    assert resp.status == 200
    assert resp.body == b"".join(CARD_PIECES).replace(CARD, b"**** **** **** 1111")
    assert resp.json()["total"] == 1733565760000  # a timestamp is not a card
    assert _record(gateway, "/card")["redact"] == {"found": {"card": 1}}


def test_an_aws_key_in_json_is_masked_and_the_json_stays_valid(gateway: GatewayProcess) -> None:
    """An AWS access key ID in a JSON member is masked; the UUID beside it is untouched."""
    resp = _get(gateway, "/aws")
    doc = resp.json()
    assert doc == {
        "id": "550e8400-e29b-41d4-a716-446655440000",
        "access_key_id": "****************MPLE",
        "region": "eu-west-1",
    }
    # The framing depends on whether the upstream's body came with its head (known whole:
    # Content-Length) or after it (streamed through the body hook: chunked); either way
    # it must describe the body the client got.
    assert resp.framing == "chunked" or resp.header("content-length") == str(len(resp.body))


def test_a_private_key_in_a_5xx_page_is_removed(gateway: GatewayProcess) -> None:
    """On a route with action 'remove', the private key block in the upstream's 500 debug
    page is replaced by a mark; the status passes as it is."""
    resp = _get(gateway, "/crash")
    assert resp.status == 500
    assert b"PRIVATE KEY" not in resp.body and b"MIIBOgIBAAJBAKj34" not in resp.body
    assert resp.body == b"<html><pre>Traceback: config loaded from\n[REDACTED private_key]\n</pre></html>"


def test_a_gzip_body_is_decoded_and_masked(gateway: GatewayProcess) -> None:
    """The upstream gzips its body whatever was asked; the gateway decodes it for the
    scan, and the client gets the card masked (gzip again, or plain: either way masked)."""
    resp = _get(gateway, "/gzip", "Accept-Encoding: gzip")
    assert resp.status == 200
    body = gzip.decompress(resp.body) if resp.header("content-encoding") == "gzip" else resp.body
    assert body == b'{"card": "**** **** **** 1111"}'


def test_an_ssn_on_block_is_a_502_before_anything_is_sent(gateway: GatewayProcess) -> None:
    """With ``ssn: block`` the response is replaced by a 502 problem+json that says nothing
    of the data; the record names the stage and its reason."""
    resp = _get(gateway, "/ssn")
    assert resp.status == 502
    assert resp.header("content-type") == "application/problem+json"
    assert b"123-45" not in resp.body and b"Jane" not in resp.body
    assert resp.json()["detail"] == "The upstream's response contained data this route may not return."
    record = _record(gateway, "/ssn")
    assert record["blocked_by"] == "redact"
    assert record["decisions"] == [{"stage": "redact", "action": "block", "reason": "redact.blocked"}]
    assert record["redact"] == {"found": {"ssn": 1}}


def test_a_secret_in_a_response_header_is_masked(gateway: GatewayProcess) -> None:
    """Header values are scanned too: the AWS key in a header (one the headers stage keeps: its
    `X-Debug-*` would be removed outright) reaches the client masked."""
    resp = _get(gateway, "/header")
    assert resp.header("x-upstream-credentials") == "aws ****************MPLE"


def test_a_clean_response_passes_unchanged_and_uncounted(gateway: GatewayProcess) -> None:
    """UUIDs, millisecond timestamps and a number that fails Luhn pass as they are, and the
    record has no redact field."""
    resp = _get(gateway, "/clean")
    assert resp.body == CLEAN
    assert "redact" not in _record(gateway, "/clean")


#: The issue's form: redaction written with response protection, on one operation.
LENT_OPENAPI = """
openapi: 3.1.0
info: {title: orders, version: "1"}
paths:
  /card:
    get:
      operationId: getOrder
      security: []
      x-bastion-response: {schema: filter, redact: [card, ssn, secrets]}
      responses:
        "200":
          description: an order
          content:
            application/json:
              schema:
                type: object
                properties:
                  order: {type: string}
                  card: {type: string}
"""


def test_redaction_written_inside_x_bastion_response_masks_and_filters(leaking_api: str) -> None:
    """``x-bastion-response: {schema: filter, redact: [card, ssn, secrets]}`` turns on both
    stages on the operation: the card number split across chunks arrives masked, and the
    member the schema does not declare (``total``) is gone."""
    config = {"services": [{"name": "orders", "upstream": leaking_api, "openapi": "orders.yaml"}]}
    with GatewayProcess(config, files={"orders.yaml": LENT_OPENAPI}) as gw:
        resp = _get(gw, "/card")
    assert resp.status == 200
    assert resp.json() == {"order": "ORD-2024-000123", "card": "**** **** **** 1111"}
