"""Every `bastion` command with only its required arguments, so that every default is used.

A fresh install once resolved a newer click that validates defaults against an option's
range, and `bastion serve` (default ``--workers 0`` under ``min=1``) refused to start while
every test passed an explicit ``--workers``. These tests run the installed console script, as
a user would, with nothing but what each command requires.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from bastion import __version__
from bastion.cli.app import app
from bastion.demo.app import openapi_path
from bastion.demo.server import DemoServer
from bastion.testing import free_port

#: The installed entry point (``[project.scripts]``), beside the interpreter running the tests.
BASTION = str(Path(sys.executable).with_name("bastion"))
SPEC = str(openapi_path())

#: What each command requires, and nothing more.
REQUIRED: dict[str, list[str]] = {
    "serve": [],
    "check": [],
    "demo": [],
    "cert": [],
    "version": [],
    "audit": [SPEC],
    "scan": ["--spec", SPEC, "--url", "http://127.0.0.1:9"],
    "docs": [],
    "oauth clients create": ["billing", "--consumer", "svc"],
    "oauth clients list": [],
    "oauth clients revoke": ["billing"],
    "oauth revoke": ["some-jti"],
    "clients create": ["billing", "--consumer", "svc"],
    "clients list": [],
    "clients revoke": ["billing"],
    "consumers create": ["bob"],
    "consumers list": [],
    "consumers show": ["bob"],
    "consumers delete": ["bob"],
    "consumers invite": ["alice"],
    "consumers reset-password": ["alice"],
    "consumers certs add": ["bob", "--san", "bob.internal"],
    "consumers certs list": [],
    "consumers certs remove": ["bob", "--san", "bob.internal"],
    "keys create": ["alice"],
    "keys list": [],
    "keys revoke": ["KEYID"],
    "keys rotate": ["KEYID"],
    "logs query": [],
    "logs tail": [],
    "alerts list": [],
    "alerts ack": ["ALERTID"],
    "alerts resolve": ["ALERTID"],
    "blocks list": [],
    "blocks lift": ["ip", "192.0.2.1"],
    "routes": [],
    "admin create": ["root"],
    "admin list": [],
    "admin audit": [],
    "admin reset-password": ["root"],
    "admin disable": ["root"],
    "admin delete": ["root"],
    "config export": [],
    "config import": [SPEC],
    "summary": [],
    "admin token create": ["root"],
    "admin token list": [],
    "admin token revoke": ["TOKENID"],
    "discover": [],
    "secrets new-key": [],
    "secrets encrypt": [],
}


def run(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BASTION, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False)


def write_config(folder: Path, upstream_port: int = 9) -> tuple[int, int]:
    """A ``bastion.yaml`` for the demo API in ``folder`` (the default ``-c``), on free ports."""
    port, admin_port = free_port(), free_port()
    (folder / "bastion.yaml").write_text(
        f"listen: {{port: {port}}}\nadmin: {{port: {admin_port}}}\n"
        f"services: [{{name: books, upstream: 'http://127.0.0.1:{upstream_port}', openapi: '{SPEC}'}}]\n"
    )
    return port, admin_port


def get_json(port: int, path: str) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@contextlib.contextmanager
def running(*args: str, cwd: Path, ready_port: int, ready_path: str = "/ready") -> Iterator[subprocess.Popen[str]]:
    """A long-running command, until ``ready_path`` answers 200 on ``ready_port``; SIGTERM after."""
    proc = subprocess.Popen([BASTION, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"`bastion {' '.join(args)}` exited with {proc.returncode}:\n{out}\n{err}")
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
                if get_json(ready_port, ready_path)[0] == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"`bastion {' '.join(args)}` was not ready within 30 s")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        proc.communicate()


def commands() -> dict[str, Any]:
    """The command objects typer builds for ``bastion`` (its own click, vendored since typer 0.2x),
    a group's commands by their full name (``oauth clients create``)."""
    return dict(_leaves(typer.main.get_command(app), ""))


def _leaves(command: Any, name: str) -> Iterator[tuple[str, Any]]:
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        yield name, command
        return
    for sub_name, sub in subcommands.items():
        yield from _leaves(sub, f"{name} {sub_name}".strip())


def test_every_command_is_listed_here() -> None:
    """A new command must be added to REQUIRED (and get a run below), or this fails."""
    assert set(commands()) == set(REQUIRED)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_defaults_pass_the_option_checks(name: str) -> None:
    """Parsing only the required arguments applies every default through its option's own type and
    range check, as click does for a user; an invalid default raises here (serve's did)."""
    command = commands()[name]
    with command.make_context(name, list(REQUIRED[name])) as ctx:
        assert set(ctx.params) == {p.name for p in command.params}


