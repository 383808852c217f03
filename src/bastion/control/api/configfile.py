"""``/config``: the configuration serving now, exported (secrets masked), and importing a new
one (admin), which only a deployment that opts in with ``admin.config_writable`` allows:
otherwise the file is the source of truth and the import answers 409 saying so.

An import is checked by the same loader as ``bastion check`` (from a file beside the real
one, so relative paths resolve alike), then replaces the file atomically and is reloaded;
the admin audit trail records the files' digests, never their text (it may hold secrets).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion.control.accounts.roles import Role
from bastion.control.api import Endpoint
from bastion.control.api.common import MASK, ApiError, audited, body_of, masked
from bastion.control.auth import principal_of
from bastion.control.context import AdminContext

#: ``scheme://user:password@host``: the password of a URL (Redis, PostgreSQL, upstreams).
_URL_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^/@:]*:)[^/@]+@", re.IGNORECASE)


def _hide_url_passwords(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _hide_url_passwords(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide_url_passwords(v) for v in value]
    if isinstance(value, str):
        return _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + "@", value)
    return value


def exported(ctx: AdminContext) -> dict[str, Any]:
    """What the file declares (defaults left out), as the loader understood it, secrets masked."""
    data = ctx.config.config.model_dump(mode="json", exclude_unset=True)
    shown: dict[str, Any] = _hide_url_passwords(masked(data))
    return shown


async def export_config(ctx: AdminContext, request: Request) -> Response:
    config = exported(ctx)
    return JSONResponse({"path": str(ctx.config.path), "config": config,
                         "yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True)})


def _digest(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


async def import_config(ctx: AdminContext, request: Request) -> Response:
    path = ctx.config.path
    if not ctx.settings.config_writable:
        raise ApiError(409, f"The configuration file {path} is the source of truth: change it there and POST "
                            "/reload, or set admin.config_writable: true to let admins replace it here.")
    text: str = body_of(request)["yaml"]
    if MASK in text:
        raise ApiError(422, f"The configuration holds masked values ({MASK}) from an export: put the real "
                            "secrets back (or their enc:v1: values) before importing it.")
    who = principal_of(request)

    def replace() -> dict[str, Any]:
        from bastion.config import ConfigError, load_config

        fd, name = tempfile.mkstemp(prefix=".bastion-import-", suffix=".yaml", dir=path.parent)
        candidate = Path(name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            try:
                load_config(candidate)
            except ConfigError as exc:
                issues = [str(i).replace(str(candidate), str(path)) for i in exc.issues]
                raise ApiError(422, "The configuration is invalid; the file is unchanged.", errors=issues) from None
            before = _digest(path.read_bytes()) if path.exists() else None
            after = _digest(text.encode())
            os.chmod(candidate, path.stat().st_mode & 0o777 if path.exists() else 0o600)
            with audited(ctx, who) as (_, note):
                note("config.import", f"config:{path}", before=before, after=after)
                os.replace(candidate, path)  # a failure here rolls the audit entry back with it
            return after
        finally:
            candidate.unlink(missing_ok=True)

    after = await ctx.call(replace)
    errors = ctx.sup.reload()
    if errors:  # checked already: only a race with another writer of the file gets here
        raise ApiError(422, "The file was written but its reload failed; the previous configuration keeps "
                            "serving.", errors=errors)
    return JSONResponse({"path": str(path), "written": after, "reloaded": True})


_IMPORT = {"type": "object", "required": ["yaml"], "additionalProperties": False,
           "properties": {"yaml": {"type": "string", "minLength": 1, "description": "The whole new file."}}}
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/config", export_config, Role.OPERATOR,
             "The configuration serving now, as declared (defaults left out), with secrets masked: as JSON and as "
             "YAML.", "exportConfig", "config",
             response_schema={"type": "object", "properties": {"path": {"type": "string"}, "config": {"type": "object"},
                                                               "yaml": {"type": "string"}}}),
    Endpoint("POST", "/config", import_config, Role.ADMIN,
             "Replace the configuration file (only with admin.config_writable), checked like `bastion check`, "
             "then reload it.", "importConfig", "config", request_schema=_IMPORT,
             response_schema={"type": "object", "properties": {"path": {"type": "string"},
                                                               "written": {"type": "object"},
                                                               "reloaded": {"type": "boolean"}}},
             responses={409: "admin.config_writable is false: the file is the source of truth.",
                        422: "The new configuration is invalid (errors lists why), or holds masked values."}),
]
