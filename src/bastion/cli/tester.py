"""``bastion audit`` and ``bastion docs``: the tester's commands.

Registered on the main app by :func:`register`; the tester itself is imported inside the
commands so the rest of the command line starts fast.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from bastion.tester.audit import AuditResult


class Format(enum.StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"


class FailOn(enum.StrEnum):
    none = "none"
    info = "info"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


SEVERITY_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}


def render_text(result: AuditResult, console: Console) -> None:
    """Findings grouped by severity (one aligned line each, never wrapped, so they stay greppable),
    then a table of per-rule counts, the fix advice, and the score."""
    from bastion.tester.audit import Severity
    from bastion.tester.audit.report import rule_counts, score, severity_counts

    console.print(f"bastion audit of {', '.join(result.files)}", markup=False, highlight=False)
    width = max((len(str(f.location)) for f in result.findings), default=0)
    for sev in sorted(Severity, reverse=True):
        group = [f for f in result.findings if f.severity == sev]
        if not group:
            continue
        console.print()
        console.print(f"{sev.label.upper()} ({len(group)})", style=SEVERITY_STYLE[sev.label], markup=False)
        for f in group:
            line = Text("  ")
            line.append(f"{f.rule.id:<14}", style="bold")
            line.append(f"{f.location!s:<{width}}  ")
            line.append(f.message)
            line.append(f"  {f.location.pointer}", style="dim")
            console.print(line)
    counts = rule_counts(result.findings)
    console.print()
    if counts:
        table = Table(title="Findings per rule", title_justify="left")
        table.add_column("Rule", no_wrap=True)
        table.add_column("Severity", no_wrap=True)
        table.add_column("OWASP", no_wrap=True)
        table.add_column("CWE", no_wrap=True)
        table.add_column("Count", justify="right", no_wrap=True)
        table.add_column("Title")
        fired = [rule for rule in result.ran if counts.get(rule.id)]
        fired.sort(key=lambda r: (-r.severity, r.id))
        for rule in fired:
            table.add_row(
                rule.id,
                Text(rule.severity.label, style=SEVERITY_STYLE[rule.severity.label]),
                rule.category,
                rule.cwe_id,
                str(counts[rule.id]),
                rule.title,
            )
        console.print(table)
        console.print("Fix advice:", style="bold")
        for rule in fired:
            console.print(f"  {rule.id}: {rule.fix}", markup=False)
    else:
        console.print("No findings.", style="green")
    reasons: dict[str, list[str]] = {}
    for skipped in result.skipped:
        reasons.setdefault(skipped.reason, []).append(skipped.rule.id)
    for reason, ids in reasons.items():
        console.print(f"skipped {len(ids)} rule(s) ({', '.join(ids)}): {reason}", style="dim", markup=False)
    summary = ", ".join(f"{n} {label}" for label, n in severity_counts(result.findings).items() if n)
    console.print(
        f"Score: {score(result.findings)}/100 ({len(result.findings)} finding(s){': ' if summary else ''}"
        f"{summary}; {len(result.ran)} rule(s) ran, {len(result.skipped)} skipped)",
        style="bold",
        markup=False,
    )


def audit(
    spec: Annotated[Path, typer.Argument(help="The OpenAPI 3.0/3.1 document to review.", show_default=False)],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Also review this gateway configuration (bastion.yaml).")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.text,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report here (default: stdout).")
    ] = None,
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Exit 1 when a finding of this severity or worse exists.")
    ] = FailOn.none,
) -> None:
    """Review an OpenAPI document (and a gateway config) for API security problems, without sending requests."""
    from bastion.cli.app import err, out, print_config_error
    from bastion.config import ConfigError
    from bastion.tester.audit import Severity, audit_files
    from bastion.tester.audit.report import to_json, to_sarif, worst

    try:
        result = audit_files(spec, config)
    except ConfigError as exc:
        print_config_error(exc)
        raise typer.Exit(2) from None
    if fmt is Format.text:
        if output is None:
            render_text(result, out)
        else:
            with output.open("w", encoding="utf-8") as handle:
                render_text(result, Console(file=handle, highlight=False, soft_wrap=True, no_color=True, width=160))
    else:
        data = to_json(result) if fmt is Format.json else to_sarif(result)
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        if output is None:
            out.file.write(text)
        else:
            output.write_text(text, encoding="utf-8")
    if output is not None:
        err.print(f"wrote {output} ({len(result.findings)} finding(s))", markup=False)
    if fail_on is not FailOn.none:
        threshold = Severity.parse(fail_on.value)
        highest = worst(result.findings)
        if highest is not None and highest >= threshold:
            raise typer.Exit(1)


def docs(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Gateway configuration whose APIs to document.")
    ] = Path("bastion.yaml"),
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write index.md and index.html to.")] = Path("site"),
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="URL clients use to reach the gateway (default: from listen host and port)."),
    ] = None,
) -> None:
    """Write security documentation for the API's consumers (Markdown and self-contained HTML)."""
    from bastion.cli.app import err, out, print_config_error
    from bastion.config import ConfigError, load_config
    from bastion.tester.docs import build_site, write_site

    try:
        loaded = load_config(config)
    except ConfigError as exc:
        print_config_error(exc)
        raise typer.Exit(2) from None
    site = build_site(loaded, base_url=base_url)
    try:
        files = write_site(site, out_dir)
    except OSError as exc:
        err.print(f"error: cannot write to {out_dir}: {exc.strerror}", markup=False)
        raise typer.Exit(1) from None
    out.print(f"wrote {', '.join(str(f) for f in files)} ({len(site.operations)} operation(s))", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``audit`` and ``docs`` to the command line."""
    app.command("audit")(audit)
    app.command("docs")(docs)
