"""The named scenarios the benchmark runs, in the order they run in each round.

Adding one is a few lines in :data:`SCENARIOS`, e.g. a stage on its own::

    Scenario("bastion-ratelimit", "Bastion with only the rate-limit stage", "bastion",
             policies={**NO_STAGES, "ratelimit": {"requests": 10**9, "per": "1s"}}),

``policies`` becomes the config's top-level ``policies`` (None: every stage at its
defaults); ``overrides`` is merged into the generated ``bastion.yaml`` for anything
else (routes, an OpenAPI document...); ``wrk_headers`` are sent with every request
(a credential, once authentication exists).

Every scenario is loaded with the same requests: ``GET /`` by default (``GET <path>``
with ``--path``, e.g. one of the JSON documents of :mod:`proxybench.documents`), or with
``--mix`` the small JSON API mix of :mod:`proxybench.mix`. Scenarios marked ``mix_only`` (those
that route or inspect by the mix's API) run only with ``--mix``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, assert_never

from proxybench import documents, mix
from proxybench.mix import MixRequest
from proxybench.modsecurity import start_modsecurity
from proxybench.servers import RunningServer, start_bastion, start_nginx_proxy

#: The two baselines every ratio is taken against.
DIRECT = "direct"
NGINX = "nginx"
#: With --mix, two more references: Bastion with no stages, and nginx + ModSecurity + CRS.
BASTION_NONE = "bastion-none"
INSPECT = "bastion-inspect"
MODSEC = "nginx-modsec-pl1"
#: Issue 16's response protection (schema filter + redaction), best read with --path.
PROTECT = "bastion-protect"
#: Issue 15's rate limit on the memory backend (one worker only).
RLMEM = "bastion-rlmem"
#: Top-level policies that switch off every stage enabled by default.
NO_STAGES: Mapping[str, Any] = {"access": {"enabled": False}, "headers": {"enabled": False}}

Kind = Literal["direct", "nginx", "bastion", "modsecurity"]


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
    #: Bastion's routes come from this OpenAPI document (written into the run folder)
    #: instead of one catch-all route.
    openapi: Mapping[str, Any] | None = None
    #: ModSecurity's CRS paranoia level (kind "modsecurity").
    paranoia: int = 1
    #: Runs only with --mix (it routes or inspects by the mix's API).
    mix_only: bool = False
    #: Requests it must refuse with the given status before it is measured: proof that
    #: the inspection being measured is on.
    refuses: tuple[tuple[MixRequest, int], ...] = ()
    #: The catch-all route requires authentication and every request carries an API key
    #: (made by ``bastion keys create`` in the scenario's own SQLite store).
    api_key: bool = False
    #: Before it is measured, ``GET /leak`` must come back with its card number masked and
    #: its undeclared property removed: proof that response protection is on.
    protects: bool = False
    #: Runs only with ``--workers 1`` (a stage on the memory state backend, which Bastion
    #: refuses with more than one worker): named with more, run.py stops with an error;
    #: not named, it is left out.
    one_worker: bool = False


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(DIRECT, "the upstream itself (nginx returning the 109-byte JSON), no proxy", "direct"),
    Scenario(NGINX, "nginx as a plain reverse proxy, keep-alive pool to the upstream", "nginx"),
    Scenario(BASTION_NONE, "Bastion with no stages, access log off", "bastion",
             policies=NO_STAGES),
    Scenario("bastion-default", "Bastion with the default pipeline (headers stage) and the "
             "access log written to a file", "bastion", access_log=True),
    Scenario("bastion-apikey", "Bastion with API-key authentication: the catch-all route "
             "requires it, every request carries a valid key (Authorization: Bearer) checked by the auth "
             "stage against the store's snapshot, and the key is removed before forwarding; "
             "other stages and the access log off", "bastion", policies=NO_STAGES, api_key=True),
    Scenario("bastion-audit", "Bastion with no stages and the audit log on (issue 17): every request's record "
             "spooled and written to the store (its own SQLite file in the run folder); access log off", "bastion",
             policies=NO_STAGES, overrides={"audit": {"enabled": True, "spool_dir": "spool-audit"},
                                            "store": {"url": "sqlite:///bastion-audit.db"}}),
    Scenario("bastion-monitor", "Bastion with no stages, the audit log and the threat detectors on (issue 17's "
             "audit log + metrics + detectors; metrics are always on); access log off", "bastion",
             policies=NO_STAGES, overrides={"audit": {"enabled": True, "spool_dir": "spool-monitor"},
                                            "store": {"url": "sqlite:///bastion-monitor.db"},
                                            "detectors": {"enabled": True}}),
    Scenario(INSPECT, "Bastion with input defense: the mix's three operations routed from an "
             "OpenAPI 3.1 document, request validation (on by default) and detection "
             "(block, paranoia 1); headers stage and access log off", "bastion",
             policies={**NO_STAGES, "detection": {"paranoia": 1}},
             openapi=mix.OPENAPI, mix_only=True,
             refuses=((mix.ATTACK, 403), (mix.INVALID, 400))),
    Scenario(MODSEC, "nginx + ModSecurity 3 + OWASP CRS at paranoia 1 (blocking, JSON bodies "
             "parsed), the nginx proxy's keep-alive pool to the upstream", "modsecurity",
             paranoia=1, mix_only=True, refuses=((mix.ATTACK, 403),)),
    Scenario(PROTECT, "Bastion with response protection: routes from an OpenAPI 3.1 document "
             "declaring the documents' fields, response schema filtering and redaction of card "
             "numbers, SSNs and secrets (nothing to mask: the whole body is scanned); headers "
             "stage and access log off", "bastion",
             policies={**NO_STAGES, "response": {"schema": "filter"},
                       "redact": {"types": ["card", "ssn", "secrets"]}},
             openapi=documents.OPENAPI, protects=True),
    Scenario(RLMEM, "Bastion with a memory rate limit: two limits that never refuse (10^9 per hour "
             "by client IP, 10^9 per day globally) on the memory state backend; headers stage and "
             "access log off. Needs --workers 1", "bastion",
             policies={**NO_STAGES, "ratelimit": [{"limit": 10**9, "window": "1h", "by": "ip"},
                                                   {"limit": 10**9, "window": "1d", "by": "global"}]},
             one_worker=True),
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
        openapi = None
        if scenario.openapi is not None:
            openapi = ctx.folder / f"{scenario.name}.openapi.json"
            openapi.write_text(json.dumps(scenario.openapi, indent=2) + "\n")  # JSON is YAML
        return start_bastion(
            ctx.stack, scenario.name, ctx.folder, bastion_bin=ctx.bastion_bin,
            upstream_port=ctx.upstream.port, workers=ctx.workers,
            access_log=scenario.access_log, policies=scenario.policies,
            overrides=scenario.overrides, openapi=openapi, api_key=scenario.api_key,
        )
    if scenario.kind == "modsecurity":
        return start_modsecurity(ctx.stack, ctx.folder, scenario.paranoia, ctx.upstream.port,
                                 ctx.workers, name=scenario.name)
    assert_never(scenario.kind)


def baselines(use_mix: bool) -> tuple[str, ...]:
    """The scenarios every run includes: what the ratios are taken against."""
    return (DIRECT, NGINX, BASTION_NONE, MODSEC) if use_mix else (DIRECT, NGINX)


def select(names: list[str] | None, use_mix: bool = False, workers: int = 2) -> tuple[Scenario, ...]:
    """The scenarios named (baselines always included), in :data:`SCENARIOS` order; without
    ``use_mix``, only those that do not need the mix; with more than one worker, only those
    that run with several (a one-worker scenario named then is an error; 2: run.py's default)."""
    runnable = tuple(s for s in SCENARIOS if (use_mix or not s.mix_only) and (workers == 1 or not s.one_worker))
    if not names:
        return runnable
    known = {s.name for s in SCENARIOS}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    need_mix = sorted(s.name for s in SCENARIOS if s.name in names and s.mix_only and not use_mix)
    if need_mix:
        raise ValueError(f"scenario(s) {', '.join(need_mix)} only run with --mix")
    one_worker = sorted(s.name for s in SCENARIOS if s.name in names and s.one_worker and workers != 1)
    if one_worker:
        raise ValueError(
            f"scenario(s) {', '.join(one_worker)} need --workers 1 (asked: {workers}): their stage keeps "
            "its state on the memory backend, which Bastion refuses with more than one worker"
        )
    wanted = {*names, *baselines(use_mix)}
    if PROTECT in wanted:
        wanted.add(BASTION_NONE)  # what its ratio is taken against
    return tuple(s for s in runnable if s.name in wanted)
