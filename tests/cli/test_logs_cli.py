"""``bastion logs query`` and ``bastion logs tail`` with their defaults, on ./bastion.yaml whose
store is the default SQLite file, against the records of a real ``bastion serve``: every
filter, the table and ``--json``, and tail printing a request the moment it is stored."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.testing import GatewayProcess, raw_request
from tests.cli.test_cli_defaults import BASTION, run
from tests.proxy.scripted import ScriptedUpstream

RUN = uuid.uuid4().hex[:10]


def _get(gw: GatewayProcess, path: str) -> None:
    raw_request("127.0.0.1", gw.port, f"GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path]]:
    """A gateway on ./bastion.yaml (audit on, default store) that answered a 200 and then a
    404, both stored (one worker: its records are stored in order); still running, for tail."""
    folder = tmp_path_factory.mktemp("logs")
    with ScriptedUpstream() as upstream:
        config = {
            "access_log": {"enabled": False},
            "audit": {"enabled": True},
            "services": [{"name": "api", "upstream": upstream.url,
                          "routes": [{"path": f"/{RUN}", "prefix": True, "public": True}]}],
        }
        with GatewayProcess(config, folder=folder) as gw:
            for path in (f"/{RUN}/ok", f"/missing-{RUN}"):
                _get(gw, path)
            deadline = time.monotonic() + 15
            while f"/missing-{RUN}" not in run("logs", "query", "--json", cwd=folder).stdout:
                assert time.monotonic() < deadline, gw.stderr_text()
            yield gw, folder


def _json(folder: Path, *args: str) -> list[dict[str, object]]:
    result = run("logs", "query", "--json", *args, cwd=folder)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_query_with_its_defaults_shows_the_last_hour_as_a_table(served: tuple[GatewayProcess, Path]) -> None:
    """`bastion logs query` alone prints the last hour's records as a table, oldest first:
    the allowed 200 and the 404 the core refused, with their decision and reason."""
    _, folder = served
    result = run("logs", "query", cwd=folder)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["time", "status", "decision", "method", "path", "route", "consumer", "client", "ms",
                                "stage/rule"]
    ok = next(line.split() for line in lines if f"/{RUN}/ok" in line)
    missing = next(line.split() for line in lines if f"/missing-{RUN}" in line)
    assert ok[1:5] == ["200", "allowed", "GET", f"/{RUN}/ok"] and ok[5] == f"api:/{RUN}"
    assert missing[1:3] == ["404", "blocked"] and missing[-1] == "core/route.not_found"
    assert [i for i, line in enumerate(lines) if RUN in line] == [1, 2]  # oldest first
    assert lines[-1] == "2 record(s)"


def test_query_filters(served: tuple[GatewayProcess, Path]) -> None:
    """Each filter selects what it names: status, decision, route, rule, consumer, and a
    time range that ends before the requests finds none."""
    _, folder = served
    paths = lambda *args: [r["path"] for r in _json(folder, *args)]  # noqa: E731
    assert paths() == [f"/{RUN}/ok", f"/missing-{RUN}"]
    assert paths("--status", "404") == paths("--decision", "blocked") == [f"/missing-{RUN}"]
    assert paths("--rule", "route.not_found") == [f"/missing-{RUN}"]
    assert paths("--route", f"api:/{RUN}") == paths("--decision", "allowed") == [f"/{RUN}/ok"]
    assert paths("--consumer", "nobody") == []
    assert paths("--since", "2h", "--until", "1h") == []
    assert paths("--limit", "1") == [f"/missing-{RUN}"]  # the newest


def test_query_json_lines_have_the_audit_fields(served: tuple[GatewayProcess, Path]) -> None:
    """`--json` prints each record as its audit JSON line: host, decision, worker, latency, time."""
    _, folder = served
    (record,) = _json(folder, "--status", "200")
    assert (record["method"], record["host"], record["decision"], record["worker"]) == ("GET", "gw", "allowed", 0)
    assert isinstance(record["latency_ms"], float) and str(record["time"]).endswith("Z")


def test_a_wrong_decision_is_named(served: tuple[GatewayProcess, Path]) -> None:
    """An unknown --decision exits 2 and lists the valid ones."""
    _, folder = served
    result = run("logs", "query", "--decision", "denied", cwd=folder)
    assert result.returncode == 2 and "allowed, monitored, blocked" in result.stderr


def test_tail_with_its_defaults_prints_new_requests(served: tuple[GatewayProcess, Path]) -> None:
    """`bastion logs tail` prints the last records, then a request made after it started, as
    soon as the worker stores it, and runs until stopped."""
    gw, folder = served
    _follow(gw, folder, [BASTION, "logs", "tail"], "fresh", None)


def test_tail_through_the_admin_api(served: tuple[GatewayProcess, Path]) -> None:
    """`bastion logs tail --admin-url` (a viewer token) does the same through the admin API,
    without the store: the last records, then a new request once, still following; a bad
    token exits 3 at once."""
    gw, folder = served
    _follow(gw, folder, [BASTION, "logs", "tail", "--admin-url", gw.admin_url], "remote",
            {**os.environ, "BASTION_ADMIN_TOKEN": gw.admin_token("viewer")})
    refused = subprocess.run([BASTION, "logs", "tail", "--admin-url", gw.admin_url], cwd=folder, capture_output=True,
                             text=True, timeout=60, check=False, env={**os.environ, "BASTION_ADMIN_TOKEN": "bsa_x"})
    assert refused.returncode == 3 and "401" in refused.stderr


def _follow(gw: GatewayProcess, folder: Path, command: list[str], name: str, env: dict[str, str] | None) -> None:
    proc = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=env)
    assert proc.stdout is not None
    seen = b""
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            fresh = f"/{RUN}/{name}"
            asked = False
            deadline = time.monotonic() + 30
            while fresh.encode() not in seen:
                assert time.monotonic() < deadline and proc.poll() is None, seen.decode()
                if not asked and f"/missing-{RUN}".encode() in seen:  # the last records are out
                    _get(gw, fresh)
                    asked = True
                if sel.select(0.2):
                    seen += os.read(proc.stdout.fileno(), 65536)
        assert proc.poll() is None  # still following
        assert seen.count(fresh.encode()) == 1
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=10)  # and close its pipes
