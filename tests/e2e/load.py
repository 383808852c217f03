"""A small, bounded load generator for tests: keep-alive clients in threads."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter


class Load:
    """``clients`` threads sending GET ``path`` over keep-alive connections until stopped."""

    def __init__(self, port: int, path: str, clients: int = 4, max_seconds: float = 30.0) -> None:
        self.port = port
        self.path = path
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._deadline = time.monotonic() + max_seconds
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                resp.read()
                with self._lock:
                    self.statuses[resp.status] += 1
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.close()

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())
