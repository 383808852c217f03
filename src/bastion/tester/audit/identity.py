"""Gateway rules on identity and access settings (``policies.auth`` and ``policies.access``).

The loader already refuses what is plainly wrong (an HS256 secret under 32 bytes, an issuer
without audiences, a leeway over five minutes, plain http to a host that is not loopback);
these rules report what loads but weakens the gateway: shared-secret tokens, keys in URLs,
login operations nothing slows down, slow revocation, administrative and object-level
operations that no access rule guards. Operations are recognised by their traits (tags, path
segments, operationId, summary, parameter names), never by a list of known APIs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bastion.config import ResolvedRoute
from bastion.config.yamlsrc import FieldPath, Source
from bastion.stages.access import AccessConfig, AccessStage
from bastion.stages.auth import AuthConfig, auth_stage
from bastion.stages.auth.jwt.config import read_secret
from bastion.tester.audit.context import Gateway
from bastion.tester.audit.gateway import policy_layers
from bastion.tester.audit.interface import Hit, Rule, RuleInfo, Severity

#: An HS256 secret shorter than this is below the hash's own strength (RFC 7518 asks for at
#: least the output size, 32 bytes, which the loader enforces; 64 leaves a margin).
RECOMMENDED_HMAC_BYTES = 64
#: An introspection answer reused longer than this keeps a revoked token working that long.
MAX_INTROSPECTION_CACHE = 300.0
#: Names of a rate-limiting stage, should the registry have one: it protects a login as a lockout does.
RATE_LIMIT_STAGES = frozenset({"ratelimit", "rate_limit"})
#: The stage that counts a login operation's failures per account (``policies.login``).
ACCOUNT_LOCKOUT_STAGE = "login"
#: Words of an operation that checks a secret a client can guess or try again (a login, a token
#: exchange, a password reset, a one-time code), compared lower case.
LOGIN_WORDS = frozenset(
    {
        "login",
        "logon",
        "signin",
        "authenticate",
        "authentication",
        "token",
        "session",
        "sessions",
        "password",
        "passwd",
        "passcode",
        "otp",
        "mfa",
    }
)
#: Login words too common in a summary's prose to mark a login there.
PROSE_WORDS = frozenset({"token", "session", "sessions"})
#: Two words that make one ("sign in", "log-in", "2fa").
LOGIN_PAIRS = frozenset({"signin", "login", "logon", "2fa"})
#: Tags, path segments and first words of an operationId that mark an administrative operation.
ADMIN_WORDS = frozenset(
    {"admin", "admins", "administration", "administrator", "administrators", "superuser", "sysadmin", "backoffice"}
)
#: Last words of a path parameter that names one object ("id", "userId", "order_id", "uuid").
OBJECT_ID_WORDS = frozenset({"id", "uuid", "guid"})
#: Whole parameter names that name one consumer's object.
OBJECT_NAMES = frozenset({"username"})
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_PATH_VAR = re.compile(r"\{([^{}]+)\}")
_PROTECTED_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _auth_config(route: ResolvedRoute) -> AuthConfig | None:
    for spec, config in route.stages:
        if spec.name == "auth" and isinstance(config, AuthConfig):
            return config
    return None


def _access_config(route: ResolvedRoute) -> AccessConfig | None:
    for spec, config in route.stages:
        if spec.name == "access" and isinstance(config, AccessConfig):
            return config
    return None


def _access_stage(route: ResolvedRoute) -> AccessStage | None:
    return next((s for s in route.built if isinstance(s, AccessStage)), None)


def _authenticated(route: ResolvedRoute) -> bool:
    """The gateway itself checks credentials on the route (not public, delegated or refused)."""
    auth = auth_stage(route.built)
    return auth is not None and auth.authenticates


def _issuers(gw: Gateway) -> Iterator[tuple[Source, dict[str, Any], FieldPath]]:
    """Every JWT issuer as written, in the config and in OpenAPI extensions."""
    for source, stage, values, path in policy_layers(gw):
        jwt = values.get("jwt") if stage == "auth" else None
        issuers = jwt.get("issuers") if isinstance(jwt, dict) else None
        for i, issuer in enumerate(issuers if isinstance(issuers, list) else []):
            if isinstance(issuer, dict):
                yield source, issuer, (*path, "jwt", "issuers", i)


def _issuer_name(issuer: dict[str, Any]) -> str:
    return repr(str(issuer.get("issuer", "?")))


def _algorithms(issuer: dict[str, Any]) -> list[Any]:
    algorithms = issuer.get("algorithms")
    return algorithms if isinstance(algorithms, list) else []


HS256_ISSUER = RuleInfo(
    id="BAST-GW-018",
    title="JWT issuer with a shared secret (HS256)",
    category="API2:2023",
    cwe=1390,
    severity=Severity.MEDIUM,
    scope="config",
    checks="A JWT issuer accepts HS256: the secret that verifies tokens also signs them, so every party "
    "holding it (the identity provider, each gateway, each service that checks tokens) can forge a token "
    "for any consumer with any scopes, and a leak anywhere is a forgery everywhere.",
    fix="Have the identity provider sign with a private key (RS256, ES256 or EdDSA) and give the issuer its "
    "`jwks_url` (or public `keys`); keep HS256 only for tokens one party both issues and checks.",
)


def hs256_issuer(gw: Gateway) -> Iterator[Hit]:
    for source, issuer, path in _issuers(gw):
        algorithms = _algorithms(issuer)
        if "HS256" in algorithms:
            where = (*path, "algorithms", algorithms.index("HS256"))
            yield Hit(f"JWT issuer {_issuer_name(issuer)} accepts HS256 (a shared secret)", source, where)


SHORT_HMAC_SECRET = RuleInfo(
    id="BAST-GW-019",
    title="Short HS256 secret",
    category="API2:2023",
    cwe=326,
    severity=Severity.LOW,
    scope="config",
    checks=f"An issuer's HS256 secret has fewer than {RECOMMENDED_HMAC_BYTES} bytes (the loader refuses fewer "
    "than 32): anyone holding one token can try to guess the secret offline, and a human-chosen secret of "
    "that length falls quickly.",
    fix=f"Use at least {RECOMMENDED_HMAC_BYTES} random bytes (`openssl rand -base64 64`) in the variable or file "
    "the issuer's `secret_env`/`secret_file` names, and rotate it at the identity provider.",
)


def short_hmac_secret(gw: Gateway) -> Iterator[Hit]:
    for source, issuer, path in _issuers(gw):
        if "HS256" not in _algorithms(issuer):
            continue
        env, file = issuer.get("secret_env"), issuer.get("secret_file")
        try:
            secret = read_secret(
                env if isinstance(env, str) else None,
                Path(file) if isinstance(file, str) else None,
                "the HS256 secret",
            )
        except ValueError:
            continue  # not readable here: the loader says so when the gateway starts
        if len(secret) < RECOMMENDED_HMAC_BYTES:
            field = "secret_env" if isinstance(env, str) else "secret_file"
            yield Hit(
                f"the HS256 secret of JWT issuer {_issuer_name(issuer)} has {len(secret)} bytes",
                source,
                (*path, field),
            )


PLAIN_IDENTITY_ENDPOINT = RuleInfo(
    id="BAST-GW-020",
    title="Identity endpoint over plain HTTP",
    category="API8:2023",
    cwe=319,
    severity=Severity.INFO,
    scope="config",
    checks="An issuer's `jwks_url` or the introspection `url` is http:// (allowed only to a loopback address): "
    "fine for a sidecar or a test, but whoever can answer on that port chooses the keys every token is checked "
    "against, or reads the tokens and client secret sent for introspection.",
    fix="Use the identity provider's https:// URL in production; keep http only for a local sidecar that no "
    "other user of the host can replace.",
)


def plain_identity_endpoint(gw: Gateway) -> Iterator[Hit]:
    for source, issuer, path in _issuers(gw):
        url = issuer.get("jwks_url")
        if isinstance(url, str) and urlsplit(url).scheme == "http":
            yield Hit(f"JWT issuer {_issuer_name(issuer)} fetches its keys from {url}", source, (*path, "jwks_url"))
    for source, stage, values, path in policy_layers(gw):
        settings = values.get("introspection") if stage == "auth" else None
        url = settings.get("url") if isinstance(settings, dict) else None
        if isinstance(url, str) and urlsplit(url).scheme == "http":
            yield Hit(f"tokens are introspected at {url}", source, (*path, "introspection", "url"))


QUERY_API_KEY = RuleInfo(
    id="BAST-GW-021",
    title="API key accepted in the query string",
    category="API2:2023",
    cwe=598,
    severity=Severity.MEDIUM,
    scope="config",
    checks="`api_keys: {query: true}` lets a route read an API key from a query parameter: URLs end up in "
    "access logs (the gateway's, proxies', the upstream's), browser history and Referer headers, where "
    "the key outlives the request.",
    fix="Remove `api_keys.query` (off by default) and send the key in a header (`Authorization: Bearer bst_...` "
    "or the apiKey scheme's header); rotate keys that were sent in URLs (`bastion keys rotate`).",
)


def query_api_key(gw: Gateway) -> Iterator[Hit]:
    for route in gw.loaded.routes:
        auth = auth_stage(route.built)
        params = sorted({s.query for s in auth.sources if s.query}) if auth is not None else []
        if params:
            source, path = gw.where(route)
            names = ", ".join(repr(p) for p in params)
            yield Hit(f"route {route.id!r} accepts API keys in the query parameter {names}", source, path)


def _login_trait(route: ResolvedRoute) -> str | None:
    """What makes the route look like it checks a guessable secret, or ``None``."""
    op = route.operation or {}
    texts = [("operationId", op.get("operationId")), ("path", route.path), ("summary", op.get("summary"))]
    for label, text in texts:
        if not isinstance(text, str):
            continue
        words = _words(text)
        # Prose mentions tokens and sessions in passing ("requires a token"); names do not.
        vocabulary = LOGIN_WORDS - PROSE_WORDS if label == "summary" else LOGIN_WORDS
        if vocabulary & set(words) or LOGIN_PAIRS & {a + b for a, b in pairwise(words)}:
            return f"{label} {text!r}"
    return None


UNLIMITED_LOGIN = RuleInfo(
    id="BAST-GW-022",
    title="Login operation without a lockout or rate limit",
    category="API2:2023",
    cwe=307,
    severity=Severity.MEDIUM,
    scope="config",
    checks="An operation that looks like a login, token exchange, password reset or one-time-code check "
    "(by its operationId, path or summary) accepts POST/PUT/PATCH with neither a lockout nor a rate limit: "
    "passwords and codes can be guessed as fast as the backend answers. The auth stage's `lockout` counts "
    "only the credentials the gateway itself verifies, so it cannot protect a public or delegated login; "
    "`policies.login` counts the backend's failed logins per target account.",
    fix="Where the backend checks a password (a public login), mark the operation as a login with "
    "`policies.login: {account: body:/username}` (where its requests name the account); where the gateway "
    "verifies the credentials, set `policies.auth.lockout: {enabled: true}` on the operation. Either needs "
    "`backends.state: redis` when several workers or instances run.",
)


def unlimited_login(gw: Gateway) -> Iterator[Hit]:
    for route in gw.loaded.routes:
        trait = _login_trait(route) if route.methods & _PROTECTED_METHODS else None
        if trait is None or any(spec.name in RATE_LIMIT_STAGES for spec, _ in route.stages):
            continue
        if any(stage.name == ACCOUNT_LOCKOUT_STAGE for stage in route.built):
            continue  # failed logins counted per account, whoever checks the password
        auth = auth_stage(route.built)
        if auth is not None and auth.refusal is not None:
            continue  # unreachable (BAST-GW-017): nothing to guess
        if auth is not None and auth.authenticates:
            if auth.lockout is not None:
                continue
            why = "neither a lockout nor a rate limit applies"
        else:
            config = _auth_config(route)
            set_but_idle = config is not None and config.lockout.enabled
            who = "public" if route.public else "delegated to the upstream"
            why = (
                f"it is {who}, so the gateway counts no failures "
                f"({'its lockout setting does nothing there' if set_but_idle else 'a lockout cannot apply'}) "
                "and no rate limit applies"
            )
        source, path = gw.where(route)
        yield Hit(f"route {route.id!r} looks like a login ({trait}): {why}", source, path)


INTROSPECTION_CACHE = RuleInfo(
    id="BAST-GW-023",
    title="Introspection answers cached for long",
    category="API2:2023",
    cwe=613,
    severity=Severity.LOW,
    scope="config",
    checks=f"`introspection.cache_ttl` is above {MAX_INTROSPECTION_CACHE:.0f} seconds: a token revoked at the "
    "authorization server keeps working at the gateway until its cached answer expires (never past the "
    "token's own `exp`).",
    fix=f"Keep `cache_ttl` at {MAX_INTROSPECTION_CACHE:.0f} seconds or less (default 60): the cache spares the "
    "server repeated questions within a burst of calls, not for the token's whole life.",
)


def introspection_cache(gw: Gateway) -> Iterator[Hit]:
    for source, stage, values, path in policy_layers(gw):
        settings = values.get("introspection") if stage == "auth" else None
        ttl = settings.get("cache_ttl") if isinstance(settings, dict) else None
        if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl > MAX_INTROSPECTION_CACHE:
            where = (*path, "introspection", "cache_ttl")
            yield Hit(f"introspection answers are reused for {ttl:g} seconds after a revocation", source, where)


def _admin_trait(route: ResolvedRoute) -> tuple[str, str] | None:
    """What makes the route look administrative, ``(kind, as written)``, or ``None``."""
    op = route.operation or {}
    tags = op.get("tags")
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, str) and tag.strip("_ ").casefold() in ADMIN_WORDS:
            return "tag", tag
    for segment in route.path.split("/"):
        if segment.lstrip("_").casefold() in ADMIN_WORDS:
            return "path segment", segment
    op_id = op.get("operationId")
    words = _words(op_id) if isinstance(op_id, str) else []
    if isinstance(op_id, str) and words and words[0] in ADMIN_WORDS:
        return "operationId", op_id
    return None


def _unguarded_because(config: AccessConfig | None, trait: tuple[str, str]) -> str:
    if config is None:
        return "the access stage is off"
    if not config.admin_tags:
        return "`admin_tags` is empty and no `admin` or `roles` rule applies"
    if trait[0] == "tag":
        listed = ", ".join(config.admin_tags)
        return f"`admin_tags` ({listed}) does not name its tag and no `admin` or `roles` rule applies"
    return "no `admin` or `roles` rule applies"


UNGUARDED_ADMIN = RuleInfo(
    id="BAST-GW-024",
    title="Administrative operation without a function-level rule",
    category="API5:2023",
    cwe=285,
    severity=Severity.HIGH,
    scope="config",
    checks="An operation looks administrative (an `admin` tag, an `/admin` path segment, an operationId "
    "starting with admin) yet the access stage neither treats it as one (`admin`, `admin_tags`) nor "
    "requires `roles` there, because the stage is off or `admin_tags` was emptied: every consumer (or "
    "anyone, on a public route) may call it.",
    fix="Keep the operation's tag in `policies.access.admin_tags` (default `[admin]`) or set "
    "`policies.access.admin: true` on it, so only `admin_roles` may call it; or require `roles`. If it is "
    "not administrative, rename it.",
)


def unguarded_admin(gw: Gateway) -> Iterator[Hit]:
    for route in gw.loaded.routes:
        trait = _admin_trait(route)
        if trait is None or not (route.public or _authenticated(route)):
            continue  # delegated or unreachable: the gateway has no consumer to check
        stage, config = _access_stage(route), _access_config(route)
        if stage is not None and config is not None and (stage.admin or config.roles):
            continue
        who = "anyone" if route.public else "any authenticated consumer"
        why = f"{trait[0]} {trait[1]!r}"
        reason = _unguarded_because(config, trait)
        source, path = gw.where(route)
        yield Hit(f"route {route.id!r} looks administrative ({why}) but {who} may call it: {reason}", source, path)


def _object_params(route: ResolvedRoute) -> list[str]:
    """Path parameters that name one object: ``{id}``, ``{userId}``, ``{order_id}``, ``{uuid}``..."""
    out: list[str] = []
    for name in _PATH_VAR.findall(route.path):
        words = _words(name)
        if (words and words[-1] in OBJECT_ID_WORDS) or "".join(words) in OBJECT_NAMES:
            out.append(name)
    return out


UNOWNED_OBJECT = RuleInfo(
    id="BAST-GW-025",
    title="Object operation without an ownership rule (possible BOLA)",
    category="API1:2023",
    cwe=639,
    severity=Severity.LOW,
    scope="config",
    checks="A route the gateway authenticates names one object in its path (`{id}`, `{userId}`, `{order_id}`, "
    "`{uuid}`...) and declares neither an `owner` nor a `learned_owner` access rule: unless the backend checks "
    "that the object belongs to the caller, any consumer reaches any other's objects by changing the id. "
    "Advice: administrative operations are not reported, and shared objects need no rule.",
    fix="When the path names the owner, set `policies.access.owner: {param: userId, equals: principal.consumer}`; "
    "otherwise set `learn_ownership` on the operation that creates the objects and `learned_owner` on those "
    "that use them. Ignore this where every consumer may see every object or the backend checks ownership.",
)


def unowned_object(gw: Gateway) -> Iterator[Hit]:
    for route in gw.loaded.routes:
        params = _object_params(route)
        if not params or not _authenticated(route):
            continue
        stage, config = _access_stage(route), _access_config(route)
        if stage is not None and stage.admin:
            continue
        if config is not None and (config.owner is not None or config.learned_owner is not None):
            continue
        source, path = gw.where(route)
        names = ", ".join("{" + p + "}" for p in params)
        yield Hit(
            f"route {route.id!r}: {names} names an object, and no `owner` or `learned_owner` rule checks "
            "that it belongs to the caller",
            source,
            path,
        )


RULES: tuple[Rule[Gateway], ...] = (
    Rule(HS256_ISSUER, hs256_issuer),
    Rule(SHORT_HMAC_SECRET, short_hmac_secret),
    Rule(PLAIN_IDENTITY_ENDPOINT, plain_identity_endpoint),
    Rule(QUERY_API_KEY, query_api_key),
    Rule(UNLIMITED_LOGIN, unlimited_login),
    Rule(INTROSPECTION_CACHE, introspection_cache),
    Rule(UNGUARDED_ADMIN, unguarded_admin),
    Rule(UNOWNED_OBJECT, unowned_object),
)
