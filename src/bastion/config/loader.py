"""Load ``bastion.yaml``: parse, validate, import OpenAPI routes, resolve stage policies.

Everything that can be wrong is found here, once, with the file, line and field named;
the data plane then works from :class:`LoadedConfig` and never parses config again.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from bastion.config.audit import SyslogSettings
from bastion.config.errors import ConfigError, ConfigIssue
from bastion.config.model import (
    BODY_METHODS,
    DEFAULT_METHODS,
    HEAD_LIMITS,
    PEPPER_ENV,
    GatewayConfig,
    Limits,
    RequestLimits,
    Route,
    Service,
    StoreSettings,
)
from bastion.config.openapi import OpenAPIDocument, PolicyLayer, parse_openapi
from bastion.config.secrets import plaintext_secrets
from bastion.config.yamlsrc import FieldPath, Source, load_source
from bastion.errors import PolicyError
from bastion.oauth.paths import ROUTES as BUILTIN_PATHS
from bastion.pipeline.registry import BY_NAME, ORDER
from bastion.pipeline.stage import RouteInfo, Stage, StageConfig, StageSpec


@dataclass(frozen=True)
class ResolvedRoute:
    """A route with everything the data plane needs, derived once at load."""

    id: str
    service: str
    path: str
    methods: frozenset[str]
    host: str | None
    prefix: bool
    public: bool
    operation_id: str | None
    max_body_bytes: int
    #: Largest response body buffered whole for a stage that needs it, and what a larger one gets.
    max_response_body_bytes: int
    response_body_over_limit: Literal["block", "pass"]
    #: Methods whose requests may carry a body here (any other gets 400 if it has one): from
    #: ``request_body`` on a hand-declared route, from ``requestBody`` on an OpenAPI operation.
    body_methods: frozenset[str]
    #: Enabled stages for this route, in registry order, with their validated settings.
    stages: tuple[tuple[StageSpec, StageConfig], ...]
    #: Where the route was declared, for messages ("bastion.yaml:12", "books.yaml#/paths/...").
    origin: str
    #: The OpenAPI operation object, when the route came from one.
    operation: dict[str, Any] | None = None
    #: The stage objects, built once here (so that ``bastion check`` sees every error a
    #: stage finds in its settings or in the OpenAPI operation it compiles).
    built: tuple[Stage, ...] = ()
    #: Path parameters the OpenAPI operation declares ``style: matrix``.
    matrix_params: frozenset[str] = frozenset()
    #: The route's head and query limits: ``listen.limits`` tightened by the service's and
    #: the route's ``limits`` (``None``: the listener's, as on the built-in routes).
    limits: Limits | None = None


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration and the routes derived from it."""

    config: GatewayConfig
    path: Path
    routes: tuple[ResolvedRoute, ...]
    #: Files the config was read from (itself and OpenAPI documents), watched for reload.
    files: tuple[Path, ...]
    openapi: dict[str, OpenAPIDocument]
    #: Deprecated settings, still honoured: where each is and what replaces it.
    warnings: tuple[ConfigIssue, ...] = ()
    #: Routes the gateway answers itself (the OAuth server's), matched before ``routes``
    #: and never forwarded (see ``bastion.oauth.routes``).
    builtin_routes: tuple[ResolvedRoute, ...] = ()


def resolve_path(base: Path, value: Path) -> Path:
    """Relative paths inside a config resolve against the config file's folder."""
    return value if value.is_absolute() else (base / value)


def load_config(path: Path | str) -> LoadedConfig:
    """Load and validate ``path``; raise :class:`ConfigError` listing every problem."""
    path = Path(path)
    return load_parsed(load_source(path, display=str(path)), path)


