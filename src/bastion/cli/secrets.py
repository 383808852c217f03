"""``bastion secrets new-key|encrypt``: values for ``bastion.yaml`` that are not secrets in
plain text.

``encrypt`` reads the secret from standard input (never an argument: arguments end up in
shell history and in ``ps``) and prints its ``enc:v1:...`` form, encrypted with the master
key from ``BASTION_MASTER_KEY`` or ``BASTION_MASTER_KEY_FILE``; the gateway decrypts it when
it reads the configuration, with the same key in its environment.
"""

from __future__ import annotations

import sys

import typer

from bastion.cli.output import err

secrets_app = typer.Typer(
    name="secrets", help="Encrypt secrets for the configuration with the master key.", no_args_is_help=True
)


@secrets_app.command("new-key")
def new_key() -> None:
    """Print a new master key (256 random bits): keep it in a secret store, give it to the
    gateway as BASTION_MASTER_KEY (or in a file named by BASTION_MASTER_KEY_FILE)."""
    from bastion.config.secrets import new_master_key

    print(new_master_key())


@secrets_app.command()
def encrypt() -> None:
    """Read a secret from standard input (one trailing newline dropped) and print it as an
    enc:v1: value for bastion.yaml (e.g. `printf %s "$PW" | bastion secrets encrypt`)."""
    from bastion.config.secrets import MASTER_KEY_ENV, MASTER_KEY_FILE_ENV, MasterKeyError, encrypt, load_master_key

    try:
        master = load_master_key()
    except MasterKeyError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if master is None:
        err.print(f"[red]error:[/] no master key: set {MASTER_KEY_ENV} (or {MASTER_KEY_FILE_ENV}); "
                  "`bastion secrets new-key` makes one")
        raise typer.Exit(2)
    data = sys.stdin.buffer.read()
    value = data[:-1] if data.endswith(b"\n") else data
    if value.endswith(b"\r"):
        value = value[:-1]
    if not value:
        err.print("[red]error:[/] nothing to encrypt: give the secret on standard input")
        raise typer.Exit(2)
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        err.print("[red]error:[/] the secret is not UTF-8 text")
        raise typer.Exit(2) from None
    print(encrypt(master, text))
