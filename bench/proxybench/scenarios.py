"""The named scenarios the benchmark runs, in the order they run in each round.

Adding one is a few lines in :data:`SCENARIOS`, e.g. a stage on its own::

    Scenario("bastion-ratelimit", "Bastion with only the rate-limit stage", "bastion",
             policies={**NO_STAGES, "ratelimit": {"requests": 10**9, "per": "1s"}}),

``policies`` becomes the config's top-level ``policies`` (None: every stage at its
defaults); ``overrides`` is merged into the generated ``bastion.yaml`` for anything
else (routes, an OpenAPI document...); ``wrk_headers`` are sent with every request
(a credential, once authentication exists).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, assert_never

from proxybench.servers import RunningServer, start_bastion, start_nginx_proxy

#: The two baselines every ratio is taken against.
DIRECT = "direct"
NGINX = "nginx"
#: Top-level policies that switch off every stage enabled by default.
NO_STAGES: Mapping[str, Any] = {"headers": {"enabled": False}}

Kind = Literal["direct", "nginx", "bastion"]


@dataclass(frozen=True)
class Scenario:
    """One target of the load: a name, what it is, and how to start it."""

    name: str
    description: str
    kind: Kind
    policies: Mapping[str, Any] | None = None
    access_log: bool = False
    overrides: Mapping[str, Any] = field(default_factory=dict)
    wrk_headers: tuple[str, ...] = ()


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(DIRECT, "the upstream itself (nginx returning the 109-byte JSON), no proxy", "direct"),
    Scenario(NGINX, "nginx as a plain reverse proxy, keep-alive pool to the upstream", "nginx"),
    Scenario("bastion-none", "Bastion with no stages, access log off", "bastion",
             policies=NO_STAGES),
    Scenario("bastion-default", "Bastion with the default pipeline (headers stage) and the "
             "access log written to a file", "bastion", access_log=True),
)


@dataclass(frozen=True)
class StartContext:
    """What every scenario's server needs to start."""

    stack: contextlib.ExitStack  # stops every server started, in reverse order
    folder: Path
    upstream: RunningServer
    workers: int
    bastion_bin: Path


def start_scenario(scenario: Scenario, ctx: StartContext) -> RunningServer:
    """Start the server a scenario measures (the upstream itself for ``direct``)."""
    if scenario.kind == "direct":
        return ctx.upstream
    if scenario.kind == "nginx":
        return start_nginx_proxy(ctx.stack, scenario.name, ctx.folder, ctx.upstream.port, ctx.workers)
    if scenario.kind == "bastion":
        return start_bastion(
            ctx.stack, scenario.name, ctx.folder, bastion_bin=ctx.bastion_bin,
            upstream_port=ctx.upstream.port, workers=ctx.workers,
            access_log=scenario.access_log, policies=scenario.policies,
            overrides=scenario.overrides,
        )
    assert_never(scenario.kind)


def select(names: list[str] | None) -> tuple[Scenario, ...]:
    """The scenarios named (baselines always included), in :data:`SCENARIOS` order."""
    if not names:
        return SCENARIOS
    known = {s.name for s in SCENARIOS}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    wanted = {*names, DIRECT, NGINX}
    return tuple(s for s in SCENARIOS if s.name in wanted)
