"""Serving the market app on loopback over HTTPS, for tests (``serve_market``)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from bastion.certs import generate_self_signed
from tests.tester.marketapp.app import SPEC_PATH, Market, create_app
from tests.tester.vulnapp.server import HOST, _Thread

__all__ = ["RunningMarket", "serve_market"]


@dataclass(frozen=True, slots=True)
class RunningMarket:
    """A running market app: its URL, document, certificate and live state."""

    base_url: str
    spec_path: Path
    ca_file: Path
    state: Market


@contextmanager
def serve_market(flaws: Iterable[str] = ()) -> Iterator[RunningMarket]:
    """Serve a fresh market app with ``flaws`` on a free 127.0.0.1 port over HTTPS until exit."""
    app = create_app(flaws)
    with tempfile.TemporaryDirectory(prefix="market-tls-") as directory:
        cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
        generate_self_signed(cert, key, hosts=(HOST, "localhost"), days=2)
        config = uvicorn.Config(app, host=HOST, port=0, log_level="critical", access_log=False, lifespan="off",
                                ws="none", server_header=False, timeout_graceful_shutdown=2,
                                ssl_certfile=str(cert), ssl_keyfile=str(key))
        runner = _Thread(uvicorn.Server(config))
        port = runner.start(10.0)
        try:
            yield RunningMarket(f"https://{HOST}:{port}", SPEC_PATH, cert, app.state.market)
        finally:
            runner.stop()
