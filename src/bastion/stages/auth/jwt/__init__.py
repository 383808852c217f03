"""JWT verification for external identity providers: per-issuer keys (JWKS or static),
algorithm allow-lists bound to key families, a verified-token cache, revocation by ``jti``.

Modules: ``config`` (settings), ``keys`` (JWK/PEM to loaded keys), ``jwks`` (fetching and
refreshing a JWKS), ``cache`` (verified tokens), ``verify`` (:class:`JwtVerifier`).
Nothing is imported here, so the stage's settings can import ``config`` alone.
"""
