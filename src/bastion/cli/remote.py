"""The CLI's remote mode: the store's commands (consumers and their certificates, keys, OAuth
clients, alerts, logs, admin users and tokens) and routes and blocks, run through a gateway's
admin API instead of opening the store; ``bastion config`` runs only this way.

``--admin-url URL`` (or ``BASTION_ADMIN_URL``) selects it, with an admin token from
``BASTION_ADMIN_TOKEN`` (or ``--token``, which other users of the machine may see in the
process list). An HTTPS admin listener with its own certificate authority: its CA bundle in
``BASTION_ADMIN_CA``. Exit codes scripts can rely on, in both modes:

* 0: done;
* 1: the operation failed: refused, not found, a conflict, the server unreachable;
* 2: a usage or configuration error (a bad option, an invalid file, no token);
* 3: authentication failed: the token is missing, invalid or revoked (401), or its role is
  too low for the operation (403).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, Any

import typer

from bastion.cli.storeaccess import fail

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3

AdminUrlOpt = Annotated[
    str | None,
    typer.Option("--admin-url", envvar="BASTION_ADMIN_URL", show_envvar=True,
                 help="Run through this gateway's admin API (http://127.0.0.1:9090) instead of the store."),
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="BASTION_ADMIN_TOKEN", show_envvar=True,
                 help="The admin token for --admin-url (prefer the environment variable)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON for scripts instead of a table.")]


class Remote:
    """A gateway's admin API, as the commands call it: JSON in and out, errors as exits."""

    def __init__(self, url: str, token: str | None) -> None:
        if not url.startswith(("http://", "https://")):
            raise fail(f"--admin-url {url!r} is not an http:// or https:// URL", EXIT_USAGE)
        if not token:
            raise fail("--admin-url needs an admin token: set BASTION_ADMIN_TOKEN (or pass --token); "
                       "`bastion admin token create` makes one", EXIT_USAGE)
        self.url = url.rstrip("/")
        self._token = token

    def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        """The decoded answer of ``method path``; any failure exits with its code and the
        server's one-line reason."""
        import httpx

        verify: Any = os.environ.get("BASTION_ADMIN_CA") or True
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = httpx.request(method, self.url + path, json=body, params=query, timeout=30.0, verify=verify,
                                 headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise fail(f"cannot reach the admin API at {self.url}: {exc}", EXIT_FAILED) from None
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        if resp.status_code < 300:
            return answer
        detail = answer.get("detail") if isinstance(answer, dict) else None
        message = f"{resp.status_code} {resp.reason_phrase}: {detail or resp.text[:200]}"
        if isinstance(answer, dict) and isinstance(answer.get("errors"), list):
            message += " (" + "; ".join(str(e) for e in answer["errors"]) + ")"
        raise fail(message, EXIT_AUTH if resp.status_code in (401, 403) else EXIT_FAILED)

    def items(self, path: str, params: dict[str, Any] | None = None, *, limit: int | None = None,
              progress: Callable[[int], None] | None = None) -> list[Any]:
        """Every item of a paginated list (following ``next_cursor``), at most ``limit``;
        ``progress`` is told how many items each page brought."""
        found: list[Any] = []
        query = dict(params or {})
        while True:
            if limit is not None:
                query["limit"] = min(1000, limit - len(found))
            page = self.call("GET", path, params=query)
            found += page["items"]
            if progress is not None:
                progress(len(page["items"]))
            cursor = page.get("next_cursor")
            if not cursor or (limit is not None and len(found) >= limit):
                return found
            query["cursor"] = cursor


def remote(url: str | None, token: str | None) -> Remote | None:
    """The admin API when ``--admin-url`` (or ``BASTION_ADMIN_URL``) is given, else ``None``
    (the command opens the store, as it always has)."""
    return None if url is None else Remote(url, token)


def print_json(value: Any) -> None:
    """One JSON document on one line (``--json``)."""
    import orjson

    from bastion.cli.output import out

    out.print(orjson.dumps(value).decode(), markup=False, highlight=False, soft_wrap=True, emoji=False)
