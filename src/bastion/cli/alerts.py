"""``bastion alerts [list]``: the threat detectors' alert history, read from the store (or
through the admin API); ``bastion alerts ack|resolve ID``: set an alert's status."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.cli.output import out
from bastion.cli.remote import AdminUrlOpt, TokenOpt, print_json, remote
from bastion.cli.storeaccess import configured_store, fail, parse_duration

if TYPE_CHECKING:
    from bastion.store.models import AlertRecord

_COLUMNS = ("last seen", "severity", "detector", "action", "count", "subject", "summary")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _line(alert: AlertRecord) -> tuple[str, ...]:
    subject = " ".join(f"{k}={v}" for k, v in alert.subject.items())
    return (_iso(alert.last_seen), alert.severity, alert.detector, alert.action, str(alert.count), subject,
            alert.summary)


def _document(alert: AlertRecord) -> dict[str, object]:
    return {
        "id": alert.id, "detector": alert.detector, "severity": alert.severity, "action": alert.action,
        "summary": alert.summary, "subject": alert.subject, "count": alert.count,
        "window_seconds": alert.window_seconds, "first_seen": _iso(alert.first_seen),
        "last_seen": _iso(alert.last_seen), "instance": alert.instance,
    }


SinceOpt = Annotated[str, typer.Option("--since", help="From this long ago: 1h, 30m, 7d, 2w.")]
DetectorOpt = Annotated[
    str | None, typer.Option("--detector", help="Only this detector's alerts (brute_force, scanner...).")
]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, max=100_000, help="At most this many (the newest).")]
JsonLinesOpt = Annotated[bool, typer.Option("--json", help="One JSON object a line instead of a table.")]
ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="Configuration file (its `store:` says where the alerts are).")
]
AlertArg = Annotated[str, typer.Argument(help="The alert's id (`bastion alerts --json` shows it).")]

alerts_app = typer.Typer(name="alerts", help="The threat detectors' alerts: list them (the default), "
                         "acknowledge or resolve one.")


@alerts_app.callback(invoke_without_command=True)
def alerts(
    ctx: typer.Context,
    since: SinceOpt = "24h",
    detector: DetectorOpt = None,
    limit: LimitOpt = 100,
    as_json: JsonLinesOpt = False,
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The threat detectors' alerts of a time range (the last 24 hours by default), oldest first."""
    if ctx.invoked_subcommand is None:
        list_alerts(since, detector, limit, as_json, config, admin_url, token)


@alerts_app.command("list")
def list_alerts(
    since: SinceOpt = "24h",
    detector: DetectorOpt = None,
    limit: LimitOpt = 100,
    as_json: JsonLinesOpt = False,
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The threat detectors' alerts of a time range (the last 24 hours by default), oldest first."""
    from sqlalchemy import select

    from bastion.store.models import AlertRecord

    start = datetime.now(UTC) - parse_duration(since, "--since")
    api = remote(admin_url, token)
    if api is not None:
        found = api.items("/api/v1/alerts", {"since": start.isoformat(), "detector": detector}, limit=limit)
        found.reverse()
        if as_json:
            for item in found:
                print_json(item)
        else:
            _table([(a["last_seen"][:23] + "Z", a["severity"], a["detector"], a["action"], str(a["count"]),
                     " ".join(f"{k}={v}" for k, v in a["subject"].items()), a["summary"]) for a in found])
        out.file.flush()
        return
    query = select(AlertRecord).where(AlertRecord.last_seen >= start)
    if detector is not None:
        query = query.where(AlertRecord.detector == detector)
    with configured_store(config) as store, store.read() as session:
        newest = list(session.scalars(query.order_by(AlertRecord.last_seen.desc(), AlertRecord.id).limit(limit)))
    newest.reverse()
    if as_json:
        import orjson

        for alert in newest:
            out.print(orjson.dumps(_document(alert)).decode(), markup=False, highlight=False, soft_wrap=True)
    else:
        _table([_line(a) for a in newest])
    out.file.flush()


def _table(lines: list[tuple[str, ...]]) -> None:
    rows = [_COLUMNS, *lines]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    for row in rows:
        cells = [v.ljust(w) for v, w in zip(row[:-1], widths, strict=True)]
        out.print("  ".join([*cells, row[-1]]).rstrip(), markup=False)
    out.print(f"{len(lines)} alert(s)", markup=False, style="dim")


def _set_status(alert_id: str, status: str, verb: str, config: Path, admin_url: str | None,
                token: str | None) -> None:
    api = remote(admin_url, token)
    if api is not None:
        from urllib.parse import quote

        api.call("POST", f"/api/v1/alerts/{quote(alert_id, safe='')}/{verb}")
        out.print(f"alert {alert_id} is {status}", markup=False)
        return
    import getpass

    from bastion.store import adminaudit, alertstate
    from bastion.store.errors import StoreError

    who = f"cli:{getpass.getuser()}"
    with configured_store(config) as store, store.write() as session:
        try:
            _, before = alertstate.set_status(session, alert_id, status, who)
        except StoreError as exc:
            raise fail(str(exc)) from None
        adminaudit.record(session, actor=who, via="cli", action=f"alert.{verb}", target=f"alert:{alert_id}",
                          source="cli", before={"status": before}, after={"status": status})
    out.print(f"alert {alert_id} is {status}", markup=False)


@alerts_app.command("ack")
def ack(alert_id: AlertArg, config: ConfigOpt = Path("bastion.yaml"), admin_url: AdminUrlOpt = None,
        token: TokenOpt = None) -> None:
    """Acknowledge an alert (someone is on it)."""
    _set_status(alert_id, "acknowledged", "acknowledge", config, admin_url, token)


@alerts_app.command("resolve")
def resolve(alert_id: AlertArg, config: ConfigOpt = Path("bastion.yaml"), admin_url: AdminUrlOpt = None,
            token: TokenOpt = None) -> None:
    """Resolve an alert."""
    _set_status(alert_id, "resolved", "resolve", config, admin_url, token)
