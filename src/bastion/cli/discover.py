"""``bastion discover``: the endpoints clients call that no route declares, and the declared
routes nobody calls, from the audit log in the store (see :mod:`bastion.audit.discovery`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from bastion.cli.output import err, out
from bastion.cli.storeaccess import fail, loaded_store, parse_duration

if TYPE_CHECKING:
    from bastion.audit.discovery import Observed, Undeclared, Unused

_UNDECLARED = ("method", "path", "requests", "clients", "status", "first seen", "last seen")
_UNUSED = ("methods", "path", "route", "service")
_OBSERVED = ("method", "path", "route", "requests", "query parameters", "sensitive data returned (sampled)")


def _table(rows: list[tuple[str, ...]]) -> None:
    """Aligned columns, never cut to the terminal's width: they stay greppable."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), markup=False)


def _print(found: list[Undeclared], never: list[Unused], seen: list[Observed], since: str) -> None:
    out.print(f"Undeclared endpoints called in the last {since} (refused 404/405: no route declares them)",
              markup=False, style="bold")
    if found:
        _table([_UNDECLARED, *(
            (e.method, e.path, str(e.requests), str(len(e.clients)), ",".join(map(str, sorted(e.statuses))),
             *(e.document()[k] for k in ("first_seen", "last_seen")))
            for e in found
        )])
    out.print(f"{len(found)} undeclared endpoint(s)", markup=False, style="dim")
    out.print(f"\nDeclared routes not called in the last {since}", markup=False, style="bold")
    if never:
        _table([_UNUSED, *((",".join(u.methods), u.path, u.route, u.service) for u in never)])
    out.print(f"{len(never)} route(s) not called", markup=False, style="dim")
    if seen:
        out.print(f"\nEndpoints observed by the discovery stage in the last {since}", markup=False, style="bold")
        _table([_OBSERVED, *(
            (o.method, o.path, o.route, str(o.requests),
             ",".join(f"{k}:{v}" for k, v in o.parameters().items()) or "-",
             (",".join(sorted(o.returns)) or "none") + f" ({o.sampled} sampled)")
            for o in seen
        )])
        out.print(f"{len(seen)} observed endpoint(s)", markup=False, style="dim")


def discover(
    since: Annotated[str, typer.Option("--since", help="From this long ago: 1h, 30m, 7d, 2w.")] = "24h",
    openapi: Annotated[
        Path | None,
        typer.Option(
            "--export", "--openapi",
            help="Also write the undeclared and observed endpoints as a draft OpenAPI document here.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document instead of tables.")] = False,
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Configuration file (its `store:` says where the audit log is).")
    ] = Path("bastion.yaml"),
) -> None:
    """Endpoints clients called that no route declares (shadow and zombie endpoints, probes),
    and declared routes nobody called, from the audit log of a time range (the last 24 hours)."""
    from bastion.audit.discovery import DeclaredRoute, observed, undeclared, unused

    start = datetime.now(UTC) - parse_duration(since, "--since")
    with loaded_store(config) as (loaded, store):
        audit = loaded.config.audit
        if not (audit.enabled and audit.store):
            raise fail(
                f"{config}: the audit log does not write to the store, so there is no traffic to discover from; "
                "set audit: {enabled: true} (with store: true, its default)"
            )
        routes = [DeclaredRoute(r.id, r.service, r.methods, r.path) for r in loaded.routes]
        found = undeclared(store.engine, start)
        never = unused(store.engine, start, routes)
        seen = observed(store.engine, start)
    if openapi is not None:
        _write_openapi(openapi, found, seen)
    if as_json:
        import orjson

        document = {"undeclared": [e.document() for e in found], "unused": [u.document() for u in never],
                    "observed": [o.document() for o in seen]}
        out.print(orjson.dumps(document).decode(), markup=False, highlight=False, soft_wrap=True)
    else:
        _print(found, never, seen, since)
    out.file.flush()


def _write_openapi(path: Path, found: list[Undeclared], seen: list[Observed]) -> None:
    import yaml

    from bastion.audit.discovery import openapi_fragment

    document, skipped = openapi_fragment(found, seen)
    try:
        path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror or exc}") from None
    for entry in skipped:
        err.print(f"[yellow]warning:[/] {escape(entry.method)} {escape(entry.path)} is not in {escape(str(path))}: "
                  "an OpenAPI 3.1 document cannot declare this method or path", highlight=False)
    written = sum(len(item) for item in document["paths"].values())
    err.print(f"wrote {written} endpoint(s) to {path}", markup=False)
