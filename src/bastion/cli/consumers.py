"""``bastion consumers create|list|show|delete`` and ``bastion consumers certs add|list|remove``:
the consumers kept in the store, and the client certificates (mTLS) that identify them.

Consumers declared in the configuration (``consumers:``) are listed too, marked as such,
and cannot be changed or deleted here (nor their certificates): the file is their source.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bastion.cli.output import out
from bastion.cli.remote import AdminUrlOpt, JsonOpt, TokenOpt, print_json, remote
from bastion.cli.storeaccess import configured_store, fail, when

if TYPE_CHECKING:
    from bastion.stages.ratelimit.config import PlanLimits

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="Configuration file (its `store:` says where the store is)."),
]

consumers_app = typer.Typer(
    name="consumers", help="Create, list and delete the consumers kept in the store.", no_args_is_help=True
)


def _metadata(pairs: list[str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--metadata")
        metadata[key] = value
    return metadata


@consumers_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Unique name of the consumer.")],
    roles: Annotated[str, typer.Option("--roles", help="Roles it holds, comma-separated.")] = "",
    plan: Annotated[str | None, typer.Option("--plan", help="Its plan (rate limits, quotas).")] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", help="KEY=VALUE about it (repeatable).")
    ] = None,
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a consumer in the store (then give it keys with `bastion keys create`)."""
    import re

    from bastion.config.model import CONSUMER_NAME
    from bastion.store import consumers

    if not re.match(CONSUMER_NAME, name):
        raise fail(f"{name!r} is not a consumer name (letters, digits and _ . @ -, at most 128)", 2)
    role_list = [r.strip() for r in roles.split(",") if r.strip()]
    meta = _metadata(metadata or [])
    api = remote(admin_url, token)
    if api is not None:
        made = api.call("POST", "/api/v1/consumers", {"name": name, "roles": role_list, "plan": plan,
                                                       "metadata": meta})
        if as_json:
            print_json(made)
        else:
            out.print(f"created consumer {name} (roles: {', '.join(role_list) or '-'}) via {api.url}", markup=False)
        return
    with configured_store(config) as store, store.write() as session:
        consumers.create(session, name, roles=role_list, plan=plan, metadata=meta)
    out.print(f"created consumer {name} (roles: {', '.join(role_list) or '-'}) in {store.shown}", markup=False)


