"""``bastion logs query|tail``: the audit log, read from the store.

Both take the same filters (consumer, route, status, decision, rule) and print a table, or
with ``--json`` one JSON object a line (the fields of the audit log's JSON lines). ``query``
looks back over a time range; ``tail`` prints the last few records and then each new one as
the workers store it, until interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bastion.cli.output import out
from bastion.cli.remote import AdminUrlOpt, Remote, TokenOpt, remote
from bastion.cli.storeaccess import configured_store, parse_duration

if TYPE_CHECKING:
    from bastion.audit.storage import AuditQuery
    from bastion.store.models import AuditRecord

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="Configuration file (its `store:` says where the audit log is)."),
]
ConsumerOpt = Annotated[str | None, typer.Option("--consumer", help="Only this consumer's requests (its id).")]
RouteOpt = Annotated[str | None, typer.Option("--route", help="Only this route (its id or operationId).")]
StatusOpt = Annotated[int | None, typer.Option("--status", min=100, max=599, help="Only this status code.")]
DecisionOpt = Annotated[
    str | None, typer.Option("--decision", help="Only allowed, monitored or blocked requests.")
]
RuleOpt = Annotated[
    str | None,
    typer.Option("--rule", help="Only this rule: a detection rule id, or a reason code such as ratelimit.exceeded."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object a line instead of a table.")]

DECISIONS = ("allowed", "monitored", "blocked")
#: ``tail`` looks this far back at each poll: records reach the store in each worker's own
#: batches, so one of another worker may arrive after a later one was printed.
TAIL_LOOKBACK = 30.0
_COLUMNS = ("time", "status", "decision", "method", "path", "route", "consumer", "client", "ms", "stage/rule")

logs_app = typer.Typer(name="logs", help="Query and follow the audit log (audit: in the configuration).",
                       no_args_is_help=True)


def _query(consumer: str | None, route: str | None, status: int | None, decision: str | None, rule: str | None,
           since: datetime | None = None, until: datetime | None = None) -> AuditQuery:
    from bastion.audit.storage import AuditQuery

    if decision is not None and decision not in DECISIONS:
        raise typer.BadParameter(f"{decision!r} is not a decision; use one of {', '.join(DECISIONS)}",
                                 param_hint="--decision")
    return AuditQuery(since, until, consumer, route, status, decision, rule)


def _line(record: AuditRecord) -> tuple[str, ...]:
    why = f"{record.stage}/{record.rule}" if record.stage else (record.reason or "-")
    return (
        record.ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{record.ts.microsecond // 1000:03d}Z",
        str(record.status),
        record.decision,
        record.method,
        record.path or "-",
        record.route or "-",
        record.consumer or "-",
        record.client,
        f"{record.latency_ms:.1f}",
        why,
    )


def _print(records: Sequence[AuditRecord], as_json: bool, *, header: bool) -> None:
    if as_json:
        import orjson

        from bastion.audit.storage import row_dict

        for record in records:
            out.print(orjson.dumps(row_dict(record)).decode(), markup=False, highlight=False, soft_wrap=True)
    elif records or header:
        # Aligned columns, never wrapped or cut to the terminal's width: they stay greppable.
        rows = [_line(r) for r in records]
        shown = [_COLUMNS, *rows] if header else rows
        widths = [max(len(row[i]) for row in shown) for i in range(len(_COLUMNS))]
        for row in shown:
            out.print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), markup=False)
    out.file.flush()


def _print_dicts(records: Sequence[dict[str, Any]], as_json: bool, *, header: bool = True) -> None:
    """Records as the admin API gives them (the JSON lines' fields), as :func:`_print` prints."""
    if as_json:
        import orjson

        for record in records:
            out.print(orjson.dumps(record).decode(), markup=False, highlight=False, soft_wrap=True)
        out.file.flush()
        return
    rows = [(r["time"], str(r["status"]), r["decision"], r["method"], r["path"] or "-", r["route"] or "-",
             r["consumer"] or "-", r["client"], f"{r['latency_ms']:.1f}",
             f"{r['stage']}/{r['rule']}" if r["stage"] else (r["reason"] or "-")) for r in records]
    shown = [_COLUMNS, *rows]
    widths = [max(len(row[i]) for row in shown) for i in range(len(_COLUMNS))]
    for row in shown if header else rows:
        out.print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), markup=False)
    out.file.flush()


