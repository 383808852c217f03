"""A real uvicorn on a free port, in a thread of the test process, serving an ASGI app."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from bastion.testing import free_port


class Served:
    """``with Served(app) as url:`` -- uvicorn serves ``app`` on 127.0.0.1 until the block ends."""

    def __init__(self, app: Any, **options: Any) -> None:
        self.port = free_port()
        options.setdefault("lifespan", "on")
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="uvicorn", daemon=True)
        #: uvicorn's exit code when it exited on its own (a failed lifespan startup: 3).
        self.exit_code: int | str | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            self.server.run()
        except SystemExit as exc:  # uvicorn exits the (thread's) process when startup fails
            self.exit_code = exc.code

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"uvicorn stopped before it served (exit code {self.exit_code})")
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 20 s")
            time.sleep(0.02)
        return self.url

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.should_exit = True
        self.thread.join(20)