def load_parsed(src: Source, path: Path) -> LoadedConfig:
    """:func:`load_config` on a file already read into ``src`` (the embedded mode checks and
    completes what it reads first: ``bastion.asgi.config``)."""
    if not isinstance(src.data, dict):
        raise ConfigError([src.issue((), "expected a mapping at the top level (listen, admin, services...)")])
    plaintext = _plaintext_secrets(src)
    try:
        config = GatewayConfig.model_validate(src.data)
    except ValidationError as exc:
        raise ConfigError(plaintext + pydantic_issues(exc, src, GatewayConfig)) from None
    base = path.parent
    config = _resolve_files(config, base)
    issues: list[ConfigIssue] = plaintext
    _check_files(config, src, issues)
    _check_store(config, src, issues)
    _check_admin(config, src, issues)
    _check_audit(config, src, issues)
    routes: list[ResolvedRoute] = []
    declared_head: set[int] = set()  # indexes of routes that list HEAD themselves
    files = [path]
    docs: dict[str, OpenAPIDocument] = {}
    ext_names = {spec.extension: spec.name for spec in ORDER}
    _check_policy_names(config.policies, src, ("policies",), issues)
    for si, svc in enumerate(config.services):
        spath: FieldPath = ("services", si)
        _check_policy_names(svc.policies, src, (*spath, "policies"), issues)
        svc_layers = (
            _tracing_layers(config, src)
            + _blocklist_layers(config, src)
            + _plan_layers(config, src)
            + _layers(config.policies, src, ("policies",))
            + _layers(svc.policies, src, (*spath, "policies"))
        )
        body_cap = svc.max_body_bytes if svc.max_body_bytes is not None else config.listen.limits.max_body_bytes
        limits = config.listen.limits
        resp_cap = svc.max_response_body_bytes
        if resp_cap is None:
            resp_cap = limits.max_response_body_bytes
        over_limit = svc.response_body_over_limit or limits.response_body_over_limit
        svc_limits = _tightened(limits, limits, svc.limits, src, (*spath, "limits"), issues)
        if svc.openapi is not None:
            files.append(svc.openapi)
            doc = _load_openapi(svc.openapi, src, (*spath, "openapi"), ext_names, issues)
            if doc is not None:
                docs[svc.name] = doc
                base_path = (svc.base_path if svc.base_path is not None else doc.base_path).rstrip("/")
                for op in doc.operations:
                    if op.method == "HEAD":
                        declared_head.add(len(routes))
                    stages = _stages(svc_layers, op.policies, issues, op.public)
                    rid = op.operation_id or f"{svc.name}:{op.method} {op.path}"
                    routes.append(
                        ResolvedRoute(
                            id=rid,
                            service=svc.name,
                            path=(base_path + op.path) or "/",
                            methods=frozenset(_with_head({op.method})),
                            host=svc.host,
                            prefix=False,
                            public=op.public,
                            operation_id=op.operation_id,
                            max_body_bytes=body_cap,
                            max_response_body_bytes=resp_cap,
                            response_body_over_limit=over_limit,
                            # An operation that declares no requestBody takes none.
                            body_methods=frozenset({op.method} if "requestBody" in op.spec else ()),
                            stages=stages,
                            origin=f"{doc.source.file}#/paths/{_pointer(op.path)}/{op.method.lower()}",
                            operation=op.spec,
                            matrix_params=op.matrix_params,
                            limits=svc_limits,
                        )
                    )
        for ri, route in enumerate(svc.routes):
            rpath: FieldPath = (*spath, "routes", ri)
            _check_policy_names(route.policies, src, (*rpath, "policies"), issues)
            layers = {n: [*ls] for n, ls in _by_stage(_layers(route.policies, src, (*rpath, "policies"))).items()}
            stages = _stages(svc_layers, layers, issues, route.public)
            if route.methods is not None and "HEAD" in route.methods:
                declared_head.add(len(routes))
            route_limits = _tightened(limits, svc_limits, route.limits, src, (*rpath, "limits"), issues)
            routes.append(_hand_route(svc, route, rpath, src, stages, body_cap, resp_cap, over_limit, route_limits))
    routes = _drop_implied_head(routes, declared_head)
    _check_conflicts(routes, issues)
    if config.oauth_server.enabled:
        _check_builtin_conflicts(routes, issues)
    if issues:
        raise ConfigError(issues)
    upstreams = {svc.name: svc.upstream.targets[0].url for svc in config.services}
    routes = [_build_stages(r, docs, issues, config.oauth_server.enabled, upstreams) for r in routes]
    if issues:
        raise ConfigError(issues)
    # Imported here: the OAuth package builds on this module's ResolvedRoute.
    from bastion.oauth.routes import builtin_routes

    files.extend(f for f in _stage_files(routes) if f not in files)
    return LoadedConfig(
        config, path, tuple(routes), tuple(files), docs, _deprecations(config, src, docs), builtin_routes(config)
    )


