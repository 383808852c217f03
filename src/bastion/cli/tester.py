"""``bastion audit``, ``bastion scan`` and ``bastion docs``: the tester's commands.

Registered on the main app by :func:`register`; the tester itself is imported inside the
commands so the rest of the command line starts fast.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bastion.cli.output import err, out, print_config_error

if TYPE_CHECKING:
    from bastion.tester.audit import AuditResult, Severity
    from bastion.tester.scan.engine import ScanPlan, ScanResult


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


#: One exit rule for ``audit`` and ``scan``: a finding that is a flaw (low or worse) fails the run; info
#: findings are advice and fail it only when asked (``--fail-on info``). Fail closed in CI without a flag.
DEFAULT_FAIL_ON = FailOn.low
FAIL_ON_HELP = "Exit 1 when a finding of this severity or worse exists ('none': never)."


def fails(highest: Severity | None, fail_on: FailOn) -> bool:
    """Whether a run whose worst finding is ``highest`` (None: no finding) exits 1 under ``fail_on``."""
    from bastion.tester.audit import Severity

    return fail_on is not FailOn.none and highest is not None and highest >= Severity.parse(fail_on.value)


SEVERITY_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}


class _Graded(Protocol):
    @property
    def severity(self) -> Severity: ...


G = TypeVar("G", bound=_Graded)


def severity_groups(findings: Sequence[G], console: Console) -> Iterator[list[G]]:
    """Findings grouped by severity, worst first, each group after its printed heading."""
    from bastion.tester.audit import Severity

    for sev in sorted(Severity, reverse=True):
        group = [f for f in findings if f.severity == sev]
        if group:
            console.print()
            console.print(f"{sev.label.upper()} ({len(group)})", style=SEVERITY_STYLE[sev.label], markup=False)
            yield group


def render_text(result: AuditResult, console: Console) -> None:
    """Findings grouped by severity (one aligned line each, never wrapped, so they stay greppable),
    then a table of per-rule counts, the fix advice, and the score."""
    from bastion.tester.audit.report import rule_counts, score, severity_counts

    console.print(f"bastion audit of {', '.join(result.files)}", markup=False, highlight=False)
    width = max((len(str(f.location)) for f in result.findings), default=0)
    for group in severity_groups(result.findings, console):
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
    fail_on: Annotated[FailOn, typer.Option("--fail-on", help=FAIL_ON_HELP)] = DEFAULT_FAIL_ON,
) -> None:
    """Review an OpenAPI document (and a gateway config) for API security problems, without sending requests."""
    from bastion.config import ConfigError
    from bastion.tester.audit import audit_files
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
    if fails(worst(result.findings), fail_on):
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


class ScanFormat(enum.StrEnum):
    text = "text"
    html = "html"
    json = "json"
    sarif = "sarif"
    junit = "junit"


def looks_like_production(host: str) -> bool:
    """Whether ``host`` may be a production system: anything but loopback, private addresses and
    ``localhost``/``*.localhost``/``*.test``/``*.local``/``*.example``/``*.invalid`` names, and any name containing
    ``prod`` or starting with ``api.``."""
    import ipaddress

    name = host.strip("[]").lower().rstrip(".")
    if "prod" in name or name.startswith("api.") or ".api." in name:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        safe_suffixes = (".localhost", ".test", ".local", ".example", ".invalid")
        return not (name == "localhost" or name.endswith(safe_suffixes))
    return not (address.is_loopback or address.is_private or address.is_link_local)


def render_scan_text(result: ScanResult, console: Console) -> None:
    """Findings by severity (one line each, then the curl command), per-check counts, skips and a summary."""
    from bastion.tester.scan.report import Redactor, curl, reproducers, severity_counts

    redactor = Redactor(result.secrets)
    console.print(f"bastion scan of {result.base_url} ({result.spec_file})", markup=False, highlight=False)
    for group in severity_groups(result.findings, console):
        for f in group:
            line = Text("  ")
            line.append(f"{f.check.id:<22}", style="bold")
            line.append(f"{f.check.category:<11}{f.check.cwe_id:<9}{f.target}  ")
            line.append(redactor.text(f.message))
            console.print(line)
            if f.evidence:
                for shown in reproducers(f):  # two for a comparison (a true/false pair)
                    console.print("    " + curl(shown, redactor), style="dim", markup=False, highlight=False)
            for proof in f.proofs:  # the same flaw shown by another check (one root cause)
                console.print(f"    also shown by {proof.check.id} on {proof.target}: {redactor.text(proof.message)}",
                              markup=False, highlight=False)
                for shown in reproducers(proof) if proof.evidence else []:
                    console.print("      " + curl(shown, redactor), style="dim", markup=False, highlight=False)
    console.print()
    if result.findings:
        console.print("Fix advice:", style="bold")
        for check_id, advice in dict.fromkeys((f.check.id, f.check.advice) for f in result.findings):
            console.print(f"  {check_id}: {advice}", markup=False)
    else:
        console.print("No findings.", style="green")
    # Every check ends as a finding, a pass or a skip with its reason: say which passed.
    found = {f.check.id for f in result.every_finding}
    skipped = {s.check.id for s in result.skips}
    passed = [c.id for c in result.ran if c.id not in found and c.id not in skipped]
    if passed:
        console.print(f"passed (ran, nothing found): {', '.join(passed)}", style="dim", markup=False)
    for skip in result.skips:
        console.print(f"skipped {skip.check.id}: {skip.reason}", style="dim", markup=False)
    for verdict in result.held_back:
        console.print(f"held back {verdict.op.label}: {verdict.reason}", style="dim", markup=False)
    for note in result.notes:
        console.print(f"note: {note}", style="dim", markup=False)
    console.print(f"identities: {', '.join(result.identities) or 'none (anonymous requests only)'}",
                  markup=False, highlight=False)
    render_health(result, console)
    summary = ", ".join(f"{n} {label}" for label, n in severity_counts(result.findings).items() if n)
    console.print(
        f"{len(result.findings)} finding(s){': ' if summary else ''}{summary}; {len(result.ran)} check(s) ran, "
        f"{len(result.skips)} skip(s); {result.exchanges} request(s) in {result.duration:.1f}s",
        style="bold",
        markup=False,
    )


def render_health(result: ScanResult, console: Console) -> None:
    """The health watch's verdict: one green line, or what broke and after which check, in bold red."""
    from bastion.tester.scan.health import summary

    if not result.health:
        console.print(f"target health: {summary(result.health)} ({result.health_checks} check(s))", style="green",
                      markup=False, highlight=False)
        return
    for event in result.health:
        stopped = " - the scan stopped; the remaining checks did not run" if event.stopped else ""
        console.print(f"TARGET BROKEN after {event.after}: {event.message}{stopped}", style="bold red",
                      markup=False, highlight=False)


