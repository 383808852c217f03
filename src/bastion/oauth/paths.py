"""Where the built-in authorization server answers (no imports: the loader reads these)."""

from __future__ import annotations

METADATA_PATH = "/.well-known/oauth-authorization-server"
JWKS_PATH = "/.well-known/jwks.json"
TOKEN_PATH = "/oauth/token"  # noqa: S105 (a path, not a password)
INTROSPECT_PATH = "/oauth/introspect"
REVOKE_PATH = "/oauth/revoke"

#: Path -> (route id, methods), in the order ``bastion check`` lists them.
ROUTES: dict[str, tuple[str, frozenset[str]]] = {
    METADATA_PATH: ("oauth_server:metadata", frozenset({"GET", "HEAD"})),
    JWKS_PATH: ("oauth_server:jwks", frozenset({"GET", "HEAD"})),
    TOKEN_PATH: ("oauth_server:token", frozenset({"POST"})),
    INTROSPECT_PATH: ("oauth_server:introspect", frozenset({"POST"})),
    REVOKE_PATH: ("oauth_server:revoke", frozenset({"POST"})),
}