def _deprecations(config: GatewayConfig, src: Source, docs: dict[str, OpenAPIDocument]) -> tuple[ConfigIssue, ...]:
    """A warning for each place a stage policy sets a field its stage deprecates."""
    layers = _layers(config.policies, src, ("policies",))
    for si, svc in enumerate(config.services):
        layers += _layers(svc.policies, src, ("services", si, "policies"))
        for ri, route in enumerate(svc.routes):
            layers += _layers(route.policies, src, ("services", si, "routes", ri, "policies"))
    for doc in docs.values():
        for op in doc.operations:
            layers += [(name, layer) for name, ls in op.policies.items() for layer in ls]
    out: list[ConfigIssue] = []
    for name, layer in layers:
        for field, message in BY_NAME[name].config_model.deprecated_fields.items():
            issue = layer.source.issue((*layer.path, field), message)
            if field in layer.values and issue not in out:  # a document-level layer is shared
                out.append(issue)
    return tuple(out)


def _build_stages(
    route: ResolvedRoute,
    docs: dict[str, OpenAPIDocument],
    issues: list[ConfigIssue],
    own_tokens: bool = False,
    upstreams: dict[str, str] | None = None,
) -> ResolvedRoute:
    doc = docs.get(route.service)
    info = RouteInfo(
        route.id,
        route.service,
        route.path,
        route.methods,
        route.public,
        route.operation,
        doc.data if doc is not None else None,
        own_tokens,
        (upstreams or {}).get(route.service),
    )
    built: list[Stage] = []
    for spec, stage_config in route.stages:
        try:
            stage = spec.build(stage_config, info)
            if stage is not None:
                built.append(stage)
        except PolicyError as exc:
            issues.append(ConfigIssue(route.origin, None, f"{spec.name} ({route.id})", str(exc)))
        except Exception as exc:  # a stage that cannot be built must stop the load, visibly
            issues.append(
                ConfigIssue(
                    route.origin,
                    None,
                    f"{spec.name} ({route.id})",
                    f"the stage could not be built: {type(exc).__name__}: {exc}",
                )
            )
    if route.response_body_over_limit == "pass":
        for stage in built:
            if stage.response_body_required:
                issues.append(
                    ConfigIssue(
                        route.origin,
                        None,
                        f"response_body_over_limit ({route.id})",
                        f"'pass' would forward a response over max_response_body_bytes without the {stage.name} "
                        "stage seeing it; use 'block' (the default) on this route",
                    )
                )
    return replace(route, built=tuple(built))


def _with_head(methods: set[str]) -> set[str]:
    # HEAD is GET without a body: allowed wherever GET is.
    return methods | {"HEAD"} if "GET" in methods else methods


def _pointer(path: str) -> str:
    return path.replace("~", "~0").replace("/", "~1")


def _hand_route(
    svc: Service,
    route: Route,
    rpath: FieldPath,
    src: Source,
    stages: tuple[tuple[StageSpec, StageConfig], ...],
    body_cap: int,
    resp_cap: int,
    over_limit: Literal["block", "pass"],
    limits: Limits,
) -> ResolvedRoute:
    methods = frozenset(_with_head(set(route.methods) if route.methods is not None else set(DEFAULT_METHODS)))
    line = src.line_of(rpath)
    return ResolvedRoute(
        id=route.operation_id or f"{svc.name}:{route.path}",
        service=svc.name,
        path=route.path,
        methods=methods,
        host=route.host or svc.host,
        prefix=route.prefix,
        public=route.public,
        operation_id=route.operation_id,
        max_body_bytes=route.max_body_bytes if route.max_body_bytes is not None else body_cap,
        max_response_body_bytes=resp_cap if route.max_response_body_bytes is None else route.max_response_body_bytes,
        response_body_over_limit=route.response_body_over_limit or over_limit,
        body_methods=_body_methods(route, methods),
        stages=stages,
        origin=f"{src.file}:{line}" if line else src.file,
        limits=limits,
    )