def test_version(tmp_path: Path) -> None:
    """`bastion version` prints the installed version."""
    result = run("version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __version__


def test_check_reads_bastion_yaml_in_the_current_folder(tmp_path: Path) -> None:
    """`bastion check` validates ./bastion.yaml and lists its routes."""
    write_config(tmp_path)
    result = run("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "is valid: 1 service(s)" in result.stdout and "listBooks" in result.stdout


def test_cert_writes_cert_pem_and_key_pem_for_localhost(tmp_path: Path) -> None:
    """`bastion cert` writes ./cert.pem and ./key.pem for localhost and 127.0.0.1, valid 365 days."""
    result = run("cert", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "for localhost, 127.0.0.1 (valid 365 days)" in result.stdout
    assert (tmp_path / "cert.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600


def test_audit_of_a_spec(tmp_path: Path) -> None:
    """`bastion audit SPEC` reviews the document and exits 1 (the demo has high findings; --fail-on low by
    default, as for `bastion scan`)."""
    result = run("audit", SPEC, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Score:" in result.stdout


def test_docs_writes_site_for_bastion_yaml(tmp_path: Path) -> None:
    """`bastion docs` documents ./bastion.yaml into ./site/."""
    write_config(tmp_path)
    result = run("docs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "index.md").is_file() and (tmp_path / "site" / "index.html").is_file()


def test_scan_of_a_running_api(tmp_path: Path) -> None:
    """`bastion scan --spec --url` scans the demo API with every default and reports what it found
    (exit 1: the demo API behind no gateway has findings at the default --fail-on)."""
    port = free_port()
    with DemoServer("127.0.0.1", port):
        result = run("scan", "--spec", SPEC, "--url", f"http://127.0.0.1:{port}", cwd=tmp_path)
    assert result.returncode in (0, 1), result.stderr
    assert "check(s) ran" in result.stdout and "Traceback" not in result.stderr


def test_serve_starts_one_worker_per_core(tmp_path: Path) -> None:
    """`bastion serve` with no option serves ./bastion.yaml with one worker per core, and a SIGTERM
    stops it with exit code 0."""
    api_port = free_port()
    with DemoServer("127.0.0.1", api_port):
        port, admin_port = write_config(tmp_path, api_port)
        with running("serve", cwd=tmp_path, ready_port=admin_port) as proc:
            status, health = get_json(admin_port, "/health")
            assert status == 200 and isinstance(health, dict)
            assert health["workers_wanted"] == (os.cpu_count() or 1)
            assert get_json(port, "/books?limit=1")[0] == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0


def _taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_demo_on_its_default_ports(tmp_path: Path) -> None:
    """`bastion demo` with no option serves the bookstore on 127.0.0.1:8080 (admin 9090, API 9001).

    Its defaults are fixed ports: on a developer's machine where one is taken this test is
    skipped, but never in CI, where a skip would hide the one run of the demo's defaults."""
    busy = [p for p in (8080, 9090, 9001) if _taken(p)]
    if busy:
        if os.environ.get("CI"):
            pytest.fail(f"ports {busy} are taken on the CI machine; the demo's defaults cannot be tested")
        pytest.skip(f"ports {busy} are taken on this machine")
    with running("demo", cwd=tmp_path, ready_port=9090):
        status, body = get_json(8080, "/books?limit=1")
        assert status == 200 and isinstance(body, dict) and "items" in body


def test_oauth_clients_create_list_revoke_with_bastion_yaml(tmp_path: Path) -> None:
    """`bastion oauth clients create/list/revoke` use ./bastion.yaml and its default store (a
    SQLite file and a 0600 pepper beside it): create prints the secret as its last line, list
    shows the client and never the secret, revoke marks it revoked; `bastion clients` is the
    same group under its short name."""
    write_config(tmp_path)
    with (tmp_path / "bastion.yaml").open("a") as f:
        f.write("consumers: [{name: svc}]\n")
    created = run("oauth", "clients", "create", "billing", "--consumer", "svc", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("bcs_") and len(secret) > 40
    assert (tmp_path / "bastion.db").is_file()
    assert (tmp_path / "bastion.pepper").stat().st_mode & 0o777 == 0o600
    listed = run("oauth", "clients", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "billing" in listed.stdout and "consumer=svc" in listed.stdout and secret not in listed.stdout
    revoked = run("oauth", "clients", "revoke", "billing", cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in run("clients", "list", cwd=tmp_path).stdout


def test_oauth_revoke_needs_a_shared_state_backend(tmp_path: Path) -> None:
    """`bastion oauth revoke JTI` on ./bastion.yaml with the default (memory) state backend
    refuses with exit code 2 and says what to configure: it could reach no running gateway."""
    write_config(tmp_path)
    result = run("oauth", "revoke", "some-jti", cwd=tmp_path)
    assert result.returncode == 2
    assert "backends: {state: redis" in result.stderr


def test_store_commands_with_their_defaults(tmp_path: Path) -> None:
    """`bastion consumers` (with `consumers certs`) and `bastion keys`, each with only its required arguments, work on
    the store ./bastion.yaml configures by default (./bastion.db, pepper ./bastion.pepper): a
    key made with no scopes and no expiry is the last line of `keys create`, listed by id,
    rotated with the default 24h overlap and revoked."""
    write_config(tmp_path)
    with (tmp_path / "bastion.yaml").open("a") as f:
        f.write("consumers: [{name: alice, roles: [user]}]\n")
    for args in (["consumers", "create", "bob"], ["consumers", "list"], ["consumers", "show", "bob"],
                 ["consumers", "certs", "add", "bob", "--san", "bob.internal"], ["consumers", "certs", "list"],
                 ["consumers", "certs", "remove", "bob", "--san", "bob.internal"], ["consumers", "delete", "bob"]):
        result = run(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        if args[1:3] == ["certs", "list"]:
            assert result.stdout.split()[:4] == ["CONSUMER", "MATCHER", "VALUE", "SOURCE"]
            assert result.stdout.split()[4:] == ["bob", "san", "bob.internal", "store"]
    created = run("keys", "create", "alice", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.splitlines()[-1]
    assert key.startswith("bst_") and len(key) == 54
    assert (tmp_path / "bastion.db").is_file() and (tmp_path / "bastion.pepper").stat().st_mode & 0o777 == 0o600
    listed = run("keys", "list", cwd=tmp_path)
    assert listed.returncode == 0 and key[4:12] in listed.stdout and key not in listed.stdout
    rotated = run("keys", "rotate", key[4:12], cwd=tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.splitlines()[-1].startswith("bst_")
    revoked = run("keys", "revoke", key[4:12], cwd=tmp_path)
    assert revoked.returncode == 0 and f"revoked API key {key[4:12]}" in revoked.stdout


def test_consumers_invite_with_its_defaults(tmp_path: Path) -> None:
    """`bastion consumers invite NAME` on ./bastion.yaml: the last line is a one-time link to the
    admin listener's /portal/invite/ (login NAME, 7 days by default), the store keeps only its
    hash, a second invitation replaces the first, and an unknown consumer exits 1 in one line.
    `bastion consumers reset-password LOGIN` then prints a /portal/reset/ link, hashed too."""
    _, admin_port = write_config(tmp_path)
    with (tmp_path / "bastion.yaml").open("a") as f:
        f.write("consumers: [{name: alice}]\n")
    invited = run("consumers", "invite", "alice", cwd=tmp_path)
    assert invited.returncode == 0, invited.stderr
    link = invited.stdout.splitlines()[-1]
    prefix = f"http://127.0.0.1:{admin_port}/portal/invite/"
    assert link.startswith(prefix) and len(link) > len(prefix) + 40
    assert "admin.portal.enabled is false" in invited.stderr
    assert link[len(prefix):].encode() not in (tmp_path / "bastion.db").read_bytes()
    unknown = run("consumers", "invite", "nobody", cwd=tmp_path)
    assert unknown.returncode == 1 and "nobody" in unknown.stderr and "Traceback" not in unknown.stderr
    reset = run("consumers", "reset-password", "alice", cwd=tmp_path)
    assert reset.returncode == 0, reset.stderr
    reset_link = reset.stdout.splitlines()[-1]
    assert reset_link.startswith(f"http://127.0.0.1:{admin_port}/portal/reset/") and "works once" in reset.stderr
    assert reset_link.rsplit("/", 1)[1].encode() not in (tmp_path / "bastion.db").read_bytes()


def test_admin_commands_with_their_defaults(tmp_path: Path) -> None:
    """`bastion admin` on ./bastion.yaml's store: `create` makes an admin (the default role) whose
    one-time password is the last line; `token create` prints a `bsa_` token last, listed by id
    only and revoked by id; `reset-password` prints a new one-time password; a second user of
    the same name is refused with exit 1 and one line."""
    write_config(tmp_path)
    created = run("admin", "create", "root", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert "created admin user root (admin)" in created.stdout
    password = created.stdout.splitlines()[-1]
    assert len(password) >= 20 and " " not in password
    again = run("admin", "create", "root", cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr
    listed = run("admin", "list", cwd=tmp_path)
    assert listed.returncode == 0 and "root" in listed.stdout and password not in listed.stdout
    token = run("admin", "token", "create", "root", cwd=tmp_path)
    assert token.returncode == 0, token.stderr
    secret = token.stdout.splitlines()[-1]
    assert secret.startswith("bsa_") and len(secret) == 56
    tokens = run("admin", "token", "list", cwd=tmp_path)
    assert tokens.returncode == 0 and secret[4:12] in tokens.stdout and secret not in tokens.stdout
    revoked = run("admin", "token", "revoke", secret[4:12], cwd=tmp_path)
    assert revoked.returncode == 0 and f"revoked admin token {secret[4:12]}" in revoked.stdout
    reset = run("admin", "reset-password", "root", cwd=tmp_path)
    assert reset.returncode == 0 and reset.stdout.splitlines()[-1] not in (password, "")
    audit = run("admin", "audit", "--json", cwd=tmp_path)
    assert audit.returncode == 0, audit.stderr
    trail = [json.loads(line) for line in audit.stdout.splitlines()]
    assert [e["action"] for e in trail] == ["admin.reset_password", "token.revoke", "token.create", "admin.create"]
    assert all(e["via"] == "cli" and e["actor"].startswith("cli:") for e in trail)
    assert password not in audit.stdout and secret not in audit.stdout


def test_admin_disable_and_delete_with_their_defaults(tmp_path: Path) -> None:
    """`bastion admin disable|delete NAME` on ./bastion.yaml's store refuse to leave no active
    admin user (exit 1, saying why), and otherwise do what they say."""
    write_config(tmp_path)
    assert run("admin", "create", "root", cwd=tmp_path).returncode == 0
    last = run("admin", "disable", "root", cwd=tmp_path)
    assert last.returncode == 1 and "root is the last active admin user" in last.stderr
    assert run("admin", "create", "spare", cwd=tmp_path).returncode == 0
    disabled = run("admin", "disable", "root", cwd=tmp_path)
    assert disabled.returncode == 0 and "disabled admin user root" in disabled.stdout
    deleted = run("admin", "delete", "root", cwd=tmp_path)
    assert deleted.returncode == 0 and "deleted admin user root" in deleted.stdout


def test_alerts_with_its_defaults(tmp_path: Path) -> None:
    """`bastion alerts` with no option reads ./bastion.yaml's store (creating it, migrated
    to the alerts table) and lists the last day's alerts: none yet."""
    write_config(tmp_path)
    result = run("alerts", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 alert(s)"


def test_discover_with_its_defaults(tmp_path: Path) -> None:
    """`bastion discover` with no option reads ./bastion.yaml's audit log in its store: no
    traffic yet, so no undeclared endpoint, and every declared route of the demo API is
    listed as not called; without the audit log it refuses, saying what to turn on."""
    write_config(tmp_path)
    refused = run("discover", cwd=tmp_path)
    assert refused.returncode == 1
    assert "audit: {enabled: true}" in refused.stderr
    with (tmp_path / "bastion.yaml").open("a") as f:
        f.write("audit: {enabled: true}\n")
    result = run("discover", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "0 undeclared endpoint(s)" in result.stdout
    assert "listBooks" in result.stdout and "route(s) not called" in result.stdout.splitlines()[-1]


def test_secrets_new_key_then_encrypt(tmp_path: Path) -> None:
    """`bastion secrets new-key` prints a master key; `bastion secrets encrypt`, with it in
    BASTION_MASTER_KEY and the secret on stdin, prints an enc:v1: value without the secret."""
    key = run("secrets", "new-key", cwd=tmp_path)
    assert key.returncode == 0 and len(key.stdout.strip()) == 43
    encrypted = subprocess.run([BASTION, "secrets", "encrypt"], input="hunter2-value\n", capture_output=True,
                               text=True, cwd=tmp_path, timeout=60, check=False,
                               env={**os.environ, "BASTION_MASTER_KEY": key.stdout.strip()})
    assert encrypted.returncode == 0, encrypted.stderr
    assert encrypted.stdout.startswith("enc:v1:") and "hunter2" not in encrypted.stdout


def test_routes_blocks_and_alert_status_with_their_defaults(tmp_path: Path) -> None:
    """`bastion routes` lists ./bastion.yaml's routes with their policy; `bastion blocks list`
    and `blocks lift` on its default memory backend exit 1 saying the blocks are out of reach
    and what to configure; `bastion alerts ack|resolve` of an unknown alert exit 1 naming it,
    and `bastion alerts list` lists as `bastion alerts` does."""
    write_config(tmp_path)
    listed = run("routes", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:6] == ["METHODS", "PATH", "SERVICE", "ID", "AUTH", "STAGES"]
    assert "listBooks" in listed.stdout or "/books" in listed.stdout
    for args in (["blocks", "list"], ["blocks", "lift", "ip", "192.0.2.1"]):
        result = run(*args, cwd=tmp_path)
        assert result.returncode == 1 and "backends: {state: redis}" in result.stderr, result.stderr
    for verb in ("ack", "resolve"):
        result = run("alerts", verb, "ALERTID", cwd=tmp_path)
        assert result.returncode == 1 and "no alert has the id 'ALERTID'" in result.stderr
    result = run("alerts", "list", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "0 alert(s)"
