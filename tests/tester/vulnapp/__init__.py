"""A deliberately vulnerable API, one switch per seeded flaw, to test ``bastion scan`` against.

See FLAWS.md for the catalogue; :func:`serve_vulnapp` runs it on loopback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.tester.vulnapp.app import ALL_FLAWS, SPEC_PATH, create_app

if TYPE_CHECKING:
    from tests.tester.vulnapp.server import VulnApp, serve_vulnapp

__all__ = ["ALL_FLAWS", "SPEC_PATH", "VulnApp", "create_app", "serve_vulnapp"]


def __getattr__(name: str) -> Any:
    # Imported lazily so `python -m tests.tester.vulnapp.server` does not import itself twice.
    if name in ("VulnApp", "serve_vulnapp"):
        from tests.tester.vulnapp import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