def _tightened(
    listen: Limits, base: Limits, own: RequestLimits, src: Source, path: FieldPath, issues: list[ConfigIssue]
) -> Limits:
    """``base`` with the limits ``own`` sets. Head limits above the listener's are an error:
    the listener applies its own while it reads the head, before any route is known, so a
    looser route value could never take effect."""
    update = own.model_dump(exclude_none=True)
    if not update:
        return base
    for name in HEAD_LIMITS:
        value = update.get(name)
        ceiling = getattr(listen, name)
        if value is not None and value > ceiling:
            issues.append(
                src.issue(
                    (*path, name),
                    f"{value} is above listen.limits.{name} ({ceiling}), which applies first, while the "
                    "head is read: lower this, or raise listen.limits too",
                )
            )
    return base.model_copy(update=update)


def _body_methods(route: Route, methods: frozenset[str]) -> frozenset[str]:
    """The methods of a hand-declared route whose requests may carry a body."""
    if route.request_body == "allowed":
        return methods
    if route.request_body == "refused":
        return frozenset()
    return methods & BODY_METHODS


def _resolve_files(config: GatewayConfig, base: Path) -> GatewayConfig:
    """Make every file path in the config absolute, relative to the config's folder."""
    listen = config.listen
    if listen.tls is not None:
        tls = listen.tls.model_copy(
            update={
                "cert": resolve_path(base, listen.tls.cert),
                "key": resolve_path(base, listen.tls.key),
                "client_ca": resolve_path(base, listen.tls.client_ca) if listen.tls.client_ca else None,
            }
        )
        listen = listen.model_copy(update={"tls": tls})
    services = []
    for svc in config.services:
        up = svc.upstream
        t = up.tls
        tls_up = t.model_copy(
            update={
                "ca": resolve_path(base, t.ca) if t.ca else None,
                "cert": resolve_path(base, t.cert) if t.cert else None,
                "key": resolve_path(base, t.key) if t.key else None,
            }
        )
        services.append(
            svc.model_copy(
                update={
                    "openapi": resolve_path(base, svc.openapi) if svc.openapi else None,
                    "upstream": up.model_copy(update={"tls": tls_up}),
                }
            )
        )
    log = config.access_log
    if log.path != "-":
        log = log.model_copy(update={"path": str(resolve_path(base, Path(log.path)))})
    admin = config.admin
    if admin.tls is not None:
        admin = admin.model_copy(update={"tls": admin.tls.model_copy(
            update={"cert": resolve_path(base, admin.tls.cert), "key": resolve_path(base, admin.tls.key)})})
    store = _resolve_store(config.store, base)
    audit = config.audit
    audit = audit.model_copy(
        update={
            "output": audit.output if audit.output in (None, "-") else str(resolve_path(base, Path(audit.output))),
            "spool_dir": resolve_path(base, audit.spool_dir).resolve(),
            "syslog": _resolve_syslog(audit.syslog, base),
        }
    )
    detectors = config.detectors
    if detectors.email is not None and detectors.email.ca_file is not None:
        email = detectors.email.model_copy(update={"ca_file": resolve_path(base, detectors.email.ca_file)})
        detectors = detectors.model_copy(update={"email": email})
    return config.model_copy(
        update={"listen": listen, "services": services, "access_log": log, "store": store, "audit": audit,
                "admin": admin, "detectors": detectors}
    )


def _resolve_syslog(syslog: SyslogSettings | None, base: Path) -> SyslogSettings | None:
    if syslog is None or syslog.ca_file is None:
        return syslog
    return syslog.model_copy(update={"ca_file": resolve_path(base, syslog.ca_file)})


#: The store's files beside the configuration, unless it names others.
DEFAULT_STORE_FILE = "bastion.db"
DEFAULT_PEPPER_FILE = "bastion.pepper"


