"""The ``cors`` stage's hooks: preflights answered at the head, CORS headers on the way out.

A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) carries no
credentials, so the stage is first in ``ORDER`` and answers it before authentication,
without the upstream: ``204`` with the route's CORS headers when the origin, method and
headers are allowed, ``403`` problem+json without any CORS header otherwise. On every other
response of the route (Bastion's own refusals included, so a page can read its ``401``) an
allowed origin gets ``Access-Control-Allow-Origin`` and the rest; a disallowed one gets no
CORS header at all. The upstream's own ``Access-Control-*`` headers are dropped: the
gateway's policy is the only one.
"""

from __future__ import annotations

from bastion.pipeline.stage import HeadStage, ResponseStage, RouteInfo
from bastion.stages.cors.config import CorsConfig
from bastion.stages.cors.origins import Origins
from bastion.types import Block, Decision, Exchange, HeaderList, Response

_VARY = ("vary", "origin")
_PREFLIGHT_VARY = ("vary", "origin, access-control-request-method, access-control-request-headers")


class CorsStage(HeadStage, ResponseStage):
    """Cross-origin resource sharing for one route."""

    #: Its head hook answers preflights: the proxy routes an ``OPTIONS`` preflight to the
    #: route of the method it asks for, even where that route does not list OPTIONS.
    answers_preflight = True

    def __init__(self, config: CorsConfig, methods: frozenset[str]) -> None:
        super().__init__("cors", config)
        self.origins = Origins(config.allow_origins)
        self.credentials = config.allow_credentials
        allowed = config.allow_methods or sorted(methods - {"OPTIONS"})
        self.methods = frozenset(allowed)
        self.any_method = "*" in self.methods
        self.headers = frozenset(config.allow_headers)
        self.any_header = "*" in self.headers
        # The same answer for every allowed origin but its own name: built once.
        self._methods_value = ", ".join(allowed)
        self._max_age = str(config.max_age)
        self._wildcard = self.origins.any and not self.credentials
        extra: HeaderList = []
        if config.allow_credentials:
            extra.append(("access-control-allow-credentials", "true"))
        self._actual_extra = list(extra)
        if config.expose_headers:
            self._actual_extra.append(("access-control-expose-headers", ", ".join(config.expose_headers)))
        self._preflight_extra = extra

    @classmethod
    def from_config(cls, config: CorsConfig, route: RouteInfo) -> CorsStage:
        return cls(config, route.methods)

    # -- the request head: preflights ------------------------------------------------------
    def on_request_head(self, exchange: Exchange) -> Block | Response | None:
        request = exchange.request
        if request.method != "OPTIONS":
            return None
        origin = request.header("origin")
        wanted = request.header("access-control-request-method")
        if origin is None or wanted is None:
            return None  # a plain OPTIONS request, for the route to take or refuse
        origin = origin.lower()
        if not self.origins.allows(origin):
            return self._refuse(exchange, "This origin may not call this API from a browser.", "cors.origin")
        if not self.any_method and wanted not in self.methods:
            return self._refuse(exchange, "This method is not allowed for cross-origin requests.", "cors.method")
        asked = request.header("access-control-request-headers") or ""
        names = [n.strip().lower() for n in asked.split(",") if n.strip()]
        if not self.any_header and any(n not in self.headers for n in names):
            return self._refuse(exchange, "A requested header is not allowed for cross-origin requests.", "cors.header")
        headers: HeaderList = [
            ("access-control-allow-origin", "*" if self._wildcard else origin),
            ("access-control-allow-methods", self._methods_value),
            ("access-control-max-age", self._max_age),
            _PREFLIGHT_VARY,
        ]
        if names:
            headers.append(("access-control-allow-headers", ", ".join(names)))
        headers.extend(self._preflight_extra)
        return Response(204, headers, b"")

    def _refuse(self, exchange: Exchange, detail: str, reason: str) -> Block | Response:
        """403 for a preflight that is not allowed. In shadow mode (``enforce: false``) a
        block would let the preflight go on to the upstream, which may not even route
        OPTIONS: it is answered ``204`` without any CORS header instead (the browser refuses
        the request all the same), and recorded as a ``monitor`` decision."""
        if self.config.enforce:
            return Block(403, "Forbidden", detail, reason=reason)
        exchange.decisions.append(Decision(self.name, "monitor", reason, 403))
        return Response(204, [_PREFLIGHT_VARY], b"")

    # -- every response: the actual request's CORS headers ---------------------------------
    def on_response(self, exchange: Exchange) -> None:
        response = exchange.response
        if response is None:
            return None
        request = exchange.request
        if request.method == "OPTIONS" and request.header("access-control-request-method") is not None:
            return None  # the preflight's answer (or refusal) has what it needs
        out = [h for h in response.headers if not h[0].startswith("access-control-")]
        if not self._wildcard:
            out.append(_VARY)  # the answer depends on the Origin: caches must key on it
        origin = request.header("origin")
        if origin is not None:
            origin = origin.lower()
            if self.origins.allows(origin):
                out.append(("access-control-allow-origin", "*" if self._wildcard else origin))
                out.extend(self._actual_extra)
        response.headers = out
        return None

