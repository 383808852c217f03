"""Fixtures shared by the test packages: the demo API as a real upstream on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bastion.demo.server import DemoServer


@pytest.fixture(scope="module")
def demo_api() -> Iterator[DemoServer]:
    """The demo bookstore API, served by uvicorn on a free loopback port."""
    server = DemoServer("127.0.0.1", 0)
    server.start()
    try:
        yield server
    finally:
        server.stop()
