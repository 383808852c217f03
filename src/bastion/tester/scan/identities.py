"""Who the scan acts as: the identities file (``--auth``), ``--header`` users, and login flows.

The file (YAML or JSON) is a list under ``identities:`` (a bare list also works)::

    identities:
      - name: alice
        role: user                       # user (default) or admin
        login:
          operation: login               # an operationId, or "POST /auth/login"
          body: {username: alice, password: "${ALICE_PASSWORD}"}
          token: /access_token           # JSON pointer into the login response
          header: Authorization          # default
          scheme: Bearer                 # default; "" sends the bare token
          cookie: session                # instead of token/header: the login sets this cookie
      - name: bob
        headers: {Authorization: "Bearer ${BOB_TOKEN}"}   # static credentials
        cookies: {}                      # optional
        query: {}                        # optional (credentials in the URL)
        expired_token: "${BOB_EXPIRED}"  # optional: lets the JWT expiry check run

Next to ``identities:`` the file may name operations the scan must never call, and held-back
operations it may call after all (operationIds or ``"METHOD /path"``; see ``bastion.tester.scan.safety``)::

    exclude: [deleteAllBooks, "POST /users/{id}/deactivate"]
    include: ["GET /reset-password/{token}"]

``${ENV}`` (and ``${ENV:-default}``) are expanded from the environment. Every problem is
reported with the file, line, field and what is wrong (:class:`bastion.config.ConfigError`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bastion.config import ConfigError, ConfigIssue
from bastion.config.yamlsrc import FieldPath, Source, load_source
from bastion.tester.audit.context import Operation, Spec

Role = Literal["user", "admin"]
_KNOWN = {"name", "role", "headers", "cookies", "query", "login", "expired_token", "disposable"}
_LOGIN_KNOWN = {"operation", "body", "token", "header", "scheme", "cookie"}


@dataclass(frozen=True, slots=True)
class LoginFlow:
    """How to obtain a token: call ``operation`` with ``body``; the token is at ``token`` (a JSON pointer) and
    sent in ``header``, or, when ``cookie`` is set, it is the cookie of that name the answer sets (Set-Cookie)
    and is sent back as that cookie."""

    operation: str
    body: dict[str, Any]
    token: str = "/access_token"  # noqa: S105 (a JSON pointer, not a secret)
    header: str = "Authorization"
    scheme: str = "Bearer"
    cookie: str | None = None


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """One configured identity, before login."""

    name: str
    role: Role = "user"
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    login: LoginFlow | None = None
    expired_token: str | None = None
    #: A test account made for the scan: the user-enumeration check may send it one wrong password.
    disposable: bool = False


def _str_map(src: Source, value: Any, path: FieldPath, issues: list[ConfigIssue]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        issues.append(src.issue(path, f"expected a mapping of names to strings, got {type(value).__name__}"))
        return {}
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            issues.append(src.issue((*path, key), f"expected a string, got {type(item).__name__}"))
            continue
        out[str(key)] = str(item)
    return out


def _login(src: Source, raw: Any, path: FieldPath, issues: list[ConfigIssue]) -> LoginFlow | None:
    if not isinstance(raw, dict):
        issues.append(src.issue(path, "expected a mapping with operation, body and token"))
        return None
    for key in raw:
        if key not in _LOGIN_KNOWN:
            issues.append(src.issue((*path, key), f"unknown field; expected one of: {', '.join(sorted(_LOGIN_KNOWN))}"))
    operation = raw.get("operation")
    if not isinstance(operation, str) or not operation.strip():
        issues.append(src.issue((*path, "operation"), 'required: an operationId or "METHOD /path"'))
        return None
    body = raw.get("body", {})
    if not isinstance(body, dict):
        issues.append(src.issue((*path, "body"), "expected a mapping (the JSON body of the login request)"))
        return None
    token = raw.get("token", "/access_token")
    if not isinstance(token, str) or not (token == "" or token.startswith("/")):
        issues.append(src.issue((*path, "token"), 'expected a JSON pointer into the response, e.g. "/access_token"'))
        return None
    header = raw.get("header", "Authorization")
    scheme = raw.get("scheme", "Bearer")
    if not isinstance(header, str) or not header:
        issues.append(src.issue((*path, "header"), "expected a header name"))
        return None
    if scheme is None:
        scheme = ""
    if not isinstance(scheme, str):
        issues.append(src.issue((*path, "scheme"), 'expected a string such as "Bearer" (or "" for none)'))
        return None
    cookie = raw.get("cookie")
    if cookie is not None and (not isinstance(cookie, str) or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", cookie)):
        issues.append(src.issue((*path, "cookie"), "expected a cookie name (the cookie the login answer sets)"))
        return None
    return LoginFlow(operation.strip(), body, token, header, scheme, cookie)


def parse_identities(src: Source) -> list[IdentityConfig]:
    """The identities of a parsed file; raise ConfigError listing every problem."""
    issues: list[ConfigIssue] = []
    data = src.data
    base: FieldPath = ()
    if isinstance(data, dict):
        for key in data:
            if key not in ("identities", "include", "exclude"):
                issues.append(src.issue((key,), "unknown field; expected: identities, include, exclude"))
        data, base = data.get("identities"), ("identities",)
    if not isinstance(data, list) or not data:
        issues.append(src.issue(base, "expected a non-empty list of identities"))
        raise ConfigError(issues)
    out: list[IdentityConfig] = []
    names: set[str] = set()
    for i, raw in enumerate(data):
        path: FieldPath = (*base, i)
        if not isinstance(raw, dict):
            issues.append(src.issue(path, "expected a mapping with name, role and headers or login"))
            continue
        for key in raw:
            if key not in _KNOWN:
                issues.append(src.issue((*path, key), f"unknown field; expected one of: {', '.join(sorted(_KNOWN))}"))
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            issues.append(src.issue((*path, "name"), "required: a non-empty string"))
            continue
        if name in names or name == "anonymous":
            issues.append(src.issue((*path, "name"), f"{name!r} is already used; names must be unique"))
        names.add(name)
        role = raw.get("role", "user")
        if role not in ("user", "admin"):
            issues.append(src.issue((*path, "role"), f"expected user or admin, got {role!r}"))
            continue
        headers = _str_map(src, raw.get("headers"), (*path, "headers"), issues)
        cookies = _str_map(src, raw.get("cookies"), (*path, "cookies"), issues)
        query = _str_map(src, raw.get("query"), (*path, "query"), issues)
        login = _login(src, raw["login"], (*path, "login"), issues) if "login" in raw else None
        expired = raw.get("expired_token")
        if expired is not None and not isinstance(expired, str):
            issues.append(src.issue((*path, "expired_token"), "expected a string (a token that has expired)"))
            expired = None
        disposable = raw.get("disposable", False)
        if not isinstance(disposable, bool):
            issues.append(src.issue((*path, "disposable"), f"expected true or false, got {disposable!r}"))
            disposable = False
        if login is None and not (headers or cookies or query) and "login" not in raw:
            issues.append(src.issue(path, "an identity needs credentials: headers, cookies, query or login"))
        out.append(IdentityConfig(name, role, headers, cookies, query, login, expired, disposable))
    if issues:
        raise ConfigError(issues)
    return out


def parse_scope(src: Source) -> tuple[list[str], list[str]]:
    """The file's ``include`` and ``exclude`` lists of operation references; raise ConfigError on a bad one."""
    issues: list[ConfigIssue] = []
    out: dict[str, list[str]] = {"include": [], "exclude": []}
    if isinstance(src.data, dict):
        for key in out:
            raw = src.data.get(key)
            if raw is None:
                continue
            if not isinstance(raw, list) or not all(isinstance(r, str) and r.strip() for r in raw):
                issues.append(src.issue((key,), 'expected a list of operationIds or "METHOD /path" strings'))
                continue
            out[key] = [r.strip() for r in raw]
    if issues:
        raise ConfigError(issues)
    return out["include"], out["exclude"]


