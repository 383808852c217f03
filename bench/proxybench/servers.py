"""The servers under test: the nginx upstream, nginx as a proxy, and Bastion.

Each nginx is its own instance (``-p`` prefix, ``-c`` config, ``-e`` error log, all in
the run's temporary folder, ``daemon off``), never the system's; each Bastion runs from
a config file written next to them. Everything binds 127.0.0.1 on ports picked at start.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxybench import documents
from proxybench.mix import MixRequest, send
from proxybench.procs import ManagedProcess, ServerFailed, free_port, http_get

#: What the upstream returns to every request: a small JSON document of 109 bytes,
#: the size the throughput figures in issue 2 were measured with.
UPSTREAM_BODY = (
    '{"id":4242,"title":"The Dispossessed","author":"Ursula K. Le Guin",'
    '"year":1974,"price":19.99,"in_stock":true}'
)
READY_TIMEOUT = 30.0


def _nginx_common(folder: Path, name: str, workers: int) -> str:
    """The part of an nginx config that keeps an instance inside ``folder``."""
    # As root, nginx would switch its workers to "nobody"; keep them as the current user.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = folder / f"{name}-temp"
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (temp / sub).mkdir(parents=True, exist_ok=True)
    return (
        f"{user}"
        f"worker_processes {workers};\n"
        "daemon off;\n"
        f"pid {folder / f'{name}.pid'};\n"
        f"error_log {folder / f'{name}-error.log'} warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "  access_log off;\n"
        f"  client_body_temp_path {temp / 'client_body'};\n"
        f"  proxy_temp_path {temp / 'proxy'};\n"
        f"  fastcgi_temp_path {temp / 'fastcgi'};\n"
        f"  uwsgi_temp_path {temp / 'uwsgi'};\n"
        f"  scgi_temp_path {temp / 'scgi'};\n"
        # wrk keeps its connections for the whole run; nginx's default would close
        # each one after 1000 requests and measure reconnects instead.
        "  keepalive_requests 100000000;\n"
        "  keepalive_timeout 120s;\n"
    )


def upstream_nginx_config(folder: Path, port: int, workers: int,
                          files: Mapping[str, Path] | None = None) -> str:
    """nginx answering every request with :data:`UPSTREAM_BODY`: any method (``return``
    runs before the static module, which would refuse a POST with 405), any path; a
    request body (the mix's 1 KB order) is read and discarded. Besides, each path of
    ``files`` (exactly) answers that file, and ``/leak`` :data:`documents.LEAK_BODY`."""
    for body in (UPSTREAM_BODY, documents.LEAK_BODY):
        if "'" in body or "$" in body:
            raise ValueError("an upstream body must not contain ' or $ (nginx string syntax)")
    served = "".join(
        f"    location = {path} {{ default_type application/json; alias {file}; }}\n"
        for path, file in (files or {}).items()
    )
    return _nginx_common(folder, "upstream", workers) + (
        f"  server {{\n"
        f"    listen 127.0.0.1:{port};\n"
        f"    location / {{\n"
        f"      default_type application/json;\n"
        f"      return 200 '{UPSTREAM_BODY}';\n"
        f"    }}\n"
        f"    location = {documents.LEAK_PATH} {{\n"
        f"      default_type application/json;\n"
        f"      return 200 '{documents.LEAK_BODY}';\n"
        f"    }}\n"
        f"{served}"
        f"  }}\n"
        f"}}\n"
    )


def proxy_nginx_config(folder: Path, port: int, upstream_port: int, workers: int) -> str:
    """nginx as a plain reverse proxy with a keep-alive pool to the upstream."""
    return _nginx_common(folder, "nginx-proxy", workers) + (
        f"  upstream bench_upstream {{\n"
        f"    server 127.0.0.1:{upstream_port};\n"
        f"    keepalive 64;\n"
        f"    keepalive_requests 100000000;\n"
        f"  }}\n"
        f"  server {{\n"
        f"    listen 127.0.0.1:{port};\n"
        f"    location / {{\n"
        f"      proxy_pass http://bench_upstream;\n"
        f"      proxy_http_version 1.1;\n"
        f'      proxy_set_header Connection "";\n'
        f"    }}\n"
        f"  }}\n"
        f"}}\n"
    )


def bastion_config(
    *,
    port: int,
    admin_port: int,
    upstream_port: int,
    access_log: Path | None,
    policies: Mapping[str, Any] | None,
    overrides: Mapping[str, Any],
    openapi: Path | None = None,
) -> dict[str, Any]:
    """A ``bastion.yaml`` (as data) with one service in front of the upstream: a catch-all
    public route, or, given ``openapi``, exactly the operations of that document."""
    service: dict[str, Any] = {"name": "bench", "upstream": f"http://127.0.0.1:{upstream_port}"}
    if openapi is None:
        service["routes"] = [{"path": "/", "prefix": True, "public": True}]
    else:
        service["openapi"] = str(openapi)
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "admin": {"host": "127.0.0.1", "port": admin_port},
        "access_log": {"path": str(access_log)} if access_log else {"enabled": False},
        "services": [service],
    }
    if policies is not None:
        config["policies"] = dict(policies)
    return deep_merge(config, overrides)


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it; nested mappings merge, anything else replaces."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class RunningServer:
    """A started server: where to send load, and which process tree to account CPU to."""

    name: str
    port: int
    process: ManagedProcess
    #: nginx's error log (where ModSecurity writes why it refused a request).
    error_log: Path | None = None
    #: Headers every request to it must carry, known only once it was set up (a credential).
    headers: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url_for(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def check_proxies_upstream(self, requests: Sequence[MixRequest] = (), path: str = "/",
                               expected: bytes = UPSTREAM_BODY.encode()) -> None:
        """Fail unless each request (``GET path`` when none are given) sent through this server
        returns the upstream's 200 and body (``expected``): a refusal would be measured as a
        fast answer."""
        if not requests:
            answers = [(f"GET {path}", *http_get(self.port, path, headers=self.headers))]
        else:
            answers = [(req.label, *send(self.port, req, extra=self.headers)) for req in requests]
        for label, status, body in answers:
            if status != 200 or body != expected:
                raise ServerFailed(
                    f"{self.name}: {label} returned {status} with {body[:300]!r}, not the upstream's "
                    f"200 JSON body; the figures would be meaningless{self._error_log_tail()}"
                )

    def _error_log_tail(self, lines: int = 5) -> str:
        if self.error_log is None or not self.error_log.exists():
            return ""
        tail = self.error_log.read_text(errors="replace").splitlines()[-lines:]
        if not tail:
            return ""
        return f"\nlast lines of {self.error_log.name}:\n" + "\n".join(tail)


def _launch(stack: contextlib.ExitStack, process: ManagedProcess) -> None:
    """Start a process with its stop already registered, so an interrupt at any point
    (even while it is still starting) cannot leave it running."""
    stack.callback(process.stop)
    process.start()


def _start_nginx(
    stack: contextlib.ExitStack, name: str, folder: Path, config: str, port: int
) -> RunningServer:
    conf = folder / f"{name}.conf"
    conf.write_text(config)
    error_log = folder / f"{name}-error.log"
    process = ManagedProcess(
        name, ["nginx", "-p", str(folder), "-c", str(conf), "-e", str(error_log)], folder / f"{name}.out",
    )
    _launch(stack, process)
    server = RunningServer(name, port, process, error_log)
    process.wait_until(lambda: http_get(port)[0] == 200, READY_TIMEOUT, f"an answer on port {port}")
    return server


def start_upstream(stack: contextlib.ExitStack, folder: Path, workers: int) -> RunningServer:
    """Start the upstream nginx, with the JSON documents written into ``folder`` first;
    ``stack`` stops it."""
    port = free_port()
    files = documents.write_documents(folder)
    return _start_nginx(stack, "upstream", folder,
                        upstream_nginx_config(folder, port, workers, files), port)


def start_nginx_proxy(
    stack: contextlib.ExitStack, name: str, folder: Path, upstream_port: int, workers: int
) -> RunningServer:
    """Start nginx as a reverse proxy to the upstream; ``stack`` stops it."""
    port = free_port()
    return _start_nginx(stack, name, folder,
                        proxy_nginx_config(folder, port, upstream_port, workers), port)


def start_bastion(
    stack: contextlib.ExitStack,
    name: str,
    folder: Path,
    *,
    bastion_bin: Path,
    upstream_port: int,
    workers: int,
    access_log: bool,
    policies: Mapping[str, Any] | None,
    overrides: Mapping[str, Any],
    openapi: Path | None = None,
    api_key: bool = False,
) -> RunningServer:
    """Start ``bastion serve`` with a generated config; ``stack`` stops it. With ``api_key``,
    the catch-all route requires authentication, a consumer ``bench`` gets an API key made by
    ``bastion keys create`` in the store beside the config, and the server's ``headers``
    carry it (as a bearer token: what a hand-written private route takes)."""
    port, admin_port = free_port(), free_port()
    config = bastion_config(
        port=port, admin_port=admin_port, upstream_port=upstream_port,
        access_log=folder / f"{name}-access.log" if access_log else None,
        policies=policies, overrides=overrides, openapi=openapi,
    )
    headers: tuple[str, ...] = ()
    if api_key:
        config["consumers"] = [{"name": "bench", "roles": ["user"]}]
        config["store"] = {"url": f"sqlite:///{folder / (name + '.db')}"}
        for route in config["services"][0].get("routes", []):
            route["public"] = False
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    if api_key:
        made = subprocess.run([str(bastion_bin), "keys", "create", "bench", "-c", str(path)],
                              capture_output=True, text=True, timeout=60, check=True)
        headers = (f"Authorization: Bearer {made.stdout.strip().splitlines()[-1]}",)
    process = ManagedProcess(
        name,
        [str(bastion_bin), "serve", "-c", str(path), "--workers", str(workers),
         "--log-level", "warning"],
        folder / f"{name}.out",
    )
    _launch(stack, process)
    process.wait_until(lambda: http_get(admin_port, "/ready")[0] == 200, READY_TIMEOUT,
                       "GET /ready = 200 on the admin port")
    if api_key and http_get(port)[0] != 401:
        raise ServerFailed(f"{name}: GET / without the API key was not refused with 401: authentication is not on")
    return RunningServer(name, port, process, headers=headers)
