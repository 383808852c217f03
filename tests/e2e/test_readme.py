"""The README's promises: the two quick-start commands, and its configuration examples."""

from __future__ import annotations

import http.client
import re
import shutil
from pathlib import Path

from bastion.config import load_config
from bastion.demo.app import openapi_path
from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess, free_port

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README, flags=re.S)


def quick_start() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_has_two_commands_and_ci_runs_the_second() -> None:
    """The quick start is exactly two commands, both installing the locked versions into a new
    venv; .ci/run runs the test command verbatim, from no venv and without pip's cache."""
    commands = quick_start()
    assert len(commands) == 2
    assert commands[0].endswith("bastion demo")
    assert commands[1].endswith("pytest")
    for command in commands:
        assert command.startswith("python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt ")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci
    before = ci[: ci.index(commands[1])]
    assert "export PIP_NO_CACHE_DIR=1" in before and "rm -rf .venv" in before


def test_minimal_config_works_verbatim(tmp_path: Path) -> None:
    """The README's minimal bastion.yaml, unchanged, serves the demo API's OpenAPI routes."""
    minimal = yaml_blocks()[0]
    assert "openapi: books.openapi.yaml" in minimal
    # Its ports are the demo's; free ones take their place, so the test never needs 8080.
    port, admin_port, api_port = free_port(), free_port(), free_port()
    ports = {"port: 8080": f"port: {port}", "port: 9090": f"port: {admin_port}", ":9001": f":{api_port}"}
    for fixed, free in ports.items():
        assert minimal.count(fixed) == 1, fixed
        minimal = minimal.replace(fixed, free)
    shutil.copy(openapi_path(), tmp_path / "books.openapi.yaml")
    with DemoServer("127.0.0.1", api_port), GatewayProcess(minimal, folder=tmp_path) as gw:
        assert (gw.port, gw.admin_port) == (port, admin_port)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/books?limit=1")
        resp = conn.getresponse()
        assert resp.status == 200 and b'"items"' in resp.read()
        conn.request("GET", "/not-in-the-spec")
        resp = conn.getresponse()
        assert resp.status == 404 and resp.getheader("content-type") == "application/problem+json"
        resp.read()
        conn.close()


def test_full_example_config_is_valid(tmp_path: Path) -> None:
    """The README's fuller example passes validation once its files exist."""
    full = yaml_blocks()[1]
    (tmp_path / "certs").mkdir()
    for name in ("gateway.pem", "gateway.key"):
        (tmp_path / "certs" / name).write_text("placeholder")
    shutil.copy(openapi_path(), tmp_path / "books.openapi.yaml")
    path = tmp_path / "bastion.yaml"
    path.write_text(full)
    loaded = load_config(path)
    assert [s.name for s in loaded.config.services] == ["books", "legacy"]
    assert loaded.config.services[0].upstream.balance == "least_connections"


def test_installed_data_plane_is_compiled() -> None:
    """The tests exercise what users run: the hot modules compiled by mypyc (unless opted out)."""
    import os

    import pytest

    import bastion.proxy.server
    import bastion.routing.target

    if os.environ.get("BASTION_PURE_PYTHON"):
        pytest.skip("installed with BASTION_PURE_PYTHON=1")
    for module in (bastion.proxy.server, bastion.routing.target):
        assert str(module.__file__).endswith(".so"), f"{module.__name__} is not compiled: {module.__file__}"
