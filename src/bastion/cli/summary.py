"""``bastion summary``: a gateway's requests, error rate, blocked rate and latency
percentiles, from its admin API (``--admin-url``): over the last minutes of the audit log
when it is kept in the store, else since the gateway started (from its counters)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bastion.cli.output import out
from bastion.cli.remote import EXIT_USAGE, AdminUrlOpt, JsonOpt, TokenOpt, print_json, remote
from bastion.cli.storeaccess import fail


def summary(
    minutes: Annotated[int, typer.Option("--minutes", min=1, max=1440, help="The window (with the audit log).")] = 15,
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Requests, error and blocked rates, latency p50/p95/p99 of a running gateway."""
    api = remote(admin_url, token)
    if api is None:
        raise fail("bastion summary asks a running gateway: give --admin-url (or BASTION_ADMIN_URL)", EXIT_USAGE)
    answer: dict[str, Any] = api.call("GET", "/api/v1/metrics/summary", params={"minutes": minutes})
    if as_json:
        print_json(answer)
        return
    window = f"the last {answer['minutes']} minute(s)" if answer["source"] == "audit" else "since start"
    latency = answer["latency_ms"]
    shown = ", ".join(f"{p} {latency[p]:.1f} ms" if latency.get(p) is not None else f"{p} -"
                      for p in ("p50", "p95", "p99"))
    out.print(f"{api.url}, {window}: {answer['requests']} request(s), {answer['error_rate']:.1%} errors (5xx), "
              f"{answer['blocked_rate']:.1%} blocked; latency {shown}", markup=False)
