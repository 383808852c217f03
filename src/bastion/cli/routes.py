"""``bastion routes``: every route with its effective policy (who may call it, the stages
that run), from the configuration file or, with ``--admin-url``, from a running gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli.consumers import table
from bastion.cli.output import out, print_config_error
from bastion.cli.remote import AdminUrlOpt, TokenOpt, print_json, remote


def routes(
    service: Annotated[str | None, typer.Option("--service", help="Only this service's routes.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line (the route and its policies).")]
    = False,
    config: Annotated[Path, typer.Option("--config", "-c", help="Configuration file.")] = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List the routes with their effective policy: methods, path, service, authentication
    (methods, scopes, roles, or public) and the stages that run."""
    api = remote(admin_url, token)
    if api is not None:
        found: list[dict[str, Any]] = api.call("GET", "/api/v1/routes", params={"service": service})["items"]
    else:
        found = _local(config, service)
    if as_json:
        for item in found:
            print_json(item)
        return
    if not found:
        out.print("no routes", markup=False)
        return
    table(("METHODS", "PATH", "SERVICE", "ID", "AUTH", "STAGES"),
          [(",".join(r["methods"]), r["path"] + ("*" if r["prefix"] else ""), r["service"], r["id"], r["auth"],
            ",".join(r["stages"]) or "-") for r in found])


def _local(config: Path, service: str | None) -> list[dict[str, Any]]:
    from bastion.config import ConfigError, load_config
    from bastion.control.api.routetable import view

    try:
        loaded = load_config(config)
    except ConfigError as exc:
        print_config_error(exc)
        raise typer.Exit(2) from None
    items = [view(r) for r in loaded.routes] + [view(r, builtin=True) for r in loaded.builtin_routes]
    return [r for r in items if service is None or r["service"] == service]

