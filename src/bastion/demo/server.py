"""Running the demo API with uvicorn: in the foreground, or in a background thread."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn

from bastion.demo.app import create_app


def _config(host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        # No websockets in the demo; "auto" would import a websockets library if present.
        ws="none",
        timeout_graceful_shutdown=5,
    )


def serve_demo_api(host: str, port: int) -> None:
    """Serve the demo API on ``host:port`` until interrupted (Ctrl-C or SIGTERM)."""
    uvicorn.Server(_config(host, port)).run()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class DemoServer:
    """The demo API served in a background thread, with its own event loop.

    ``port=0`` picks a free port; :attr:`port` and :attr:`url` tell which once started.
    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._server = uvicorn.Server(_config(host, port))
        self._thread = threading.Thread(target=self._run, name="bastion-demo-api", daemon=True)
        self._failure: BaseException | None = None
        self._port = 0

    def _run(self) -> None:
        try:
            self._server.run()
        except BaseException as exc:  # uvicorn reports a failed bind with SystemExit.
            self._failure = exc

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; return once the socket listens. Raise ``RuntimeError`` if it can't."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(
                    f"the demo API could not listen on {self.host}:{self._requested_port}"
                ) from self._failure
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the demo API did not start in time")
            time.sleep(0.01)
        self._port = int(self._server.servers[0].sockets[0].getsockname()[1])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread to end (idempotent)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def port(self) -> int:
        """The port the server listens on (0 before :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:8081``."""
        return f"http://{_url_host(self.host)}:{self._port}"

    def __enter__(self) -> DemoServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
