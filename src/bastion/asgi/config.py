"""``bastion.yaml`` read for the embedded mode: the gateway's schema, minus what the ASGI
server or the application itself does.

The application is the upstream and the ASGI server (uvicorn, hypercorn) is the listener,
so the file is checked here before the gateway's loader reads it:

- ``services[].upstream`` may be left out (the wrapped application answers every route);
  one that is written is ignored, with a warning.
- ``listen.host``, ``listen.port``, ``listen.timeouts`` and ``admin`` are ignored, with a
  warning: the ASGI server listens and times connections out; metrics are served by
  :func:`bastion.asgi.metrics_app`. ``listen.limits`` and ``listen.trusted_proxies`` apply.
- Refused, as configuration errors: ``listen.tls`` (TLS ends in the ASGI server, where
  Bastion can neither require nor read a client certificate), ``oauth_server.enabled``
  (its endpoints are the gateway's own), and any route whose authentication takes a client
  certificate (an OpenAPI ``mutualTLS`` scheme): the embedded mode cannot see one, and a
  stage that cannot do its job is refused at load, never skipped.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from bastion.config.errors import ConfigError, ConfigIssue
from bastion.config.loader import LoadedConfig, load_config, load_parsed
from bastion.config.yamlsrc import Source, load_source
from bastion.stages.auth import auth_stage
from bastion.stages.graphql import GraphQLStage

#: Stands in for the upstream the embedded mode has not got (never connected to).
NO_UPSTREAM = "http://embedded.invalid"
#: Settings of the file that the embedded mode does not use: (field path, why).
_IGNORED: tuple[tuple[tuple[str, ...], str], ...] = (
    (("listen", "host"), "the ASGI server listens, not Bastion"),
    (("listen", "port"), "the ASGI server listens, not Bastion"),
    (("listen", "timeouts"), "the ASGI server times its connections out"),
    (("admin",), "metrics are served by bastion.asgi.metrics_app(), mounted on the application or its own port"),
)


def load_embedded(path: Path | str) -> LoadedConfig:
    """Load ``path`` for the embedded mode; raise :class:`ConfigError` listing every problem
    (the gateway's own, and what the embedded mode cannot do)."""
    path = Path(path)
    src = load_source(path, display=str(path))
    warnings: list[ConfigIssue] = []
    if isinstance(src.data, dict):
        refused = _refused(src)
        if refused:
            raise ConfigError(refused)
        warnings = _ignored(src)
        _without_upstreams(src, warnings)
    loaded = load_parsed(src, path)
    refused = _certificate_routes(loaded) + _introspecting_routes(loaded)
    if refused:
        raise ConfigError(refused)
    return replace(loaded, warnings=(*loaded.warnings, *warnings))


def is_embedded(path: Path | str) -> bool:
    """Whether ``path`` is an embedded mode's configuration: it has services, and none of
    them names an upstream (the gateway requires one on each)."""
    path = Path(path)
    data = load_source(path, interpolate=False, display=str(path)).data
    services = data.get("services") if isinstance(data, dict) else None
    return (
        isinstance(services, list)
        and bool(services)
        and all(isinstance(s, dict) and "upstream" not in s for s in services)
    )


def load_any(path: Path | str) -> LoadedConfig:
    """The gateway's configuration, or an embedded mode's (:func:`is_embedded`): for the
    commands that serve neither (``bastion check``, the store's commands)."""
    return load_embedded(path) if is_embedded(path) else load_config(path)


def _refused(src: Source) -> list[ConfigIssue]:
    data: dict[str, Any] = src.data
    issues: list[ConfigIssue] = []
    listen = data.get("listen")
    if isinstance(listen, dict) and listen.get("tls") is not None:
        issues.append(
            src.issue(
                ("listen", "tls"),
                "not available in embedded mode: TLS ends in the ASGI server, where Bastion can neither require "
                "nor read a client certificate; configure TLS on the server (uvicorn --ssl-certfile) and remove "
                "listen.tls",
            )
        )
    oauth = data.get("oauth_server")
    if isinstance(oauth, dict) and oauth.get("enabled") is True:
        issues.append(
            src.issue(
                ("oauth_server", "enabled"),
                "not available in embedded mode: the authorization server's endpoints are the gateway's own; "
                "run the gateway for them, or verify its tokens here with policies.auth.jwt",
            )
        )
    return issues


def _ignored(src: Source) -> list[ConfigIssue]:
    data: dict[str, Any] = src.data
    out: list[ConfigIssue] = []
    for path, why in _IGNORED:
        node: Any = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            out.append(src.issue(path, f"ignored in embedded mode: {why}"))
    return out


def _without_upstreams(src: Source, warnings: list[ConfigIssue]) -> None:
    """Let every service leave ``upstream`` out: the application is the upstream."""
    services = src.data.get("services")
    if not isinstance(services, list):
        return
    for i, service in enumerate(services):
        if not isinstance(service, dict):
            continue
        if "upstream" in service:
            warnings.append(
                src.issue(("services", i, "upstream"), "ignored in embedded mode: the wrapped application answers")
            )
        service["upstream"] = NO_UPSTREAM


def _certificate_routes(loaded: LoadedConfig) -> list[ConfigIssue]:
    """Routes whose authentication would need the client's TLS certificate."""
    issues: list[ConfigIssue] = []
    for route in loaded.routes:
        auth = auth_stage(route.built)
        if auth is None or not auth.authenticates:
            continue
        if any(source.certificate for source in auth.sources):
            issues.append(
                ConfigIssue(
                    route.origin,
                    None,
                    f"auth ({route.id})",
                    "the route authenticates with a client certificate (mutualTLS), which the embedded mode "
                    "cannot see (TLS ends in the ASGI server); run the gateway for this route, or give it "
                    "another security scheme",
                )
            )
    return issues


def _introspecting_routes(loaded: LoadedConfig) -> list[ConfigIssue]:
    """GraphQL routes that would ask an upstream for their schema: the embedded mode has none."""
    return [
        ConfigIssue(
            route.origin,
            None,
            f"graphql.schema ({route.id})",
            "'introspect' asks the upstream for its schema, and the embedded mode has no upstream: "
            "name the schema's SDL file instead",
        )
        for route in loaded.routes
        for stage in route.built
        if isinstance(stage, GraphQLStage) and stage.settings.schema_file == "introspect"
    ]


__all__ = ["NO_UPSTREAM", "is_embedded", "load_any", "load_embedded"]
