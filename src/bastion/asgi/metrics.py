"""Prometheus metrics of the embedded mode: this process's counters, read live.

The same metrics as the gateway's admin port (``bastion_requests_total``,
``bastion_blocked_total``...), for the one process the application runs in. Mount
:func:`metrics_app` beside the protected application (outside Bastion's routes, so that
deny-by-default does not refuse it), or serve :func:`metrics_registry` on a port of its
own with ``prometheus_client.start_http_server(port, addr="127.0.0.1", registry=...)``.
"""

from __future__ import annotations

from typing import cast

from prometheus_client import CollectorRegistry, make_asgi_app

from bastion.asgi.types import ASGIApp
from bastion.control.metrics import ProcessCollector


def metrics_registry() -> CollectorRegistry:
    """A registry holding this process's Bastion metrics (and nothing else)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessCollector())
    return registry


def metrics_app() -> ASGIApp:
    """An ASGI application that answers with this process's metrics in Prometheus' format."""
    return cast(ASGIApp, make_asgi_app(registry=metrics_registry()))


__all__ = ["metrics_app", "metrics_registry"]
