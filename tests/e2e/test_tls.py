"""TLS end to end: termination with HSTS, modern versions only, and verified TLS to upstreams."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import shutil
import ssl
import subprocess
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.certs import generate_self_signed
from bastion.demo.server import DemoServer
from bastion.proxy.tls import server_context
from bastion.testing import GatewayProcess, RawConnection


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("certs")
    out = {}
    for name in ("gateway", "upstream", "other"):
        cert, key = folder / f"{name}.pem", folder / f"{name}.key"
        # Each also serves as a client certificate (mTLS) in these tests.
        generate_self_signed(cert, key, hosts=["localhost", "127.0.0.1"], client_auth=True)
        out[name], out[name + "_key"] = cert, key
    return out


#: The demo's public listBooks operation, written by hand (these tests are about TLS, not auth).
BOOKS = [{"path": "/books", "methods": ["GET"], "public": True}]


def https_get(
    port: int, path: str, ca: Path, *, max_version: ssl.TLSVersion | None = None
) -> tuple[int, dict[str, str], bytes]:
    ctx = ssl.create_default_context(cafile=str(ca))
    if max_version is not None:
        with warnings.catch_warnings():  # asking for an old version is the point of the test
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = max_version
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_tls_termination_with_hsts(demo_api: DemoServer, certs: dict[str, Path]) -> None:
    """listen.tls serves HTTPS with the given certificate and adds Strict-Transport-Security."""
    cfg = {
        "listen": {
            "tls": {
                "cert": str(certs["gateway"]),
                "key": str(certs["gateway_key"]),
                "hsts": {"max_age": 600, "include_subdomains": False},
            }
        },
        "services": [{"name": "books", "upstream": demo_api.url, "routes": BOOKS}],
    }
    with GatewayProcess(cfg) as gw:
        status, headers, body = https_get(gw.port, "/books", certs["gateway"])
        assert status == 200
        assert headers["strict-transport-security"] == "max-age=600"
        assert b'"items"' in body
        status, headers, _ = https_get(gw.port, "/nope", certs["gateway"])
        assert status == 404 and headers["strict-transport-security"] == "max-age=600"
        # Older protocol versions are refused during the handshake.
        with pytest.raises(ssl.SSLError):
            https_get(gw.port, "/books", certs["gateway"], max_version=ssl.TLSVersion.TLSv1_1)
        # A client that does not trust the certificate fails verification.
        with pytest.raises(ssl.SSLCertVerificationError):
            https_get(gw.port, "/books", certs["other"])


class TlsUpstream:
    """A tiny HTTPS upstream answering every request with 200 and the path it saw."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self.ctx = server_context(cert, key, client_ca=client_ca)
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    path = head.split(b" ", 2)[1]
                    body = b'{"tls-upstream":"' + path + b'"}'
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                        + str(len(body)).encode()
                        + b"\r\n\r\n"
                        + body
                    )
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                writer.close()

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=self.ctx)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    def __enter__(self) -> TlsUpstream:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


@pytest.fixture(scope="module")
def tls_upstream(certs: dict[str, Path]) -> Iterator[TlsUpstream]:
    with TlsUpstream(certs["upstream"], certs["upstream_key"]) as up:
        yield up


def test_tls_to_upstream_verifies_the_certificate(certs: dict[str, Path], tls_upstream: TlsUpstream) -> None:
    """An https:// upstream is reached over verified TLS; with the wrong CA the gateway answers 502."""

    def cfg(ca: Path) -> dict[str, object]:
        return {
            "services": [
                {
                    "name": "secure",
                    "routes": [{"path": "/", "prefix": True, "public": True}],  # TLS is tested, not auth
                    "upstream": {"targets": [f"https://127.0.0.1:{tls_upstream.port}"], "tls": {"ca": str(ca)}},
                }
            ]
        }

    with GatewayProcess(cfg(certs["upstream"])) as gw:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        conn.request("GET", "/hello")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b'{"tls-upstream":"/hello"}'
        conn.close()
    with GatewayProcess(cfg(certs["other"])) as gw:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        conn.request("GET", "/hello")
        resp = conn.getresponse()
        assert resp.status == 502
        assert resp.getheader("content-type") == "application/problem+json"
        assert b"certificate" not in resp.read()  # the reason is logged, not told to the client
        conn.close()
        assert "TLS handshake with https://127.0.0.1" in gw.stderr_text()