@logs_app.command("query")
def query(
    since: Annotated[str, typer.Option("--since", help="From this long ago: 1h, 30m, 7d, 2w.")] = "1h",
    until: Annotated[
        str | None, typer.Option("--until", help="Up to this long ago (default: now), such as 10m.")
    ] = None,
    consumer: ConsumerOpt = None,
    route: RouteOpt = None,
    status: StatusOpt = None,
    decision: DecisionOpt = None,
    rule: RuleOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000, help="At most this many (the newest).")] = 100,
    as_json: JsonOpt = False,
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The audit records of a time range (the last hour by default), oldest first."""
    from bastion.store.models import AuditRecord

    now = datetime.now(UTC)
    start = now - parse_duration(since, "--since")
    end = now - parse_duration(until, "--until") if until else None
    selection = _query(consumer, route, status, decision, rule, start, end).select()
    api = remote(admin_url, token)
    if api is not None:
        from bastion.cli.progress import counting

        with counting("reading the audit log", limit, quiet=as_json) as advance:
            found = api.items("/api/v1/audit-log", {
                "since": start.isoformat(), "until": end.isoformat() if end else None, "consumer": consumer,
                "route": route, "status": status, "decision": decision, "rule": rule}, limit=limit,
                progress=advance)
        found.reverse()
        _print_dicts(found, as_json)
        if not as_json:
            out.print(f"{len(found)} record(s)", markup=False, style="dim")
        return
    with configured_store(config) as store, store.read() as session:
        newest = list(session.scalars(selection.order_by(AuditRecord.ts.desc(), AuditRecord.id.desc()).limit(limit)))
    newest.reverse()
    _print(newest, as_json, header=True)
    if not as_json:
        out.print(f"{len(newest)} record(s)", markup=False, style="dim")


@logs_app.command("tail")
def tail(
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, max=10_000, help="Records shown first.")] = 10,
    consumer: ConsumerOpt = None,
    route: RouteOpt = None,
    status: StatusOpt = None,
    decision: DecisionOpt = None,
    rule: RuleOpt = None,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, max=60.0, help="Seconds between looks at the store.")
    ] = 0.5,
    as_json: JsonOpt = False,
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The last records, then every new one as it is stored, until interrupted (Ctrl-C)."""
    from datetime import timedelta

    from bastion.store.models import AuditRecord

    api = remote(admin_url, token)
    if api is not None:
        filters = {"consumer": consumer, "route": route, "status": status, "decision": decision, "rule": rule}
        _tail_remote(api, filters, lines, interval, as_json)
        return
    selection = _query(consumer, route, status, decision, rule).select()
    order = (AuditRecord.ts, AuditRecord.id)
    seen: dict[str, datetime] = {}
    with configured_store(config) as store:
        with store.read() as session:
            last = list(session.scalars(selection.order_by(AuditRecord.ts.desc(), AuditRecord.id.desc()).limit(lines)))
        last.reverse()
        _print(last, as_json, header=True)
        seen.update((r.id, r.ts) for r in last)
        cursor = datetime.now(UTC) - timedelta(seconds=TAIL_LOOKBACK)
        try:
            while True:
                time.sleep(interval)
                with store.read() as session:
                    fresh = [r for r in session.scalars(selection.where(AuditRecord.ts >= cursor).order_by(*order))
                             if r.id not in seen]
                if fresh:
                    _print(fresh, as_json, header=False)
                    seen.update((r.id, r.ts) for r in fresh)
                cursor = datetime.now(UTC) - timedelta(seconds=TAIL_LOOKBACK)
                seen = {k: v for k, v in seen.items() if v >= cursor}
        except KeyboardInterrupt:
            raise typer.Exit(0) from None


def _tail_remote(api: Remote, filters: dict[str, Any], lines: int, interval: float, as_json: bool) -> None:
    """``logs tail`` through the admin API: the last ``lines`` records of the retention (the
    API's ``since`` reaches back as far as asked), then each poll's records newer than the
    look-back window that were not printed yet."""
    from datetime import timedelta

    def since(moment: datetime) -> dict[str, Any]:
        return {**filters, "since": moment.isoformat()}

    last = api.items("/api/v1/audit-log", since(datetime(1970, 1, 1, tzinfo=UTC)), limit=lines) if lines else []
    last.reverse()
    _print_dicts(last, as_json)
    seen: dict[str, float] = {str(r["id"]): float(r["ts"]) for r in last}
    cursor = datetime.now(UTC) - timedelta(seconds=TAIL_LOOKBACK)
    try:
        while True:
            time.sleep(interval)
            fresh = [r for r in reversed(api.items("/api/v1/audit-log", since(cursor))) if str(r["id"]) not in seen]
            if fresh:
                _print_dicts(fresh, as_json, header=False)
                seen.update((str(r["id"]), float(r["ts"])) for r in fresh)
            cursor = datetime.now(UTC) - timedelta(seconds=TAIL_LOOKBACK)
            seen = {k: v for k, v in seen.items() if v >= cursor.timestamp()}
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