@consumers_app.command("list")
def list_(
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the consumers: name, roles, plan, where they come from, when they were made."""
    from bastion.store import consumers

    api = remote(admin_url, token)
    if api is not None:
        found = api.items("/api/v1/consumers")
        if as_json:
            for item in found:
                print_json(item)
            return
        remote_rows = [(c["name"], ",".join(c["roles"]) or "-", c["plan"] or "-", c["source"],
                        c["created_at"][:19] + "Z") for c in found]
        if not remote_rows:
            out.print(f"no consumers at {api.url}", markup=False)
            return
        table(("NAME", "ROLES", "PLAN", "SOURCE", "CREATED"), remote_rows)
        return
    with configured_store(config) as store, store.read() as session:
        rows = [
            (c.name, ",".join(c.roles) or "-", c.plan or "-", "config" if c.declared else "store", when(c.created_at))
            for c in consumers.list_all(session)
        ]
    if not rows:
        out.print(f"no consumers in {store.shown}", markup=False)
        return
    table(("NAME", "ROLES", "PLAN", "SOURCE", "CREATED"), rows)


@consumers_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The consumer to show.")],
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a consumer: roles, plan, and its plan's quotas and rate limits with what is left
    (read from the state backend: Redis; the memory backend's counts live in each worker).
    Through --admin-url: the consumer as the admin API shows it."""
    from bastion.config import load_config
    from bastion.stages.ratelimit.config import PlanLimits
    from bastion.store import consumers

    api = remote(admin_url, token)
    if api is not None:
        from urllib.parse import quote

        shown = api.call("GET", f"/api/v1/consumers/{quote(name, safe='')}")
        if as_json:
            print_json(shown)
            return
        for key in ("name", "roles", "plan", "source", "created_at"):
            value = shown[key]
            text = (",".join(value) or "-") if isinstance(value, list) else (value or "-")
            out.print(f"{(key if key != 'created_at' else 'created') + ':':<9}{text}", markup=False)
        return
    with configured_store(config) as store, store.read() as session:
        found = consumers.find(session, name)
        if found is None:
            raise fail(f"no consumer named {name!r} in {store.shown}")
        rows = [
            ("name", found.name),
            ("roles", ",".join(found.roles) or "-"),
            ("plan", found.plan or "-"),
            ("source", "config" if found.declared else "store"),
            ("created", when(found.created_at)),
        ]
        plan = found.plan
    for key, value in rows:
        out.print(f"{key + ':':<9}{value}", markup=False)
    plans = load_config(config).config.plans  # valid: configured_store loaded it
    if plan is None:
        out.print("no plan: only the routes' own rate limits apply", markup=False)
        return
    if plan not in plans:
        out.print(f"the plan {plan!r} is not defined in `plans`: only the routes' own rate limits apply", markup=False)
        return
    limits = PlanLimits.model_validate(plans[plan])
    _show_usage(config, plan, limits, name)


def _show_usage(config: Path, plan: str, limits: PlanLimits, name: str) -> None:
    import asyncio

    from bastion.config import load_config
    from bastion.errors import DependencyUnavailable
    from bastion.stages.ratelimit.stage import plan_keys

    keyed = plan_keys(plan, limits, name)
    backends = load_config(config).config.backends
    left: list[tuple[str, str]] = [("-", "-")] * len(keyed)
    if backends.state == "redis":
        try:
            left = asyncio.run(_read_usage(backends, keyed))
        except DependencyUnavailable as exc:
            raise fail(str(exc)) from None
    table(
        ("LIMIT", "KIND", "ALLOWED", "WINDOW", "LEFT", "WHOLE IN"),
        [
            (rule.policy_name, kind, str(rule.limit), _duration(rule.window), *usage)
            for (rule, _), kind, usage in zip(keyed, _kinds(limits), left, strict=True)
        ],
    )
    if backends.state != "redis":
        out.print(
            "left: not shown with backends.state: memory (each worker counts in its own memory); "
            "use redis to share and see the counts",
            markup=False,
        )


def _kinds(limits: PlanLimits) -> list[str]:
    return ["rate limit"] * len(limits.rate_limits) + ["quota"] * len(limits.quotas)


async def _read_usage(backends: Any, keyed: Sequence[tuple[Any, str]]) -> list[tuple[str, str]]:
    """Each limit's requests left and the time until whole, as the table shows them."""
    from bastion.stages.ratelimit.usage import read_left

    left = await read_left(backends, keyed)
    return [(str(count), _duration(seconds) if seconds else "now") for count, seconds in left]


def _duration(seconds: float) -> str:
    """``86400`` -> ``1d``, ``90`` -> ``90s``: the largest unit that divides it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@consumers_app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="The consumer to delete, with its keys.")],
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Delete a consumer and every key it holds (their requests are refused from then on)."""
    from bastion.store import consumers

    api = remote(admin_url, token)
    if api is not None:
        from urllib.parse import quote

        gone = api.call("DELETE", f"/api/v1/consumers/{quote(name, safe='')}")
        out.print(f"deleted consumer {name} and its {gone['api_keys_deleted']} API key(s)", markup=False)
        return
    with configured_store(config) as store, store.write() as session:
        deleted = consumers.delete_by_name(session, name)
    out.print(f"deleted consumer {name} and its {deleted} API key(s)", markup=False)


@consumers_app.command("invite")
def invite(
    name: Annotated[str, typer.Argument(help="The consumer whose developer is invited.")],
    login: Annotated[
        str | None, typer.Option("--login", help="The developer's portal login, e.g. an e-mail (default: NAME).")
    ] = None,
    expires: Annotated[str, typer.Option("--expires", help="How long the link works: 7d, 24h, 30m.")] = "7d",
    url: Annotated[
        str | None,
        typer.Option("--url", help="Base URL developers reach the admin listener at (default: from `admin:`)."),
    ] = None,
    config: ConfigOpt = Path("bastion.yaml"),
) -> None:
    """Invite a developer to the portal to manage NAME's keys; the one-time link is the last line."""
    import getpass

    from bastion.cli.output import err
    from bastion.cli.storeaccess import parse_duration
    from bastion.config import load_config
    from bastion.store import adminaudit
    from bastion.store import portal as accounts

    ttl = parse_duration(expires, "--expires")
    with configured_store(config) as store, store.write() as session:
        account, token = accounts.invite(session, store.pepper, name, login or name, ttl)
        adminaudit.record(session, actor=f"cli:{getpass.getuser()}", via="cli", action="portal.invite",
                          target=f"portal:{account.login}", source="cli",
                          after={"consumer": name, "login": account.login, "expires": when(account.invite_expires_at)})
    settings = load_config(config).config.admin  # valid: configured_store loaded it
    base = (url or _admin_url(settings.host, settings.port, settings.tls is not None)).rstrip("/")
    if not settings.portal.enabled:
        err.print("warning: admin.portal.enabled is false: the link works once the portal is enabled", markup=False)
    err.print(f"invited {account.login} to manage {name}'s keys; the link works once, until "
              f"{when(account.invite_expires_at)}:", markup=False)
    out.print(f"{base}/portal/invite/{token}", markup=False, soft_wrap=True)


def _admin_url(host: str, port: int, tls: bool) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


certs_app = typer.Typer(
    name="certs",
    help="Map client certificates (mTLS) to the consumers kept in the store.",
    no_args_is_help=True,
)
consumers_app.add_typer(certs_app)

FingerprintOpt = Annotated[
    str | None,
    typer.Option("--fingerprint", help="The certificate's SHA-256 fingerprint: sha256:HEX (colons allowed)."),
]
SubjectOpt = Annotated[
    str | None, typer.Option("--subject", help="The certificate's subject, e.g. 'CN=svc,O=Example'.")
]
SanOpt = Annotated[str | None, typer.Option("--san", help="A DNS name, URI or IP address of its subjectAltName.")]


def _matcher(fingerprint: str | None, subject: str | None, san: str | None) -> dict[str, str]:
    """The matcher the options give (exactly one), checked as the configuration checks it."""
    from bastion.control import certificates
    from bastion.store.errors import StoreError

    given = {k: v for k, v in (("fingerprint", fingerprint), ("subject", subject), ("san", san)) if v is not None}
    try:
        return certificates.checked(given)
    except StoreError as exc:
        hint = f"--{next(iter(given))}" if len(given) == 1 else None
        message = str(exc).replace("one of fingerprint, subject or san", "one of --fingerprint, --subject or --san")
        raise typer.BadParameter(message, param_hint=hint) from None


@certs_app.command("add")
def certs_add(
    name: Annotated[str, typer.Argument(help="The store consumer the certificate identifies.")],
    fingerprint: FingerprintOpt = None,
    subject: SubjectOpt = None,
    san: SanOpt = None,
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Map client certificates (by fingerprint, subject or SAN) to a store consumer; running
    gateways accept them as its within a second (their next poll of the store)."""
    from bastion.control import certificates

    matcher = _matcher(fingerprint, subject, san)
    api = remote(admin_url, token)
    if api is not None:
        done = api.call("POST", f"/api/v1/consumers/{name}/certificates", matcher)
        if as_json:
            print_json(done)
        else:
            verb = "added" if done["added"] else "already had"
            out.print(f"consumer {name} {verb} certificate {certificates.label(matcher)} via {api.url}",
                      markup=False, emoji=False)
        return
    with configured_store(config) as store, store.write() as session:
        added = certificates.add(session, name, matcher)
    if not added:
        out.print(f"consumer {name} already has certificate {certificates.label(matcher)}", markup=False,
                  emoji=False)
        return
    out.print(f"added certificate {certificates.label(matcher)} to consumer {name} in {store.shown}", markup=False,
              emoji=False)


@certs_app.command("list")
def certs_list(
    name: Annotated[str | None, typer.Argument(help="Only this consumer's certificates.")] = None,
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the certificate matchers of every consumer (or of one), declared ones included."""
    from bastion.store import consumers

    api = remote(admin_url, token)
    if api is not None:
        found = api.call("GET", "/api/v1/certificates", params={"consumer": name})["items"]
        if as_json:
            for item in found:
                print_json(item)
        elif found:
            table(("CONSUMER", "MATCHER", "VALUE", "SOURCE"),
                  [(c["consumer"], c["kind"], c["value"], c["source"]) for c in found])
        else:
            out.print(f"consumer {name} has no certificates" if name is not None else "no consumer has certificates",
                      markup=False, emoji=False)
        return
    with configured_store(config) as store, store.read() as session:
        found = [consumers.get(session, name)] if name is not None else consumers.with_certificates(session)
        rows = [
            (c.name, *next(iter(m.items())), "config" if c.declared else "store")
            for c in found
            for m in c.certificates
        ]
    if not rows:
        what = f"consumer {name} has no certificates" if name is not None else "no consumer has certificates"
        out.print(f"{what} in {store.shown}", markup=False, emoji=False)
        return
    table(("CONSUMER", "MATCHER", "VALUE", "SOURCE"), rows)


@certs_app.command("remove")
def certs_remove(
    name: Annotated[str, typer.Argument(help="The store consumer to take the certificate from.")],
    fingerprint: FingerprintOpt = None,
    subject: SubjectOpt = None,
    san: SanOpt = None,
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Unmap client certificates from a store consumer; running gateways refuse them (401)
    within a second."""
    from bastion.control import certificates

    matcher = _matcher(fingerprint, subject, san)
    api = remote(admin_url, token)
    if api is not None:
        done = api.call("POST", f"/api/v1/consumers/{name}/certificates/remove", matcher)
        if as_json:
            print_json(done)
        else:
            out.print(f"removed certificate {certificates.label(done['removed'])} from consumer {name} via {api.url}",
                      markup=False, emoji=False)
        return
    with configured_store(config) as store, store.write() as session:
        stored = certificates.remove(session, name, matcher)
    out.print(f"removed certificate {certificates.label(stored)} from consumer {name}", markup=False, emoji=False)


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """Aligned columns, one line per row, never wrapped (so they stay greppable)."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        # No emoji codes: a fingerprint's ``:ab:`` must print as written.
        line = "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        out.print(line, markup=False, emoji=False)



# In its own module (this one is long); registered here, with the other portal command (invite).
from bastion.cli.portalreset import reset_password  # noqa: E402

consumers_app.command("reset-password")(reset_password)