def render_plan(plan: ScanPlan, console: Console) -> None:
    """``--dry-run``: the safety verdict of every operation, the logins, the discovery requests and the checks."""
    console.print(f"bastion scan plan for {plan.base_url} ({plan.spec_file}); nothing was sent", markup=False,
                  highlight=False)
    console.print()
    console.print("Operations:", style="bold")
    for verdict in plan.verdicts:
        console.print(f"  {verdict.safety:<12}{verdict.op.label}  ({verdict.reason})", markup=False, highlight=False)
    if plan.logins:
        console.print("Logins:", style="bold")
        for name, label, media in plan.logins:
            console.print(f"  {name}: {label} ({media})", markup=False, highlight=False)
    console.print("Discovery requests:", style="bold")
    for who, method, path, body in plan.discovery:
        console.print(f"  {method} {path} as {who}" + (f"  {body}" if body else ""), markup=False, highlight=False)
    console.print("Checks that would run:", style="bold")
    for info in plan.checks:
        console.print(f"  {info.id}: {info.checks}", markup=False, highlight=False)
    for skip in plan.skips:
        console.print(f"skipped {skip.check.id}: {skip.reason}", style="dim", markup=False)


def scan(
    spec: Annotated[Path, typer.Option("--spec", help="The API's OpenAPI 3.0/3.1 document.", show_default=False)],
    url: Annotated[str, typer.Option("--url", help="Base URL of the running API (only this origin is requested).",
                                     show_default=False)],
    auth: Annotated[Path | None, typer.Option("--auth", help="Identities file (YAML/JSON): users, admin, logins.")]
    = None,
    header: Annotated[list[str] | None, typer.Option(
        "--header", "-H", help="'Name: value' credential header for a single static user (repeatable).")] = None,
    max_rps: Annotated[float, typer.Option("--max-rps", min=0.1, help="Requests per second, at most.")] = 20.0,
    allow_destructive: Annotated[bool, typer.Option(
        "--allow-destructive", help="Also run checks that modify or delete data (DELETE, password changes).")]
    = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before scanning a production-looking host.")]
    = False,
    insecure: Annotated[bool, typer.Option("--insecure", help="Do not verify the API's TLS certificate.")] = False,
    ca_file: Annotated[Path | None, typer.Option("--ca-file", help="Trust this CA bundle for the API's TLS.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each response.")] = 10.0,
    fmt: Annotated[ScanFormat, typer.Option("--format", "-f", help="Report format.")] = ScanFormat.text,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report here (default: stdout).")]
    = None,
    fail_on: Annotated[FailOn, typer.Option("--fail-on", help=FAIL_ON_HELP)] = DEFAULT_FAIL_ON,
    check: Annotated[list[str] | None, typer.Option("--check", help="Run only this check ID (repeatable).")] = None,
    include: Annotated[list[str] | None, typer.Option(
        "--include", help="Call this held-back operation after all: an operationId or 'METHOD /path' (repeatable).")]
    = None,
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude", help="Never call this operation: an operationId or 'METHOD /path' (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print what the scan would call (operations, logins, discovery, checks) and send nothing.")]
    = False,
    keep_going: Annotated[bool, typer.Option(
        "--keep-going", help="Warn instead of stopping when the target breaks during the scan.")] = False,
    no_register: Annotated[bool, typer.Option(
        "--no-register", help="With a single user identity, do not register a throwaway second user through the "
        "API's sign-up.")] = False,
) -> None:
    """Attack a running API from its OpenAPI document and report OWASP API Top 10 findings (active testing)."""
    import sys
    from urllib.parse import urlsplit

    from rich.markup import escape

    from bastion.config import ConfigError
    from bastion.tester.audit.context import load_spec
    from bastion.tester.scan.engine import ScanError, plan_scan, run_scan
    from bastion.tester.scan.identities import IdentityConfig, identity_from_headers, load_identities, load_scope
    from bastion.tester.scan.interface import ScanOptions
    from bastion.tester.scan.registry import ALL_CHECKS, BY_ID
    from bastion.tester.scan.report import to_html, to_json, to_junit, to_sarif, worst

    def fail(message: str) -> typer.Exit:
        err.print(f"[bold red]error:[/] {escape(message)}")
        return typer.Exit(2)

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail(f"--url must be an http:// or https:// URL with a host, got {url!r}")
    selected = ALL_CHECKS
    if check:
        unknown = [c for c in check if c not in BY_ID]
        if unknown:
            raise fail(f"unknown check(s): {', '.join(unknown)}; known: {', '.join(BY_ID)}")
        selected = [BY_ID[c] for c in check]
    identities: list[IdentityConfig] = []
    included, excluded = list(include or []), list(exclude or [])
    try:
        if auth is not None:
            identities = load_identities(auth)
            file_include, file_exclude = load_scope(auth)
            included, excluded = [*file_include, *included], [*file_exclude, *excluded]
        if header:
            identities.append(identity_from_headers(header, name="user" if not identities else "header-user"))
    except ConfigError as exc:
        print_config_error(exc)
        raise typer.Exit(2) from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    options = ScanOptions(base_url=url.rstrip("/"), max_rps=max_rps, allow_destructive=allow_destructive,
                          timeout=timeout, ca_file=str(ca_file) if ca_file else None, insecure=insecure,
                          include=tuple(included), exclude=tuple(excluded), stop_when_broken=not keep_going,
                          register_users=not no_register)
    if dry_run:
        try:
            plan = plan_scan(load_spec(spec), options, identities, selected)
        except ConfigError as exc:
            print_config_error(exc)
            raise typer.Exit(2) from None
        except ScanError as exc:
            raise fail(str(exc)) from None
        render_plan(plan, out)
        return
    if looks_like_production(parts.hostname) and not yes:
        if not sys.stdin.isatty():
            raise fail(f"{parts.hostname} looks like a production host; pass --yes to scan it (standard input is "
                       "not interactive, so the scan cannot ask)")
        if not typer.confirm(f"{parts.hostname} looks like a production host. Scan it?", default=False, err=True):
            raise typer.Exit(2)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # Progress on a terminal only: piped or redirected stderr stays quiet.
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("starting", total=1)

        def progress(phase: str, done: int, total: int, label: str) -> None:
            bar.update(task, description=escape(f"{phase}: {label}" if label else phase), completed=done,
                       total=total)

        try:
            result = run_scan(spec, options, identities, checks=selected, progress=progress)
        except ConfigError as exc:
            bar.stop()
            print_config_error(exc)
            raise typer.Exit(2) from None
        except ScanError as exc:
            bar.stop()
            raise fail(str(exc)) from None
    if fmt is ScanFormat.text:
        if output is None:
            render_scan_text(result, out)
        else:
            with output.open("w", encoding="utf-8") as handle:
                render_scan_text(result, Console(file=handle, highlight=False, soft_wrap=True, no_color=True,
                                                 width=160))
    else:
        if fmt is ScanFormat.json:
            text = json.dumps(to_json(result), indent=2, ensure_ascii=False) + "\n"
        elif fmt is ScanFormat.sarif:
            text = json.dumps(to_sarif(result), indent=2, ensure_ascii=False) + "\n"
        elif fmt is ScanFormat.junit:
            text = to_junit(result)
        else:
            text = to_html(result)
        if output is None:
            out.file.write(text)
        else:
            output.write_text(text, encoding="utf-8")
    if output is not None:
        err.print(f"wrote {output} ({len(result.findings)} finding(s))", markup=False)
    stopped = result.stopped
    if stopped is not None and (output is not None or fmt is not ScanFormat.text):
        err.print(f"warning: the target broke after {stopped.after} ({stopped.message}); the scan stopped",
                  style="bold red", markup=False, highlight=False)
    if fails(worst(result.findings), fail_on):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``audit``, ``scan`` and ``docs`` to the command line."""
    app.command("audit")(audit)
    app.command("scan")(scan)
    app.command("docs")(docs)
