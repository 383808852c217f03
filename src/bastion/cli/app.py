"""``bastion``: run, check and try the gateway.

Heavy imports happen inside commands: ``serve`` must set up multiprocess metrics before
the data plane's modules are imported, and ``check`` should start fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from bastion import __version__
from bastion.cli.admin import admin_app
from bastion.cli.alerts import alerts_app
from bastion.cli.blocks import blocks_app
from bastion.cli.configcmd import config_app
from bastion.cli.consumers import consumers_app
from bastion.cli.discover import discover
from bastion.cli.keys import keys_app
from bastion.cli.logs import logs_app
from bastion.cli.oauth import register as register_oauth
from bastion.cli.output import err, out, print_config_error
from bastion.cli.routes import routes
from bastion.cli.secrets import secrets_app
from bastion.cli.summary import summary
from bastion.cli.tester import register as register_tester

app = typer.Typer(
    name="bastion",
    help="Bastion, an API security gateway driven by your OpenAPI document.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="Configuration file; relative paths inside it resolve against its folder."),
]


def _default_workers() -> int:
    return os.cpu_count() or 1


@app.command()
def serve(
    config: ConfigOpt = Path("bastion.yaml"),
    # None, not 0, stands for "one per core": click validates defaults against min/max too.
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", "-w", min=1, max=256, show_default=False, help="Worker processes (default: one per core)."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the gateway (data plane) and its admin API."""
    from bastion.cli.run import run_gateway

    raise typer.Exit(run_gateway(config, workers if workers is not None else _default_workers(), log_level))


@app.command()
def check(config: ConfigOpt = Path("bastion.yaml")) -> None:
    """Validate a configuration (and its OpenAPI documents) without starting anything."""
    from bastion.asgi.config import is_embedded, load_embedded
    from bastion.config import ConfigError, effective, load_config

    try:
        embedded = is_embedded(config)
        loaded = load_embedded(config) if embedded else load_config(config)
    except ConfigError as exc:
        print_config_error(exc)
        raise typer.Exit(2) from None
    services = len(loaded.config.services)
    mode = " for the embedded mode (bastion.asgi)" if embedded else ""
    out.print(f"[green]ok:[/] {config} is valid{mode}: {services} service(s), {len(loaded.routes)} route(s)")
    for issue in loaded.warnings:
        err.print(f"[yellow]warning:[/] {escape(str(issue))}")
    refused = 0
    for r in loaded.routes:
        methods = ",".join(sorted(r.methods - {"HEAD"})) or "HEAD"
        enforced = effective.enforced(r)
        refused += enforced.startswith("401")
        out.print(
            f"  {methods:<28} {r.path}{'*' if r.prefix else '':<2} -> {r.service}  [dim]{r.id} ({escape(enforced)})[/]"
        )
    for r in loaded.builtin_routes:
        methods = ",".join(sorted(r.methods - {"HEAD"}))
        out.print(f"  {methods:<28} {r.path}   -> built-in OAuth server  [dim]{r.id} (answered, not forwarded)[/]")
    if refused:
        out.print(
            f"[yellow]note:[/] {refused} route(s) require authentication that nothing here verifies: they answer "
            "401 until an authentication method is configured, `delegate: upstream` declares that their "
            "backend authenticates requests itself, or they are marked public (`security: []` on the OpenAPI "
            "operation, `public: true` on a hand-written route)."
        )


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Gateway port.")] = 8080,
    admin_port: Annotated[int, typer.Option(help="Admin port.")] = 9090,
    api_port: Annotated[int, typer.Option(help="Port of the demo API behind the gateway.")] = 9001,
    workers: Annotated[int, typer.Option(min=1, max=64)] = 1,
) -> None:
    """Start the demo bookstore API and Bastion in front of it, on loopback."""
    from bastion.cli.run import run_demo

    raise typer.Exit(run_demo(port, admin_port, api_port, workers))


@app.command()
def cert(
    cert: Annotated[Path, typer.Option("--cert", help="Certificate file to write (PEM).")] = Path("cert.pem"),
    key: Annotated[Path, typer.Option("--key", help="Private key file to write (PEM, mode 0600).")] = Path("key.pem"),
    host: Annotated[list[str] | None, typer.Option("--host", help="Host name or IP (repeatable).")] = None,
    days: Annotated[int, typer.Option(min=1, max=3650)] = 365,
    ca: Annotated[
        Path | None,
        typer.Option("--ca", help="Also make a throwaway CA, write its certificate here, and issue the "
                     "certificate from it (the CA's key is not kept)."),
    ] = None,
    client_auth: Annotated[
        bool, typer.Option("--client-auth", help="Also allow the certificate as an mTLS client certificate.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write a server certificate (self-signed, or issued by a throwaway CA) and key for local TLS."""
    from bastion.certs import generate_self_signed

    hosts = host or ["localhost", "127.0.0.1"]
    try:
        generate_self_signed(cert, key, hosts=hosts, days=days, overwrite=force, ca_path=ca, client_auth=client_auth)
    except FileExistsError as exc:
        err.print("[bold red]error:[/] " + escape(f"{exc.filename or exc} exists (use --force to overwrite)"))
        raise typer.Exit(1) from None
    except ValueError as exc:
        err.print("[bold red]error:[/] " + escape(f"{exc}"))
        raise typer.Exit(2) from None
    written = f"{cert}, {key} and {ca}" if ca is not None else f"{cert} and {key}"
    out.print(escape(f"wrote {written} for {', '.join(hosts)} (valid {days} days)"))
    trust = f"clients trust {ca}" if ca is not None else f"it is self-signed: clients trust {cert} itself"
    out.print(escape(trust))


@app.command()
def version() -> None:
    """Print Bastion's version."""
    out.print(__version__)


register_tester(app)  # audit, docs: the tester's commands, listed after the gateway's
app.add_typer(consumers_app)  # the store's: consumers, then their keys
app.add_typer(keys_app)
app.add_typer(logs_app)  # the audit log, read from the store
app.add_typer(alerts_app)  # the detectors' alerts: list (the default), ack, resolve
app.add_typer(blocks_app)  # the detectors' blocks, in the state backend
app.command("routes")(routes)  # every route and its effective policy
app.command("discover")(discover)  # undeclared and unused endpoints, from the audit log
register_oauth(app)  # oauth clients ..., oauth revoke: the built-in OAuth server's
app.add_typer(admin_app)  # admin create, admin token create ...: the control plane's accounts
app.add_typer(config_app)  # config export|import: a gateway's configuration, through its admin API
app.command("summary")(summary)  # a running gateway's traffic in one line, through its admin API
app.add_typer(secrets_app)  # secrets new-key, secrets encrypt: values for bastion.yaml


def main() -> None:
    app()
