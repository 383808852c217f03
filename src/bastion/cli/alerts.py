"""``bastion alerts``: the threat detectors' alert history, read from the store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.cli.output import out
from bastion.cli.storeaccess import configured_store, parse_duration

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


def alerts(
    since: Annotated[str, typer.Option("--since", help="From this long ago: 1h, 30m, 7d, 2w.")] = "24h",
    detector: Annotated[
        str | None, typer.Option("--detector", help="Only this detector's alerts (brute_force, scanner...).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000, help="At most this many (the newest).")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line instead of a table.")] = False,
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Configuration file (its `store:` says where the alerts are).")
    ] = Path("bastion.yaml"),
) -> None:
    """The threat detectors' alerts of a time range (the last 24 hours by default), oldest first."""
    from sqlalchemy import select

    from bastion.store.models import AlertRecord

    start = datetime.now(UTC) - parse_duration(since, "--since")
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
        rows = [_COLUMNS, *(_line(a) for a in newest)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
        for row in rows:
            cells = [v.ljust(w) for v, w in zip(row[:-1], widths, strict=True)]
            out.print("  ".join([*cells, row[-1]]).rstrip(), markup=False)
        out.print(f"{len(newest)} alert(s)", markup=False, style="dim")
    out.file.flush()
