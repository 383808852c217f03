"""Embedded mode: Bastion's stages as ASGI middleware, in the application's process.

    from bastion.asgi import protect
    app = protect(app, config="bastion.yaml")

or, in Starlette and FastAPI, ``Middleware(BastionMiddleware, config="bastion.yaml")``.
The same configuration schema as the gateway (minus what the ASGI server does: see
``bastion.asgi.config``), the same OpenAPI routes and deny-by-default, the same stages,
problem+json errors and record sinks; metrics from :func:`metrics_app`. See docs/embedded.md.
"""

from bastion.asgi.config import load_embedded
from bastion.asgi.metrics import metrics_app, metrics_registry
from bastion.asgi.middleware import BastionMiddleware, BastionStartError, protect

__all__ = ["BastionMiddleware", "BastionStartError", "load_embedded", "metrics_app", "metrics_registry", "protect"]
