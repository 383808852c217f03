"""Serving the market app on loopback over HTTPS, for tests (``serve_market``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.tester.marketapp.app import SPEC_PATH, Market, create_app
from tests.tester.vulnapp.server import serve_https

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
    with serve_https(app, "market") as (base_url, cert):
        yield RunningMarket(base_url, SPEC_PATH, cert, app.state.market)
