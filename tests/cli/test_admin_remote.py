"""`bastion admin ...` through a real gateway's admin API (`--admin-url` and an admin token in
BASTION_ADMIN_TOKEN): every command does what it does on the store, the secrets it makes are
the last line (or in --json), the writes are in the admin audit trail under the token's
user, and a token below admin exits 3."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess
from tests.cli.test_cli_defaults import BASTION


def _admin(gw: GatewayProcess, role: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BASTION_ADMIN_URL": gw.admin_url, "BASTION_ADMIN_TOKEN": gw.admin_token(role)}
    return subprocess.run([BASTION, "admin", *args], capture_output=True, text=True, timeout=60, check=False,
                          env=env)


#: A dozen CLI processes, each starting Python, on a machine the suite loads: more than the
#: default two minutes there, though each step takes seconds.
@pytest.mark.timeout(300)
def test_admin_commands_through_the_admin_api(demo_api: DemoServer) -> None:
    """create (one-time password last), list, reset-password, token create/list/revoke,
    disable and delete, all over the API; an operator's token is refused with exit 3; the
    trail names the caller's token for each write."""
    config = {"services": [{"name": "books", "upstream": demo_api.url,
                            "routes": [{"path": "/books", "methods": ["GET"], "public": True}]}]}
    with GatewayProcess(config) as gw:
        created = _admin(gw, "admin", "create", "olga", "--role", "operator")
        assert created.returncode == 0, created.stderr
        password = created.stdout.splitlines()[-1]
        assert "created admin user olga (operator)" in created.stdout and len(password) >= 20
        listed = _admin(gw, "admin", "list", "--json")
        users = {u["name"]: u for u in map(json.loads, listed.stdout.splitlines())}
        assert users["olga"]["role"] == "operator" and password not in listed.stdout

        reset = _admin(gw, "admin", "reset-password", "olga", "--json")
        assert reset.returncode == 0 and json.loads(reset.stdout)["password"] not in (password, "")

        made = _admin(gw, "admin", "token", "create", "olga", "--name", "ci", "--role", "viewer", "--expires", "1h")
        assert made.returncode == 0, made.stderr
        secret = made.stdout.splitlines()[-1]
        assert secret.startswith("bsa_") and "(viewer; expires: 20" in made.stdout
        token_id = secret[4:12]
        tokens = _admin(gw, "admin", "token", "list")
        assert token_id in tokens.stdout and secret not in tokens.stdout
        revoked = _admin(gw, "admin", "token", "revoke", token_id, "--json")
        assert revoked.returncode == 0 and json.loads(revoked.stdout)["token"]["state"] == "revoked"

        refused = _admin(gw, "operator", "create", "mallory")
        assert refused.returncode == 3 and "needs the role admin" in refused.stderr
        assert _admin(gw, "admin", "disable", "olga").returncode == 0
        deleted = _admin(gw, "admin", "delete", "olga")
        assert deleted.returncode == 0 and "deleted admin user olga" in deleted.stdout
        assert "olga" not in _admin(gw, "admin", "list").stdout
        missing = _admin(gw, "admin", "reset-password", "olga")
        assert missing.returncode == 1 and "olga" in missing.stderr

        status, trail = gw.admin("GET", "/api/v1/admin-audit?limit=100", token=gw.admin_token("admin"))
        assert status == 200
        actions = [e["action"] for e in trail["items"] if e["actor"].startswith("test-admin (token ")]
        for action in ("admin_user.create", "admin_user.reset_password", "admin_token.create",
                       "admin_token.revoke", "admin_user.disable", "admin_user.delete"):
            assert action in actions, (action, actions)
        # The same trail from the terminal: `bastion admin audit`, filtered, as JSON lines and a table.
        audited = _admin(gw, "admin", "audit", "--action", "admin_user.delete", "--json")
        assert audited.returncode == 0, audited.stderr
        entries = [json.loads(line) for line in audited.stdout.splitlines()]
        assert [(e["action"], e["target"]) for e in entries] == [("admin_user.delete", entries[0]["target"])]
        assert "olga" in entries[0]["target"]
        table = _admin(gw, "admin", "audit", "--since", "1h")
        assert table.returncode == 0 and table.stdout.count("test-admin") == 6, table.stdout
        assert _admin(gw, "operator", "audit").returncode == 3


def _certs(gw: GatewayProcess, role: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BASTION_ADMIN_URL": gw.admin_url, "BASTION_ADMIN_TOKEN": gw.admin_token(role)}
    return subprocess.run([BASTION, "consumers", "certs", *args], capture_output=True, text=True, timeout=60,
                          check=False, env=env)


@pytest.mark.timeout(300)
def test_consumer_certificates_through_the_admin_api(demo_api: DemoServer) -> None:
    """`bastion consumers certs add|list|remove --admin-url`: a fingerprint mapped (and a
    second spelling of it recognised as the same), listed with its source, one another
    consumer claims refused (exit 1, naming the owner), a declared consumer refused, a viewer
    refused (exit 3), and the removal by another spelling; each write in the trail."""
    fingerprint = "sha256:" + "ab" * 32
    config = {"consumers": [{"name": "declared"}],
              "services": [{"name": "books", "upstream": demo_api.url,
                            "routes": [{"path": "/books", "methods": ["GET"], "public": True}]}]}
    with GatewayProcess(config) as gw:
        admin = gw.admin_token("admin")
        for name in ("bob", "eve"):
            assert gw.admin("POST", "/api/v1/consumers", token=admin, json_body={"name": name})[0] == 201
        added = _certs(gw, "operator", "add", "bob", "--fingerprint", fingerprint)
        assert added.returncode == 0 and "consumer bob added certificate fingerprint" in added.stdout, added.stderr
        again = _certs(gw, "operator", "add", "bob", "--fingerprint", fingerprint.upper().replace("SHA256", "sha256"))
        assert again.returncode == 0 and "already had" in again.stdout, again.stderr
        taken = _certs(gw, "operator", "add", "eve", "--fingerprint", fingerprint)
        assert taken.returncode == 1 and "identifies the consumer 'bob'" in taken.stderr
        declared = _certs(gw, "operator", "add", "declared", "--san", "x.internal")
        assert declared.returncode == 1 and "declared in" in declared.stderr
        assert _certs(gw, "viewer", "add", "bob", "--san", "y.internal").returncode == 3
        listed = _certs(gw, "viewer", "list", "--json")
        assert [json.loads(line) for line in listed.stdout.splitlines()] == [
            {"consumer": "bob", "kind": "fingerprint", "value": fingerprint, "source": "store"}]
        removed = _certs(gw, "operator", "remove", "bob", "--fingerprint", "sha256:" + ":".join(["ab"] * 32))
        assert removed.returncode == 0 and "removed certificate fingerprint" in removed.stdout, removed.stderr
        assert "bob has no certificates" in _certs(gw, "viewer", "list", "bob").stdout
        trail = gw.admin("GET", "/api/v1/admin-audit?limit=20", token=admin)[1]["items"]
        assert [e["action"] for e in trail if e["action"].startswith("consumer.certificate")] == [
            "consumer.certificate.remove", "consumer.certificate.add"]
