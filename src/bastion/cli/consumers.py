"""``bastion consumers create|list|delete``: the consumers kept in the store.

Consumers declared in the configuration (``consumers:``) are listed too, marked as such,
and cannot be changed or deleted here: the file is their source.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli.output import out
from bastion.cli.storeaccess import configured_store, fail, when

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="Configuration file (its `store:` says where the store is)."),
]

consumers_app = typer.Typer(
    name="consumers", help="Create, list and delete the consumers kept in the store.", no_args_is_help=True
)


def _metadata(pairs: list[str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--metadata")
        metadata[key] = value
    return metadata


@consumers_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Unique name of the consumer.")],
    roles: Annotated[str, typer.Option("--roles", help="Roles it holds, comma-separated.")] = "",
    plan: Annotated[str | None, typer.Option("--plan", help="Its plan (rate limits, quotas).")] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", help="KEY=VALUE about it (repeatable).")
    ] = None,
    config: ConfigOpt = Path("bastion.yaml"),
) -> None:
    """Create a consumer in the store (then give it keys with `bastion keys create`)."""
    import re

    from bastion.config.model import CONSUMER_NAME
    from bastion.store import consumers

    if not re.match(CONSUMER_NAME, name):
        raise fail(f"{name!r} is not a consumer name (letters, digits and _ . @ -, at most 128)", 2)
    role_list = [r.strip() for r in roles.split(",") if r.strip()]
    meta = _metadata(metadata or [])
    with configured_store(config) as store, store.write() as session:
        consumers.create(session, name, roles=role_list, plan=plan, metadata=meta)
    out.print(f"created consumer {name} (roles: {', '.join(role_list) or '-'}) in {store.shown}", markup=False)


@consumers_app.command("list")
def list_(config: ConfigOpt = Path("bastion.yaml")) -> None:
    """List the consumers: name, roles, plan, where they come from, when they were made."""
    from bastion.store import consumers

    with configured_store(config) as store, store.read() as session:
        rows = [
            (c.name, ",".join(c.roles) or "-", c.plan or "-", "config" if c.declared else "store", when(c.created_at))
            for c in consumers.list_all(session)
        ]
    if not rows:
        out.print(f"no consumers in {store.shown}", markup=False)
        return
    table(("NAME", "ROLES", "PLAN", "SOURCE", "CREATED"), rows)


@consumers_app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="The consumer to delete, with its keys.")],
    config: ConfigOpt = Path("bastion.yaml"),
) -> None:
    """Delete a consumer and every key it holds (their requests are refused from then on)."""
    from bastion.store import consumers

    with configured_store(config) as store, store.write() as session:
        deleted = consumers.delete_by_name(session, name)
    out.print(f"deleted consumer {name} and its {deleted} API key(s)", markup=False)


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """Aligned columns, one line per row, never wrapped (so they stay greppable)."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        out.print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), markup=False)

