"""``bastion config export|import``: the configuration a gateway serves, through its admin
API (``--admin-url``; locally the file is the configuration, and ``bastion check`` checks it).

``export`` prints (or writes) it as YAML as declared, defaults left out and secrets masked
(an operator may); ``import FILE`` replaces the gateway's file with FILE, checked first like
``bastion check`` and then reloaded (an admin, and only where ``admin.config_writable`` lets
the admin API write the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bastion.cli.output import err, out
from bastion.cli.remote import EXIT_USAGE, AdminUrlOpt, JsonOpt, Remote, TokenOpt, print_json, remote
from bastion.cli.storeaccess import fail

config_app = typer.Typer(name="config", help="Export or import a gateway's configuration through its admin API.",
                         no_args_is_help=True)


def _api(admin_url: str | None, token: str | None) -> Remote:
    api = remote(admin_url, token)
    if api is None:
        raise fail("bastion config works through a gateway's admin API: give --admin-url (or BASTION_ADMIN_URL); "
                   "locally the file is the configuration (bastion check -c FILE checks it)", EXIT_USAGE)
    return api


@config_app.command("export")
def export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the YAML here (default: stdout).")
    ] = None,
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The configuration the gateway serves, as YAML (secrets masked as ********)."""
    answer = _api(admin_url, token).call("GET", "/api/v1/config")
    if as_json:
        print_json(answer)
        return
    if output is None:
        out.file.write(answer["yaml"])
        out.file.flush()
        return
    output.write_text(answer["yaml"], encoding="utf-8")
    err.print(f"wrote {output} (from {answer['path']}; masked values must be put back before an import)",
              markup=False)


@config_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="The new configuration file (YAML).", exists=True, dir_okay=False)],
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace the gateway's configuration file with FILE: checked, written, then reloaded."""
    from bastion.cli.progress import working

    api = _api(admin_url, token)
    text = file.read_text(encoding="utf-8")
    with working(f"checking, writing and reloading {file} on {api.url}", quiet=as_json):
        answer = api.call("POST", "/api/v1/config", {"yaml": text})
    if as_json:
        print_json(answer)
        return
    out.print(f"imported {file} as {answer['path']} (sha256 {answer['written']['sha256'][:12]}…) and reloaded it",
              markup=False)