def load_scope(path: Path) -> tuple[list[str], list[str]]:
    """``include`` and ``exclude`` of an identities file (empty when it has none)."""
    return parse_scope(load_source(path, display=str(path)))


def load_identities(path: Path) -> list[IdentityConfig]:
    """Read an identities file (YAML or JSON, ``${ENV}`` expanded); raise ConfigError on problems."""
    return parse_identities(load_source(path, display=str(path)))


def identity_from_headers(headers: list[str], name: str = "user") -> IdentityConfig:
    """A single static user from ``--header 'Name: value'`` options; raise ValueError on a malformed one."""
    parsed: dict[str, str] = {}
    for item in headers:
        key, sep, value = item.partition(":")
        if not sep or not key.strip() or any(c.isspace() for c in key.strip()):
            raise ValueError(f"--header {item!r}: expected 'Name: value'")
        parsed[key.strip()] = value.strip()
    return IdentityConfig(name=name, headers=parsed)


def json_pointer_get(document: Any, pointer: str) -> Any:
    """RFC 6901 lookup; raise KeyError naming the missing part."""
    if pointer == "":
        return document
    current = document
    for raw in pointer[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise KeyError(part)
    return current


USERNAME_WORDS = ("username", "user_name", "userName", "login", "email", "user", "name", "account")
PASSWORD_WORDS = ("password", "passwd", "pass", "pwd", "passphrase")


def credential_fields(names: Any) -> tuple[str | None, str | None]:
    """Which of ``names`` holds the user name and which the password (login bodies), by name."""
    keys = [str(n) for n in names]
    lowered = {k: k.lower().replace("-", "_") for k in keys}
    password = next((k for k in keys if any(lowered[k] == w or lowered[k].endswith("_" + w) for w in PASSWORD_WORDS)),
                    None)
    password = password or next((k for k in keys if "password" in lowered[k]), None)
    user = next((k for w in USERNAME_WORDS for k in keys if lowered[k] == w.lower() and k != password), None)
    user = user or next((k for k in keys if k != password and ("user" in lowered[k] or "email" in lowered[k])), None)
    return user, password


#: Words of a sign-up's path or operationId (or a POST to a users/accounts collection).
SIGNUP_WORDS = re.compile(r"regist|sign-?up|signup|users?/?$|accounts?/?$|join")


def signup_fields(spec: Spec, op: Operation) -> tuple[str, str] | None:
    """The user-name and password fields of ``op`` when it is a public sign-up: a POST whose body holds both and
    whose path or operationId says register/sign-up (or is a users/accounts collection); else None."""
    if op.method != "post" or not op.public:
        return None
    names: list[str] = []
    for node in spec.request_schemas(op):
        props = node.schema.get("properties")
        if isinstance(props, dict):
            names += [str(k) for k in props]
    user_field, password_field = credential_fields(names)
    words = f"{op.template} {op.node.get('operationId', '')}".lower()
    if user_field and password_field and SIGNUP_WORDS.search(words):
        return user_field, password_field
    return None

