"""Serving the library app on loopback over HTTPS, for tests (``serve_library``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.tester.libraryapp.app import SPEC_PATH, Library, create_app
from tests.tester.vulnapp.server import serve_https

__all__ = ["RunningLibrary", "serve_library"]


@dataclass(frozen=True, slots=True)
class RunningLibrary:
    """A running library app: its URL, document, certificate and live state."""

    base_url: str
    spec_path: Path
    ca_file: Path
    state: Library


@contextmanager
def serve_library(flaws: Iterable[str] = ()) -> Iterator[RunningLibrary]:
    """Serve a fresh library app with ``flaws`` on a free 127.0.0.1 port over HTTPS until exit."""
    app = create_app(flaws)
    with serve_https(app, "library") as (base_url, cert):
        yield RunningLibrary(base_url, SPEC_PATH, cert, app.state.library)
