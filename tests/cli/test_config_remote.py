"""`bastion config export|import` through a real gateway's admin API: the export is the YAML
the API gives (an operator may), an import replaces the file and reloads it (an admin, where
admin.config_writable allows), an operator's import exits 3, and without --admin-url the
command says what it needs (exit 2). The import's progress shows on a terminal (a real pty)
and nowhere else: piped output stays exactly the result line. `bastion summary` reads the
same gateway's traffic summary."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest
import yaml

from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess
from tests.cli.test_cli_defaults import BASTION


def _env(gw: GatewayProcess, role: str) -> dict[str, str]:
    return {**os.environ, "BASTION_ADMIN_URL": gw.admin_url, "BASTION_ADMIN_TOKEN": gw.admin_token(role)}


def _config(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BASTION, "config", *args], capture_output=True, text=True, timeout=60, check=False,
                          env=env, cwd=cwd)


def _on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with standard error on a pseudo-terminal; its exit code and what it wrote there."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=follower, env={**env, "TERM": "xterm"})
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the follower side closed: the process is done writing
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    proc.communicate(timeout=60)
    return proc.returncode, seen.decode(errors="replace")


@pytest.mark.timeout(300)
def test_export_then_import_through_the_admin_api(demo_api: DemoServer, tmp_path: Path) -> None:
    """Export to a file; add a route to the file, import it: the gateway serves the new route; the
    piped import prints only its result; on a terminal it shows what it is doing."""
    config = {"admin": {"config_writable": True},
              "services": [{"name": "books", "upstream": demo_api.url,
                            "routes": [{"path": "/books", "methods": ["GET"], "public": True}]}]}
    with GatewayProcess(config) as gw:
        missing = _config("export", cwd=tmp_path, env={k: v for k, v in os.environ.items()
                                                       if not k.startswith("BASTION_ADMIN")})
        assert missing.returncode == 2 and "give --admin-url" in missing.stderr

        exported = tmp_path / "exported.yaml"
        done = _config("export", "-o", str(exported), env=_env(gw, "operator"))
        assert done.returncode == 0, done.stderr
        assert yaml.safe_load(exported.read_text())["services"][0]["routes"][0]["path"] == "/books"

        # The file itself (an export masks secrets the test harness put in it: not importable as is).
        declared = yaml.safe_load(gw.config_path.read_text())
        declared["services"][0]["routes"].append({"path": "/authors", "methods": ["GET"], "public": True})
        changed = tmp_path / "changed.yaml"
        changed.write_text(yaml.safe_dump(declared, sort_keys=False))
        refused = _config("import", str(changed), env=_env(gw, "operator"))
        assert refused.returncode == 3 and "needs the role admin" in refused.stderr
        imported = _config("import", str(changed), env=_env(gw, "admin"))
        assert imported.returncode == 0, imported.stderr
        assert imported.stderr == "" and imported.stdout.startswith(f"imported {changed} as {gw.config_path}")
        routes = gw.admin("GET", "/api/v1/routes", token=gw.admin_token("admin"))[1]["items"]
        assert "/authors" in [r["path"] for r in routes]

        declared["services"][0]["routes"].append({"path": "/shelves", "methods": ["GET"], "public": True})
        changed.write_text(yaml.safe_dump(declared, sort_keys=False))
        code, terminal = _on_a_terminal([BASTION, "config", "import", str(changed)], _env(gw, "admin"))
        assert code == 0 and "checking, writing and reloading" in terminal, terminal
        code, quiet = _on_a_terminal([BASTION, "config", "import", str(changed), "--json"], _env(gw, "admin"))
        assert code == 0 and "checking" not in quiet, quiet

        # bastion summary: this gateway keeps no audit log, so its counters since start.
        told = subprocess.run([BASTION, "summary", "--json"], capture_output=True, text=True, timeout=60,
                              check=False, env=_env(gw, "viewer"))
        assert told.returncode == 0, told.stderr
        assert json.loads(told.stdout)["source"] == "metrics"
        line = subprocess.run([BASTION, "summary"], capture_output=True, text=True, timeout=60, check=False,
                              env=_env(gw, "viewer"))
        assert line.returncode == 0 and f"{gw.admin_url}, since start:" in line.stdout and "latency p50" in line.stdout