def _resolve_store(store: StoreSettings, base: Path) -> StoreSettings:
    """The store's URL and pepper file with their defaults, paths absolute (a worker and the
    CLI, started from different folders, must open the same SQLite file)."""
    url = store.url if store.url is not None else f"sqlite:///{DEFAULT_STORE_FILE}"
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = f"sqlite:///{(base / url.removeprefix('sqlite:///')).resolve()}"
    pepper = store.pepper_file
    if pepper is not None:
        pepper = resolve_path(base, pepper)
    elif url.startswith("sqlite:"):
        pepper = base.resolve() / DEFAULT_PEPPER_FILE
    return store.model_copy(update={"url": url, "pepper_file": pepper})


def _check_audit(config: GatewayConfig, src: Source, issues: list[ConfigIssue]) -> None:
    """Two writers of JSON lines on one standard output would interleave their lines (a
    pipe keeps only small writes whole): the access log and the audit log cannot share it."""
    audit, access = config.audit, config.access_log
    if audit.enabled and audit.output == "-" and access.enabled and access.path == "-":
        issues.append(
            src.issue(
                ("audit", "output"),
                "the access log already writes to standard output ('-'), and their lines would interleave: "
                "give one of them a file (audit.output or access_log.path), or turn the access log off",
            )
        )