def test_mtls_to_upstream_presents_the_client_certificate(certs: dict[str, Path]) -> None:
    """An upstream that requires client certificates accepts Bastion's (upstream.tls.cert/key); without it, 502."""
    with TlsUpstream(certs["upstream"], certs["upstream_key"], client_ca=certs["gateway"]) as up:

        def cfg(tls: dict[str, str]) -> dict[str, object]:
            return {
                "services": [
                    {
                        "name": "secure",
                        "routes": [{"path": "/", "prefix": True, "public": True}],  # TLS is tested, not auth
                        "upstream": {
                            "targets": [f"https://127.0.0.1:{up.port}"],
                            "tls": {"ca": str(certs["upstream"]), **tls},
                        },
                    }
                ]
            }

        with_cert = cfg({"cert": str(certs["gateway"]), "key": str(certs["gateway_key"])})
        for config, expected in ((with_cert, 200), (cfg({}), 502)):
            with GatewayProcess(config) as gw:
                conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
                conn.request("GET", "/m")
                resp = conn.getresponse()
                resp.read()
                conn.close()
                assert resp.status == expected


def test_listener_mtls_requires_client_certificates(demo_api: DemoServer, certs: dict[str, Path]) -> None:
    """listen.tls.client_ca makes the gateway refuse clients without a certificate it trusts."""
    cfg = {
        "listen": {
            "tls": {"cert": str(certs["gateway"]), "key": str(certs["gateway_key"]), "client_ca": str(certs["other"])}
        },
        "services": [{"name": "books", "upstream": demo_api.url, "routes": BOOKS}],
    }
    with GatewayProcess(cfg) as gw:
        ctx = ssl.create_default_context(cafile=str(certs["gateway"]))
        ctx.load_cert_chain(certs["other"], certs["other_key"])
        conn = http.client.HTTPSConnection("127.0.0.1", gw.port, context=ctx, timeout=5)
        conn.request("GET", "/books")
        resp = conn.getresponse()
        assert resp.status == 200
        resp.read()
        conn.close()
        with pytest.raises((ssl.SSLError, ConnectionResetError, http.client.RemoteDisconnected)):
            https_get(gw.port, "/books", certs["gateway"])  # no client certificate


def _client_hello() -> bytes:
    """The bytes of a real TLS ClientHello (made in memory, never sent by ssl itself)."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_unfinished_tls_handshake_is_cut_at_the_handshake_timeout(
    demo_api: DemoServer, certs: dict[str, Path]
) -> None:
    """listen.timeouts.handshake bounds the TLS handshake: a client that connects and sends
    nothing, and one that sends half a ClientHello, are disconnected (after 0.5 s here; the
    wait is bounded at 8 s, well under the event loop's own 60 s and the 10 s header
    timeout), while a client that completes the handshake is served."""
    cfg = {
        "listen": {
            "tls": {"cert": str(certs["gateway"]), "key": str(certs["gateway_key"])},
            "timeouts": {"handshake": 0.5},
        },
        "services": [
            {
                "name": "books",
                "upstream": demo_api.url,
                "routes": [{"path": "/books", "methods": ["GET"], "public": True}],  # TLS is tested, not auth
            }
        ],
    }
    hello = _client_hello()
    assert hello[0] == 0x16  # a TLS handshake record
    with GatewayProcess(cfg) as gw:
        with RawConnection("127.0.0.1", gw.port) as silent, RawConnection("127.0.0.1", gw.port) as half:
            half.send(hello[: len(hello) // 2])
            assert silent.is_closed_by_peer(wait=8.0)
            assert half.is_closed_by_peer(wait=8.0)
        status, _, _ = https_get(gw.port, "/books", certs["gateway"])
        assert status == 200


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command-line tool")
def test_listener_key_exchange_groups_with_openssl_s_client(
    demo_api: DemoServer, certs: dict[str, Path]
) -> None:
    """The running listener accepts a client offering only X25519, P-256 or P-384 and refuses
    one offering only P-521 or X448 (OpenSSL's own default list has them), over TLS 1.3 and,
    for P-256, TLS 1.2 too; checked with ``openssl s_client -groups``."""
    cfg = {
        "listen": {"tls": {"cert": str(certs["gateway"]), "key": str(certs["gateway_key"])}},
        "services": [{"name": "books", "upstream": demo_api.url, "routes": [{"path": "/books", "methods": ["GET"]}]}],
    }

    def handshake(port: int, group: str, version: str) -> bool:
        result = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", f"-{version}", "-groups", group,
             "-CAfile", str(certs["gateway"]), "-verify_return_error", "-servername", "localhost"],
            input=b"", capture_output=True, timeout=20, check=False,
        )
        return result.returncode == 0 and b"Verify return code: 0 (ok)" in result.stdout

    with GatewayProcess(cfg) as gw:
        for group in ("X25519", "P-256", "P-384"):
            assert handshake(gw.port, group, "tls1_3"), group
        assert handshake(gw.port, "P-256", "tls1_2")
        for group in ("P-521", "X448"):
            assert not handshake(gw.port, group, "tls1_3"), group
