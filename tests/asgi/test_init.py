"""The embedded mode's public API is what docs/embedded.md shows."""

from __future__ import annotations

import bastion.asgi


def test_public_names() -> None:
    """``bastion.asgi`` exports exactly the documented names, and each exists."""
    assert sorted(bastion.asgi.__all__) == [
        "BastionMiddleware",
        "BastionStartError",
        "load_embedded",
        "metrics_app",
        "metrics_registry",
        "protect",
    ]
    for name in bastion.asgi.__all__:
        assert getattr(bastion.asgi, name) is not None
