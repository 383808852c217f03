"""Serving CarePoint on loopback over HTTPS: ``serve_clinic`` for tests, ``python -m`` by hand.

    python -m tests.tester.clinicapp.server            # the vulnerable build (every flaw)
    python -m tests.tester.clinicapp.server --secure   # the secure twin

By hand it prints its base URL and the certificate to trust, and serves until interrupted.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.tester.clinicapp.app import ALL_FLAWS, SPEC_PATH, Clinic, create_app
from tests.tester.vulnapp.server import serve_https

__all__ = ["RunningClinic", "serve_clinic"]


@dataclass(frozen=True, slots=True)
class RunningClinic:
    """A running CarePoint app: its URL (scheme, host and port), document, certificate and live state."""

    base_url: str
    spec_path: Path
    ca_file: Path
    state: Clinic


@contextmanager
def serve_clinic(flaws: Iterable[str] = ()) -> Iterator[RunningClinic]:
    """Serve a fresh CarePoint with ``flaws`` on a free 127.0.0.1 port over HTTPS until exit."""
    app = create_app(flaws)
    with serve_https(app, "clinic") as (base_url, cert):
        yield RunningClinic(base_url, SPEC_PATH, cert, app.state.clinic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secure", action="store_true", help="serve the secure twin (no flaw)")
    arguments = parser.parse_args()
    with serve_clinic(() if arguments.secure else ALL_FLAWS) as running:
        print(f"{running.base_url} ca={running.ca_file} spec={running.spec_path}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
