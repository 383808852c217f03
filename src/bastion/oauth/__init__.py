"""The built-in OAuth 2.0 authorization server for machine clients (``oauth_server``).

Client credentials grant (RFC 6749 4.4) with hashed client secrets or ``private_key_jwt``
(RFC 7523); short-lived JWT access tokens signed with rotating keys kept in the store;
RFC 8414 metadata and a JWKS; RFC 7662 introspection and RFC 7009 revocation, shared
through the state backend. One small module per concern:

- ``paths``: where it answers; ``routes``: the built-in routes the proxy matches first;
- ``endpoints``: the stage answering them; ``server``: settings, store and keys per worker;
- ``clientauth``, ``secrets``, ``assertion``, ``guard``: who the client is, and how hard it
  is to guess;
- ``keys``, ``tokens``: signing keys and access tokens; ``verify``: the gateway's own tokens
  checked by the JWT verifier (revocations: ``stages/auth/revocations``);
- ``store``, ``sqlstore``: what it keeps in the durable store.
"""