def _check_admin(config: GatewayConfig, src: Source, issues: list[ConfigIssue]) -> None:
    """The admin listener holds the keys to everything: off loopback, only over TLS (that it
    also has an admin user is checked at start, against the store)."""
    admin = config.admin
    if admin.tls is None and not is_loopback_host(admin.host):
        issues.append(src.issue(("admin", "host"), f"the admin listener on {admin.host!r} is not on loopback: "
                                "configure admin.tls (cert and key), or keep it on 127.0.0.1"))


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names only loopback (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_store(config: GatewayConfig, src: Source, issues: list[ConfigIssue]) -> None:
    """Several instances share a PostgreSQL store, so they must share its pepper: one made up
    by each would make every key valid on one instance only."""
    store = config.store
    shared = store.url is not None and store.url.startswith("postgresql")
    if shared and store.pepper_file is None and not os.environ.get(PEPPER_ENV):
        issues.append(
            src.issue(
                ("store", "pepper_file"),
                f"a PostgreSQL store needs a pepper every instance shares: set pepper_file, or the "
                f"environment variable {PEPPER_ENV}",
            )
        )


def _check_files(config: GatewayConfig, src: Source, issues: list[ConfigIssue]) -> None:
    """Certificates and keys must exist and be readable now, not when a worker starts."""
    wanted: list[tuple[FieldPath, Path | None]] = []
    tls = config.listen.tls
    if tls is not None:
        wanted += [
            (("listen", "tls", "cert"), tls.cert),
            (("listen", "tls", "key"), tls.key),
            (("listen", "tls", "client_ca"), tls.client_ca),
        ]
    if config.admin.tls is not None:
        wanted += [(("admin", "tls", "cert"), config.admin.tls.cert), (("admin", "tls", "key"), config.admin.tls.key)]
    for i, svc in enumerate(config.services):
        t = svc.upstream.tls
        base: FieldPath = ("services", i, "upstream", "tls")
        wanted += [((*base, "ca"), t.ca), ((*base, "cert"), t.cert), ((*base, "key"), t.key)]
    if config.audit.syslog is not None:
        wanted.append((("audit", "syslog", "ca_file"), config.audit.syslog.ca_file))
    if config.detectors.email is not None:
        wanted.append((("detectors", "email", "ca_file"), config.detectors.email.ca_file))
    for field_path, file in wanted:
        if file is None:
            continue
        try:
            with open(file, "rb") as f:
                f.read(1)
        except FileNotFoundError:
            issues.append(src.issue(field_path, f"file {str(file)!r} not found"))
        except OSError as exc:
            issues.append(src.issue(field_path, f"file {str(file)!r} cannot be read: {exc.strerror}"))


def _load_openapi(
    path: Path, cfg: Source, field: FieldPath, ext_names: dict[str, str], issues: list[ConfigIssue]
) -> OpenAPIDocument | None:
    try:
        # No ${VAR} expansion: OpenAPI documents legitimately contain "${...}" in examples.
        doc_src = load_source(path, interpolate=False)
    except ConfigError as exc:
        for issue in exc.issues:
            if issue.message == "file not found":
                issues.append(cfg.issue(field, f"OpenAPI document {str(path)!r} not found"))
            else:
                issues.append(issue)
        return None
    list_fields = {spec.extension: spec.list_field for spec in ORDER if spec.list_field}
    lent = {
        spec.extension: tuple((field, BY_NAME[target].extension) for field, target in spec.lends)
        for spec in ORDER
        if spec.lends
    }
    return parse_openapi(doc_src, ext_names, issues, list_fields, lent)


def _check_policy_names(policies: dict[str, Any], src: Source, path: FieldPath, issues: list[ConfigIssue]) -> None:
    for name, values in policies.items():
        if name not in BY_NAME:
            hint = difflib.get_close_matches(name, list(BY_NAME), n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            issues.append(src.issue((*path, name), f"unknown stage{did}; expected one of: {', '.join(BY_NAME)}"))
        elif isinstance(values, list) and not BY_NAME[name].list_field:
            issues.append(src.issue((*path, name), "expected a mapping of stage settings, not a list"))


def _layers(policies: dict[str, Any], src: Source, path: FieldPath) -> list[tuple[str, PolicyLayer]]:
    out: list[tuple[str, PolicyLayer]] = []
    for name, values in policies.items():
        spec = BY_NAME.get(name)
        if spec is None:
            continue
        if isinstance(values, list) and spec.list_field:
            # The bare-list form: errors still point into the list (pydantic's location
            # ``limits.0.by`` drops ``limits``, which the file does not have).
            values = {spec.list_field: values}
        if isinstance(values, dict):
            for field, target in spec.lends:
                if field in values:
                    lent = values[field]
                    values = {k: v for k, v in values.items() if k != field}
                    out.extend(_lent_layer(policies, src, (*path, name, field), lent, target))
            out.append((name, PolicyLayer(values, src, (*path, name))))
    return out


def _lent_layer(
    policies: dict[str, Any], src: Source, path: FieldPath, value: Any, target: str
) -> list[tuple[str, PolicyLayer]]:
    """Another stage's settings written inside a stage's (``response: {redact: [...]}`` is the
    ``redact`` stage's), as that stage's layer, unless that stage is also set beside it."""
    if target in policies:
        raise ConfigError([src.issue(path, f"policies.{target} is also set here: write these settings in one place")])
    spec = BY_NAME[target]
    if isinstance(value, list) and spec.list_field:
        value = {spec.list_field: value}
    if not isinstance(value, dict):
        raise ConfigError([src.issue(path, "expected a mapping of stage settings (or a list)")])
    return [(target, PolicyLayer(value, src, path))]


def _tracing_layers(config: GatewayConfig, src: Source) -> list[tuple[str, PolicyLayer]]:
    """The ``tracing`` stage on every route once ``audit.otel`` exports spans: each request's
    span continues its client's trace, and the upstream's continue the gateway's."""
    audit = config.audit
    return [("tracing", PolicyLayer({}, src, ()))] if audit.enabled and audit.otel is not None else []


def _blocklist_layers(config: GatewayConfig, src: Source) -> list[tuple[str, PolicyLayer]]:
    """The ``blocklist`` stage on every route once a detector blocks (``action: block``): a
    block must hold wherever the blocked client calls. Its settings come from ``policies``."""
    return [("blocklist", PolicyLayer({}, src, ()))] if config.detectors.blocks else []


def _plan_layers(config: GatewayConfig, src: Source) -> list[tuple[str, PolicyLayer]]:
    """The top-level ``plans``, as the broadest ``ratelimit`` layer of every route: a signed-in
    consumer's plan applies wherever it calls. The layer's path is the file's root, so an
    error in a plan is reported at ``plans.<name>...``, where it is written."""
    return [("ratelimit", PolicyLayer({"plans": config.plans}, src, ()))] if config.plans else []


def _by_stage(layers: list[tuple[str, PolicyLayer]]) -> dict[str, list[PolicyLayer]]:
    out: dict[str, list[PolicyLayer]] = {}
    for name, layer in layers:
        out.setdefault(name, []).append(layer)
    return out


def _stages(
    base: list[tuple[str, PolicyLayer]],
    nearer: dict[str, list[PolicyLayer]],
    issues: list[ConfigIssue],
    public: bool,
) -> tuple[tuple[StageSpec, StageConfig], ...]:
    """Merge each stage's layers (broadest first, nearest wins per field) and validate."""
    merged = _by_stage(base)
    for name, layers in nearer.items():
        merged.setdefault(name, []).extend(layers)
    out: list[tuple[StageSpec, StageConfig]] = []
    for spec in ORDER:
        layers = merged.get(spec.name, [])
        if not layers and not spec.default_on:
            continue
        values: dict[str, Any] = {}
        ok = True
        for layer in layers:
            layer_values = _with_files_resolved(spec.config_model, layer)
            # Validate each layer alone first, so an error points at the file that has it.
            try:
                spec.config_model.model_validate(layer_values)
            except ValidationError as exc:
                # A service-wide layer is validated for each route: report each problem once.
                issues.extend(
                    i for i in pydantic_issues(exc, layer.source, spec.config_model, layer.path) if i not in issues
                )
                ok = False
            values.update(layer_values)
        if not ok:
            continue
        try:
            cfg = spec.config_model.model_validate(values)
        except ValidationError as exc:
            src, where = (layers[-1].source, layers[-1].path) if layers else (Source("(defaults)", None), ())
            issues.extend(pydantic_issues(exc, src, spec.config_model, where))
            continue
        if spec.route_check is not None:
            refused = spec.route_check(cfg, public)
            if refused is not None:
                _route_check_issue(layers, refused, issues)
                continue
        if cfg.enabled:
            out.append((spec, cfg))
    return tuple(out)


def _with_files_resolved(model: type[StageConfig], layer: PolicyLayer) -> dict[str, Any]:
    """``layer``'s values with its relative file names (``model.file_fields``) resolved
    against the folder of the file that sets them (``bastion.yaml``, or an OpenAPI document)."""
    values = layer.values
    for name in model.file_fields:
        value = values.get(name)
        if isinstance(value, str) and value and value not in model.file_keywords:
            values = {**values, name: str(resolve_path(Path(layer.source.file).parent, Path(value)))}
    return values


def _stage_files(routes: list[ResolvedRoute]) -> list[Path]:
    """The files the routes' stage settings name (``file_fields``), each once: watched for
    reload like the config itself, since a stage reads them at load."""
    out: dict[Path, None] = {}
    for route in routes:
        for _spec, cfg in route.stages:
            fields = type(cfg).model_fields
            for name, info in fields.items():
                if (info.alias or name) in cfg.file_fields:
                    value = getattr(cfg, name)
                    if isinstance(value, Path):
                        out[value] = None
    return list(out)


def _route_check_issue(layers: list[PolicyLayer], refused: tuple[str, str], issues: list[ConfigIssue]) -> None:
    """Report a setting a route must not have, at the nearest layer that wrote it (once per
    place: a service-wide setting would otherwise be reported for each of its routes)."""
    field, message = refused
    layer = next((la for la in reversed(layers) if field in la.values), layers[-1] if layers else None)
    if layer is None:
        issue = ConfigIssue("(defaults)", None, field, message)
    else:
        issue = layer.source.issue((*layer.path, field), message)
    if issue not in issues:
        issues.append(issue)


def _shape(r: ResolvedRoute) -> tuple[str | None, str, bool]:
    # Parameter names do not matter for matching: /a/{x} and /a/{y} collide.
    return r.host, "/".join("{}" if "{" in s else s for s in r.path.split("/")), r.prefix


def _drop_implied_head(routes: list[ResolvedRoute], declared_head: set[int]) -> list[ResolvedRoute]:
    """HEAD is implied by GET, unless a route declares HEAD on the same path itself."""
    explicit = {_shape(r) for i, r in enumerate(routes) if i in declared_head}
    return [
        replace(r, methods=r.methods - {"HEAD"}) if i not in declared_head and _shape(r) in explicit else r
        for i, r in enumerate(routes)
    ]


def _check_conflicts(routes: list[ResolvedRoute], issues: list[ConfigIssue]) -> None:
    seen: dict[tuple[tuple[str | None, str, bool], str], ResolvedRoute] = {}
    for r in routes:
        shape = _shape(r)
        for m in sorted(r.methods):
            other = seen.get((shape, m))
            if other is not None and other is not r:
                issues.append(
                    ConfigIssue(
                        r.origin,
                        None,
                        f"route {r.id!r}",
                        f"{m} {r.path} is also declared by {other.origin} (route {other.id!r})",
                    )
                )
                break
            seen[(shape, m)] = r


def _check_builtin_conflicts(routes: list[ResolvedRoute], issues: list[ConfigIssue]) -> None:
    """A route declared on a path the built-in OAuth server answers would never be reached:
    say so rather than shadow it silently (prefix routes above it are fine)."""
    for r in routes:
        if not r.prefix and r.path in BUILTIN_PATHS:
            issues.append(
                ConfigIssue(
                    r.origin,
                    None,
                    f"route {r.id!r}",
                    f"{r.path} is answered by the built-in OAuth server (oauth_server.enabled): "
                    "move the route, or disable the server",
                )
            )


def _plaintext_secrets(src: Source) -> list[ConfigIssue]:
    """Secrets written in plain text in the file (see :mod:`bastion.config.secrets`)."""
    found = sorted(
        plaintext_secrets(src.data, src.written, _schema_fields()), key=lambda item: src.line_of(item[0]) or 0
    )
    advice = "write it as an ${ENV_VAR} reference or an encrypted value (bastion secrets encrypt)"
    return [src.issue(path, f"{what}: {advice}") for path, what in found]


def pydantic_issues(
    exc: ValidationError, src: Source, model: type[BaseModel], prefix: FieldPath = ()
) -> list[ConfigIssue]:
    """Turn pydantic's errors into issues with file, line, field path and a plain message."""
    out: list[ConfigIssue] = []
    for err in exc.errors(include_url=False):
        path = _data_path(src.data, prefix, err["loc"])
        full = (*prefix, *path)
        kind = err["type"]
        if kind == "extra_forbidden":
            field = str(full[-1]) if full else ""
            allowed = _allowed_fields(model, path[:-1])
            hint = difflib.get_close_matches(field, allowed, n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            message = f"unknown field{did}; expected one of: {', '.join(allowed)}" if allowed else "unknown field"
        elif kind == "missing":
            message = "required field is missing"
        else:
            message = err["msg"].removeprefix("Value error, ")
            value = err.get("input")
            if (
                isinstance(value, (str, int, float))
                and not isinstance(value, bool)
                and full not in src.secret_paths
                and len(str(value)) <= 60
                and kind not in ("value_error",)
            ):
                message += f" (got {value!r})"
        out.append(src.issue(full, message))
    return out


def _data_path(data: Any, prefix: FieldPath, loc: tuple[str | int, ...]) -> FieldPath:
    """Keep the parts of pydantic's ``loc`` that exist in the data (drop union/tag names)."""
    node: Any = data
    for p in prefix:
        node = node[p] if _has(node, p) else None
    out: list[str | int] = []
    for part in loc:
        if _has(node, part):
            node = node[part]
            out.append(part)
        elif isinstance(node, dict) and isinstance(part, str) and part.isidentifier() and part[0].islower():
            # A missing field is named by its own key; other parts are pydantic's names of
            # union members or validators ("IPv4Network", "function-after[...]").
            out.append(part)
            node = None
    return tuple(out)


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _allowed_fields(model: type[BaseModel], path: FieldPath) -> list[str]:
    """The field names the model expects at ``path`` (for 'did you mean')."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _model_of(fields[part].annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", None)
    # A field spelt by its alias in the file (``in``, a keyword in Python) is named so.
    return [f.alias or name for name, f in fields.items()] if fields else []


@functools.cache
def _schema_fields() -> frozenset[str]:
    """Every field name of the configuration's schema, the stages' included (a key of a
    free-form mapping, such as a type named in ``redact.actions``, is none)."""
    names: set[str] = set()
    todo: list[Any] = [GatewayConfig, *(spec.config_model for spec in ORDER)]
    seen: set[Any] = set()
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            names.add(name)
            todo.extend(_models_in(info.annotation))
    return frozenset(names)


def _models_in(annotation: Any) -> list[Any]:
    """Every model class an annotation names (``list[Route]``, ``A | B | None``...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) or () for m in _models_in(arg)]


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None
