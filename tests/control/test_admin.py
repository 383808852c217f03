"""The admin API: health, readiness, version, metrics and reload."""

from __future__ import annotations

import http.client
import re

from bastion import __version__
from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess


def test_admin_endpoints(demo_api: DemoServer) -> None:
    """/health, /ready, /version answer; /metrics counts requests by route and status; GET /reload is 405."""
    cfg = {
        "services": [
            {
                "name": "books",
                "upstream": demo_api.url,
                "routes": [{"path": "/books", "methods": ["GET"], "operation_id": "listBooks", "public": True}],
            }
        ]
    }
    with GatewayProcess(cfg, workers=2) as gw:
        assert gw.admin("GET", "/health") == (200, {"status": "ok", "workers": 2, "workers_wanted": 2})
        assert gw.admin("GET", "/ready") == (200, {"ready": True})
        assert gw.admin("GET", "/version") == (200, {"name": "bastion", "version": __version__})
        assert gw.admin("GET", "/reload")[0] == 405
        for path in ["/books"] * 5 + ["/nope"] * 3:
            conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
        import time

        deadline = time.monotonic() + 5
        text = ""
        while time.monotonic() < deadline:
            status, text = gw.admin("GET", "/metrics")
            assert status == 200
            if 'bastion_requests_total{code="404"' in text and 'route="listBooks"' in text:
                m = re.search(r'bastion_requests_total\{code="200",route="listBooks",service="books"\} (\d+)', text)
                if m and int(m.group(1)) == 5:
                    break
            time.sleep(0.2)
        assert re.search(r'bastion_requests_total\{code="200",route="listBooks",service="books"\} 5\.0', text), text
        assert re.search(r'bastion_requests_total\{code="404",route="-",service="-"\} 3\.0', text)
        assert 'bastion_blocked_total{action="block",reason="route.not_found",stage="core"} 3.0' in text
        assert "bastion_request_duration_seconds_bucket" in text
        # The five forwarded requests, timed to the upstream's answer; the 404s never left.
        assert 'bastion_upstream_duration_seconds_count{service="books"} 5.0' in text, text
        assert 'bastion_upstream_duration_seconds_bucket{le="+Inf",service="books"} 5.0' in text
