"""A local webhook receiver for the detector tests: a real HTTP server on a free port of
127.0.0.1 that keeps every POST (headers and body) and answers 204 (or, first, a few 500s)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Received:
    def __init__(self, headers: dict[str, str], body: bytes) -> None:
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookServer:
    """Collects alerts; ``fail_first`` POSTs are answered 500 (to exercise retries)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[Received] = []
        self.attempts = 0
        self.fail_first = fail_first
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with owner._lock:
                    owner.attempts += 1
                    failing = owner.attempts <= owner.fail_first
                    if not failing:
                        owner.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(500 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/bastion"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The first ``count`` alerts received, waiting up to ``timeout`` seconds for them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        with self._lock:
            return list(self.received)
