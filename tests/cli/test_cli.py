"""The `bastion` command line, run as a user would: a real process, real files."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

from bastion.demo.app import openapi_path


def bastion(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion", *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


def test_check_valid_config_lists_routes(tmp_path: Path) -> None:
    """`bastion check` on a valid file exits 0 and lists each route with its operationId."""
    (tmp_path / "books.openapi.yaml").write_text(openapi_path().read_text())
    (tmp_path / "bastion.yaml").write_text(
        "services:\n  - {name: books, upstream: 'http://127.0.0.1:9001', openapi: books.openapi.yaml}\n"
    )
    result = bastion("check", cwd=tmp_path)  # default: ./bastion.yaml
    assert result.returncode == 0, result.stderr
    assert "is valid: 1 service(s)" in result.stdout
    assert "listBooks" in result.stdout and "/books/{bookId}" in result.stdout


def test_check_prints_what_each_route_really_gets(tmp_path: Path) -> None:
    """Per route, `bastion check` says what is enforced: public (with its stages), a 401 naming
    the schemes nothing verifies (never forwarded, no stages), or authentication delegated to
    the upstream (with shadow mode called out), then a note counting the refused routes."""
    (tmp_path / "books.openapi.yaml").write_text(openapi_path().read_text())
    (tmp_path / "bastion.yaml").write_text(
        "policies: {auth: {api_keys: {enabled: false}}}\n"  # nothing verifies credentials
        "services:\n"
        "  - name: books\n"
        "    upstream: http://127.0.0.1:9001\n"
        "    openapi: books.openapi.yaml\n"
        "    routes:\n"
        "      - {path: /hooks, methods: [POST], operation_id: hooks,\n"
        "         policies: {auth: {delegate: upstream, enforce: false}}}\n"
    )
    result = bastion("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    wanted = {"listBooks", "listOrders", "hooks"}
    by_route = {word: line for line in result.stdout.splitlines() for word in line.split() if word in wanted}
    assert by_route["listBooks"].endswith("listBooks (public; stages: access,validation,headers)")
    assert by_route["listOrders"].endswith(
        "listOrders (401: requires apiKey or bearerAuth, which nothing here verifies; never forwarded)"
    )
    assert by_route["hooks"].endswith(
        "hooks (authentication delegated to upstream; shadow mode, nothing to observe; stages: access,headers)"
    )
    assert "note: 7 route(s) require authentication that nothing here verifies: they answer 401" in result.stdout


def test_check_warns_of_deprecated_settings(tmp_path: Path) -> None:
    """`bastion check` accepts a deprecated setting (exit 0) and warns on stderr where it is
    and what replaces it."""
    (tmp_path / "bastion.yaml").write_text(
        "services:\n"
        "  - name: api\n"
        "    upstream: http://127.0.0.1:9001\n"
        "    policies: {detection: {mode: monitor}}\n"
        "    routes: [{path: /x, public: true}]\n"
    )
    result = bastion("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        "warning: bastion.yaml:4: services[0].policies.detection.mode: 'mode' is deprecated: shadow mode is "
        "'enforce: false', as for every stage"
    ) in result.stderr


def test_check_invalid_config_exits_2_with_located_errors(tmp_path: Path) -> None:
    """`bastion check -c FILE` on a broken file exits 2 and prints file:line: field: reason."""
    config = tmp_path / "gw.yaml"
    config.write_text("listen: {port: 99999}\nservices:\n  - {name: b, upstream: 'ftp://x', routes: [{path: /}]}\n")
    result = bastion("check", "-c", str(config))
    assert result.returncode == 2
    assert "the configuration is invalid (2 problem(s))" in result.stderr
    assert f"{config}:1: listen.port: Input should be less than or equal to 65535 (got 99999)" in result.stderr
    assert f"{config}:3: services[0].upstream: expected an http:// or https:// URL, got 'ftp://x'" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_missing_file(tmp_path: Path) -> None:
    """A missing configuration file is one clear line, not a stack trace."""
    result = bastion("check", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml: (top level): file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_invalid_config(tmp_path: Path) -> None:
    """`bastion serve` with a broken file reports it and exits 2 without starting workers."""
    config = tmp_path / "bastion.yaml"
    config.write_text("services: []\n")
    result = bastion("serve", "-c", str(config), "--workers", "1")
    assert result.returncode == 2
    assert "services: List should have at least 1 item" in result.stderr


def test_cert_writes_a_usable_pair(tmp_path: Path) -> None:
    """`bastion cert` writes a certificate and a 0600 key that a TLS server can load."""
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    result = bastion("cert", "--cert", str(cert), "--key", str(key), "--host", "api.test", "--days", "30")
    assert result.returncode == 0, result.stderr
    assert "for api.test (valid 30 days)" in result.stdout
    assert key.stat().st_mode & 0o777 == 0o600
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    again = bastion("cert", "--cert", str(cert), "--key", str(key))
    assert again.returncode == 1 and "exists (use --force to overwrite)" in again.stderr


def test_cert_with_ca_writes_a_leaf_that_verifies(tmp_path: Path) -> None:
    """`bastion cert --ca` writes a CA certificate and a leaf issued by it: the leaf is
    CA:FALSE with serverAuth only, and a client trusting the CA file (host names checked)
    completes a real handshake with a server using the pair."""
    import asyncio

    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    cert, key, ca = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    result = bastion("cert", "--cert", str(cert), "--key", str(key), "--ca", str(ca), "--host", "localhost")
    assert result.returncode == 0, result.stderr
    assert f"clients trust {ca}" in result.stdout
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    issuer = x509.load_pem_x509_certificate(ca.read_bytes())
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert issuer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    leaf.verify_directly_issued_by(issuer)

    async def handshake() -> bytes:
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert, key)

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"ok\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        client_ctx = ssl.create_default_context(cafile=str(ca))  # host name checked
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                           server_hostname="localhost")
            line = await reader.readline()
            writer.close()
            return line
        finally:
            server.close()

    assert asyncio.run(asyncio.wait_for(handshake(), 10)) == b"ok\n"


def test_version_and_help() -> None:
    """`bastion version` prints the package version; `--help` lists every command."""
    from bastion import __version__

    assert bastion("version").stdout.strip() == __version__
    help_text = bastion("--help").stdout
    for command in ("serve", "check", "demo", "cert", "version"):
        assert command in help_text


def test_serve_reports_a_port_in_use(tmp_path: Path) -> None:
    """A data or admin port already taken is one clear error naming it, before any worker starts."""
    import socket

    from bastion.testing import free_port

    data, admin = free_port(), free_port()
    config = tmp_path / "bastion.yaml"
    config.write_text(
        f"listen: {{port: {data}}}\nadmin: {{port: {admin}}}\n"
        "services: [{name: a, upstream: 'http://127.0.0.1:1', routes: [{path: /}]}]\n"
    )
    for taken, what in ((data, f"cannot listen on 127.0.0.1:{data}:"), (admin, f"127.0.0.1:{admin} (admin)")):
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", taken))
            blocker.listen()
            result = bastion("serve", "-c", str(config), "--workers", "1")
        assert result.returncode == 1
        assert "error: cannot start:" in result.stderr and what in result.stderr
        assert "Address already in use" in result.stderr and "Traceback" not in result.stderr
