"""nginx + ModSecurity 3 (the Debian module) + OWASP CRS, as a proxy to the benchmark upstream.

Shared by the detection comparison (``bench/detection/compare.py``, PL1 and PL2) and the
proxy benchmark's ``nginx-modsec-pl1`` scenario (``bench/run.py --mix``). Like every nginx
of the benchmarks it is its own instance in the run's folder, on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.client
from collections.abc import Sequence
from pathlib import Path

from proxybench.procs import LOOPBACK, ManagedProcess, free_port
from proxybench.servers import READY_TIMEOUT, RunningServer, _nginx_common

MODSEC_MODULE = Path("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so")
CRS_SETUP = Path("/etc/modsecurity/crs/crs-setup.conf")
CRS_RULES = Path("/usr/share/modsecurity-crs/rules")
#: Headers of the readiness GET: a client that names itself and the API's host (the CRS
#: scores a missing User-Agent and a numeric Host as anomalies).
READY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Host", "api.example.com"), ("User-Agent", "bench-client/1.0"), ("Accept", "application/json"),
)
INSTALL_HINT = "apt-get install libnginx-mod-http-modsecurity modsecurity-crs"


def missing_files() -> list[Path]:
    """The module and CRS files the Debian packages install that are not there."""
    return [p for p in (MODSEC_MODULE, CRS_SETUP, CRS_RULES) if not p.exists()]


def modsecurity_main_conf(paranoia: int) -> str:
    """The ModSecurity main configuration: engine on, bodies parsed, CRS at ``paranoia``.

    Only the settings the benchmark needs are written here; the CRS setup and rules are
    included from where the Debian package installs them.
    """
    return (
        "SecRuleEngine On\n"
        "SecRequestBodyAccess On\n"
        "SecRequestBodyLimit 13107200\n"
        "SecRequestBodyNoFilesLimit 131072\n"
        "SecRequestBodyLimitAction Reject\n"
        "SecResponseBodyAccess Off\n"
        "SecAuditEngine Off\n"
        "SecArgumentSeparator &\n"
        "SecCookieFormat 0\n"
        # Parse JSON and XML bodies into ARGS, as the CRS expects.
        'SecRule REQUEST_HEADERS:Content-Type "@rx (?i)^application/(?:[a-z.+-]+\\+)?json" '
        '"id:1000001,phase:1,t:none,pass,nolog,ctl:requestBodyProcessor=JSON"\n'
        'SecRule REQUEST_HEADERS:Content-Type "@rx (?i)^(?:application|text)/(?:[a-z.+-]+\\+)?xml" '
        '"id:1000002,phase:1,t:none,pass,nolog,ctl:requestBodyProcessor=XML"\n'
        # The paranoia level, set before the CRS initialisation reads it (its default is 1).
        f'SecAction "id:1000003,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level={paranoia}"\n'
        f"Include {CRS_SETUP}\n"
        f"Include {CRS_RULES}/*.conf\n"
    )


def modsecurity_nginx_config(
    folder: Path, name: str, port: int, upstream_port: int, workers: int, rules_file: Path
) -> str:
    """nginx with ModSecurity as a reverse proxy to the upstream (its own instance), with the
    same keep-alive pool as the plain ``nginx`` scenario's."""
    common = _nginx_common(folder, name, workers)
    return (
        f"load_module {MODSEC_MODULE};\n"
        + common
        + (
            f"  upstream bench_upstream {{\n"
            f"    server 127.0.0.1:{upstream_port};\n"
            f"    keepalive 64;\n"
            f"    keepalive_requests 100000000;\n"
            f"  }}\n"
            f"  server {{\n"
            f"    listen 127.0.0.1:{port};\n"
            f"    client_max_body_size 16m;\n"
            f"    modsecurity on;\n"
            f"    modsecurity_rules_file {rules_file};\n"
            f"    location / {{\n"
            f"      proxy_pass http://bench_upstream;\n"
            f"      proxy_http_version 1.1;\n"
            f'      proxy_set_header Connection "";\n'
            f"    }}\n"
            f"  }}\n"
            f"}}\n"
        )
    )


def start_modsecurity(
    stack: contextlib.ExitStack,
    folder: Path,
    paranoia: int,
    upstream_port: int,
    workers: int,
    name: str | None = None,
) -> RunningServer:
    """Start nginx + ModSecurity + CRS at ``paranoia``; ``stack`` stops it."""
    name = name or f"modsec-pl{paranoia}"
    rules = folder / f"{name}-main.conf"
    rules.write_text(modsecurity_main_conf(paranoia))
    port = free_port()
    conf = folder / f"{name}.conf"
    conf.write_text(modsecurity_nginx_config(folder, name, port, upstream_port, workers, rules))
    error_log = folder / f"{name}-error.log"
    process = ManagedProcess(
        name, ["nginx", "-p", str(folder), "-c", str(conf), "-e", str(error_log)], folder / f"{name}.out",
    )
    stack.callback(process.stop)
    process.start()
    # Ready once it answers at all: at PL2 the CRS refuses the bare readiness GET itself.
    process.wait_until(lambda: get_status(port, READY_HEADERS) in (200, 403), READY_TIMEOUT,
                       f"an answer on port {port}")
    return RunningServer(name, port, process, error_log)


def get_status(port: int, headers: Sequence[tuple[str, str]]) -> int:
    """The status of one ``GET /`` with ``headers`` on a fresh connection."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=2.0)
    try:
        conn.request("GET", "/", headers=dict(headers))
        return conn.getresponse().status
    finally:
        conn.close()
