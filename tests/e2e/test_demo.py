"""`bastion demo`: the demo API and the gateway start, and the printed examples behave as printed."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import httpx

from bastion.testing import free_port
from tests.control.dashboard_client import post_login


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def test_demo_command_prints_working_examples() -> None:
    """The five printed curl examples give 200 (a public operation), 401 (a private one without
    a credential: refused, never forwarded), 404 (undeclared), 400 (encoded slash) and 403 (an
    SQL injection in a search the OpenAPI document accepts: detection runs in block mode); the
    sixth, with the demo consumer's API key the demo made, gets the private operation (200),
    and the same key with one character changed is refused (401). The printed dashboard URL
    and one-time password start the dashboard's sign-in (a new password is asked next)."""
    port, admin, api = free_port(), free_port(), free_port()
    cmd = [
        sys.executable,
        "-m",
        "bastion",
        "demo",
        "--port",
        str(port),
        "--admin-port",
        str(admin),
        "--api-port",
        str(api),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        banner = []
        for line in proc.stderr:  # the banner is printed before the gateway starts
            banner.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(banner)
        assert f"gateway:                          http://127.0.0.1:{port}" in text
        examples = re.findall(r"curl -i '?(\S+?)'?\s+# (\w+)", text)
        assert [kind for _, kind in examples] == ["allowed", "blocked", "blocked", "blocked", "blocked"]
        deadline = time.monotonic() + 20
        while True:
            try:
                if status_of(f"http://127.0.0.1:{admin}/ready") == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the demo did not become ready"
            time.sleep(0.1)
        assert [status_of(url) for url, _ in examples] == [200, 401, 404, 400, 403]
        keyed = re.search(r"curl -i -H 'X-API-Key: (bst_\S+)' (\S+)", text)
        assert keyed is not None, text
        key, url = keyed.groups()
        assert status_of(url, {"X-API-Key": key}) == 200
        typo = key[:10] + ("A" if key[10] != "A" else "B") + key[11:]
        assert status_of(url, {"X-API-Key": typo}) == 401
        dashboard = re.search(r"dashboard: +(\S+)\n +sign in as (\S+) with the one-time password (\S+)", text)
        assert dashboard is not None, text
        ui, name, password = dashboard.groups()
        assert ui == f"http://127.0.0.1:{admin}/ui/"
        with httpx.Client(base_url=f"http://127.0.0.1:{admin}", timeout=10) as browser:
            answer = post_login(browser, name, password)
            assert answer.status_code == 303 and answer.headers["location"] == "/ui/login/step"
            assert "Choose a new password" in browser.get("/ui/login/step").text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
