"""The built-in routes: where the authorization server answers on the gateway's port.

They are not a service's routes. The proxy matches them first, on the normalised path
(after every check of the request line and head that any route gets), by exact path only;
they run one stage, the endpoints, which answers every request itself, and they have no
upstream, so nothing that reaches them is ever forwarded. The request body is read whole
(at most :data:`~bastion.oauth.endpoints.MAX_BODY_BYTES`, 413 beyond) and only on the
POST endpoints; the discovery documents take GET and HEAD and no body.

Detection and validation are not run on them: those stages protect an upstream, and
here there is none; the endpoints parse their own input strictly (a form of at most 16
fields, each at most once; JWTs bounded in size). A service route declared on one of
these exact paths is a load error rather than silently shadowed.
"""

from __future__ import annotations

from bastion.config.loader import ResolvedRoute
from bastion.config.model import GatewayConfig
from bastion.oauth.endpoints import MAX_BODY_BYTES, OAuthEndpoints
from bastion.oauth.paths import ROUTES
from bastion.oauth.server import OAuthServer, settings_of
from bastion.oauth.store import OAuthStore

#: The pseudo-service of the built-in routes in records and metrics (never a service's name:
#: parentheses are not allowed there).
SERVICE = "(oauth_server)"


def builtin_routes(config: GatewayConfig) -> tuple[ResolvedRoute, ...]:
    """The authorization server's routes (none unless ``oauth_server.enabled``), sharing
    one endpoints stage."""
    if not config.oauth_server.enabled:
        return ()

    def open_store() -> OAuthStore:
        # Imported here: SQLAlchemy is loaded by the workers that use the store only.
        from bastion.oauth.sqlstore import SqlOAuthStore
        from bastion.store import open_store as open_durable_store

        return SqlOAuthStore(open_durable_store(config.store, config.consumers))

    stage = OAuthEndpoints(OAuthServer(settings_of(config), open_store))
    return tuple(
        ResolvedRoute(
            id=route_id,
            service=SERVICE,
            path=path,
            methods=methods,
            host=None,
            prefix=False,
            # The endpoints authenticate their clients themselves (RFC 6749 2.3).
            public=True,
            operation_id=route_id,
            max_body_bytes=MAX_BODY_BYTES,
            max_response_body_bytes=0,
            response_body_over_limit="block",
            body_methods=methods & {"POST"},
            stages=(),
            origin="oauth_server",
            built=(stage,),
        )
        for path, (route_id, methods) in ROUTES.items()
    )
