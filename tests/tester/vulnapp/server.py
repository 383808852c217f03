"""Serving the vulnerable app on loopback: ``serve_vulnapp`` for tests, ``python -m`` by hand.

    with serve_vulnapp({"bola", "sqli"}) as app:
        httpx.get(f"{app.base_url}/products")        # http://127.0.0.1:PORT/v2/products

    python -m tests.tester.vulnapp.server --flaws bola,sqli --port 8765 [--tls]

Each ``serve_vulnapp`` builds a fresh app (fresh data and rate-limit counters) and serves it
with uvicorn in a background thread on 127.0.0.1 only; with ``tls=True`` over HTTPS with a
new self-signed certificate (trust it with ``ca_file``).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from bastion.certs import generate_self_signed
from tests.tester.vulnapp.app import ALL_FLAWS, SPEC_PATH, create_app

__all__ = ["ALL_FLAWS", "VulnApp", "main", "serve_vulnapp"]

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class VulnApp:
    """A running vulnapp: where it listens and what it runs with."""

    #: The API's base URL, the spec's server path included: ``http://127.0.0.1:PORT/v2``.
    base_url: str
    #: Scheme, host and port: ``http://127.0.0.1:PORT``.
    origin: str
    #: The OpenAPI document the app implements.
    spec_path: Path
    #: The certificate to trust when served with ``tls=True`` (None over plain HTTP).
    ca_file: Path | None
    port: int
    flaws: frozenset[str]


class _Thread:
    def __init__(self, server: uvicorn.Server) -> None:
        self.server = server
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="vulnapp", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # uvicorn reports a failed bind with SystemExit
            self.failure = exc

    def start(self, timeout: float) -> int:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the vulnapp could not start listening") from self.failure
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the vulnapp did not start in time")
            time.sleep(0.01)
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(10)


@contextmanager
def serve_https(app: object, name: str) -> Iterator[tuple[str, Path]]:
    """Serve an ASGI ``app`` on a free 127.0.0.1 port over HTTPS (a throwaway self-signed
    certificate) until exit: its base URL and the certificate to trust."""
    with tempfile.TemporaryDirectory(prefix=f"{name}-tls-") as directory:
        cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
        generate_self_signed(cert, key, hosts=(HOST, "localhost"), days=2)
        config = uvicorn.Config(app, host=HOST, port=0, log_level="critical", access_log=False, lifespan="off",
                                ws="none", server_header=False, timeout_graceful_shutdown=2,
                                ssl_certfile=str(cert), ssl_keyfile=str(key))
        runner = _Thread(uvicorn.Server(config))
        port = runner.start(10.0)
        try:
            yield f"https://{HOST}:{port}", cert
        finally:
            runner.stop()


@contextmanager
def serve_vulnapp(
    flaws: Iterable[str] = (), *, tls: bool = False, port: int | None = None, start_timeout: float = 10.0
) -> Iterator[VulnApp]:
    """Serve a fresh vulnapp with ``flaws`` on 127.0.0.1 (a free port unless ``port``) until exit.

    Raises ``ValueError`` for an unknown flaw name, ``RuntimeError`` if it cannot listen.
    """
    chosen = frozenset(flaws)
    app = create_app(chosen)
    with ExitStack() as stack:
        cert_file: Path | None = None
        key_file: Path | None = None
        if tls:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vulnapp-tls-")))
            cert_file, key_file = directory / "cert.pem", directory / "key.pem"
            generate_self_signed(cert_file, key_file, hosts=(HOST, "localhost"), days=2)
        config = uvicorn.Config(
            app,
            host=HOST,
            port=port or 0,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            server_header=False,
            timeout_graceful_shutdown=2,
            ssl_certfile=str(cert_file) if cert_file else None,
            ssl_keyfile=str(key_file) if key_file else None,
        )
        runner = _Thread(uvicorn.Server(config))
        bound = runner.start(start_timeout)
        stack.callback(runner.stop)
        origin = f"{'https' if tls else 'http'}://{HOST}:{bound}"
        yield VulnApp(
            base_url=f"{origin}/v2",
            origin=origin,
            spec_path=SPEC_PATH,
            ca_file=cert_file,
            port=bound,
            flaws=chosen,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the vulnapp in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m tests.tester.vulnapp.server", description=__doc__.splitlines()[0])
    parser.add_argument("--flaws", default="", help="comma-separated flaw names, or 'all' (default: none)")
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765; 0 picks one)")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS with a fresh self-signed certificate")
    args = parser.parse_args(argv)
    flaws = ALL_FLAWS if args.flaws == "all" else {name.strip() for name in args.flaws.split(",") if name.strip()}
    try:
        with serve_vulnapp(flaws, tls=args.tls, port=args.port) as running:
            print(f"vulnapp listening on {running.base_url} with flaws: {', '.join(sorted(flaws)) or 'none'}")
            print(f"OpenAPI document: {running.spec_path}")
            if running.ca_file:
                print(f"CA file: {running.ca_file}")
            print("users: alice/alice-pass-8f3k, bob/bob-pass-2m9q (user), root/root-pass-7x1z (admin); Ctrl-C stops")
            threading.Event().wait()
    except ValueError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
