"""Quotas and rate limits per consumer plan: top-level ``plans``, picked by a consumer's
``plan`` (declared in bastion.yaml or created with the CLI), held over every route, shown to
the consumer in ``RateLimit``/``RateLimit-Policy`` and to the operator by
``bastion consumers show``. Through a real gateway, a real SQLite store, the real CLI, and
the memory backend (the worker's settable clock) or a real redis-server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.config import ConfigError, load_config
from bastion.proxy.worker import Worker
from bastion.stages.ratelimit.config import PlanLimits
from bastion.testing import free_port
from tests.proxy.scripted import ScriptedUpstream
from tests.stages.ratelimit.test_gateway import ManualClock, identity, redis_backends, run, serving, signed_in

PLANS = {"free": {"rate_limits": [{"limit": 2, "window": "1s"}], "quotas": [{"limit": 3, "window": "1d"}]}}
FREE_POLICY = '"free-rate-2-per-1s";q=2;w=1, "free-quota-3-per-86400s";q=3;w=86400'


def write(folder: Path, upstream: ScriptedUpstream, backends: dict[str, Any] | None = None,
          headers_stage: bool = True) -> tuple[Path, int]:
    """alice (declared, plan free), bob (no plan); /a has no limit of its own, /b one by IP.
    Without the ``headers`` stage (and ``access``) the rate limit is the only response stage:
    a complete answer's head is forwarded as bytes with its fields appended."""
    port = free_port()
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "access_log": {"enabled": False},
        "consumers": [{"name": "alice", "plan": "free"}, {"name": "bob"}],
        "plans": PLANS,
        "services": [{"name": "api", "upstream": upstream.url, "routes": [
            {"path": "/a", "prefix": True, "public": True},
            {"path": "/b", "prefix": True, "public": True,
             "policies": {"ratelimit": {"limit": 100, "window": "1m", "by": "ip", "name": "per-ip"}}},
        ]}],
    }
    if backends is not None:
        config["backends"] = backends
    if not headers_stage:
        config["policies"] = {"headers": {"enabled": False}, "access": {"enabled": False}}
    path = folder / "bastion.yaml"
    path.write_text(json.dumps(config))
    return path, port


def bastion(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bastion", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60, check=False)


@pytest.mark.parametrize("headers_stage", [True, False], ids=["with-headers-stage", "fields-only"])
def test_a_plan_holds_its_consumers_over_every_route(tmp_path: Path, upstream: ScriptedUpstream,
                                                     headers_stage: bool) -> None:
    """Plan free (2 per second, 3 per day): alice gets 2 then 429 on /a; a second later her
    third request of the day passes on /b (the quota counts over every route, after /b's own
    limit by IP), and the next is refused by the quota with ``r=0`` for it. Every answer
    shows the plan's policies. carol, put on the plan with the CLI, is held too; bob (no
    plan) and anonymous requests are not, and get no fields on a route without limits. The
    same whether the answer's head is rebuilt or forwarded with the fields appended."""
    path, port = write(tmp_path, upstream, headers_stage=headers_stage)
    created = bastion("consumers", "create", "carol", "--plan", "free", "-c", str(path), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    clock = ManualClock()
    worker = Worker(str(path), identity=identity(), load=signed_in, clock=clock)

    async def scenario(client: httpx.AsyncClient) -> dict[str, list[httpx.Response]]:
        async def get(route: str, user: str | None) -> httpx.Response:
            headers = {"x-test-user": user} if user else {}
            return await client.get(f"http://127.0.0.1:{port}{route}", headers=headers)

        alice = [await get("/a", "alice") for _ in range(3)]
        clock.now += 1
        alice.append(await get("/b", "alice"))
        clock.now += 1
        alice.append(await get("/a", "alice"))
        carol = [await get("/a", "carol") for _ in range(3)]
        others = [await get("/a", "bob") for _ in range(5)] + [await get("/a", None)]
        return {"alice": alice, "carol": carol, "others": others}

    answers = run(lambda: serving([worker], scenario))
    alice = answers["alice"]
    assert [a.status_code for a in alice] == [200, 200, 429, 200, 429]
    assert alice[0].headers["ratelimit-policy"] == FREE_POLICY
    assert alice[0].headers["ratelimit"] == '"free-rate-2-per-1s";r=1;t=1, "free-quota-3-per-86400s";r=2;t=28800'
    assert alice[3].headers["ratelimit-policy"] == '"per-ip";q=100;w=60, ' + FREE_POLICY
    assert alice[3].headers["ratelimit"].endswith('"free-quota-3-per-86400s";r=0;t=86399')
    assert '"free-quota-3-per-86400s";r=0;' in alice[4].headers["ratelimit"]
    assert alice[4].headers["content-type"] == "application/problem+json"
    assert [a.status_code for a in answers["carol"]] == [200, 200, 429]
    assert [a.status_code for a in answers["others"]] == [200] * 6
    assert all("ratelimit" not in a.headers for a in answers["others"])


def test_a_consumer_put_on_a_plan_is_held_once_the_store_poller_sees_it(tmp_path: Path,
                                                                       upstream: ScriptedUpstream) -> None:
    """The plans are a view kept by the worker's one store poller (under store-poller:<url>,
    shared with the API keys and certificates): dave, created on plan free with the CLI while
    the worker runs, is not held before the poller's next poll and is held after it (2 per
    second, then 429 with the plan's policy)."""
    from bastion.stages.ratelimit.plans import SHARED_KEY, PlanBook
    from bastion.state.poller import StorePoller

    path, port = write(tmp_path, upstream)
    clock = ManualClock()
    worker = Worker(str(path), identity=identity(), load=signed_in, clock=clock)

    async def scenario(client: httpx.AsyncClient) -> tuple[list[int], list[httpx.Response]]:
        async def get() -> httpx.Response:
            return await client.get(f"http://127.0.0.1:{port}/a", headers={"x-test-user": "dave"})

        services = worker.services
        assert services is not None
        poller = services.shared("store-poller:" + services.store.url, lambda: None)
        book = services.shared(SHARED_KEY, lambda: None)
        assert isinstance(poller, StorePoller) and isinstance(book, PlanBook)
        await poller.aclose()  # no background polls: the refresh below is the poll
        created = await asyncio.to_thread(
            bastion, "consumers", "create", "dave", "--plan", "free", "-c", str(path), cwd=tmp_path
        )
        assert created.returncode == 0, created.stderr
        before = [(await get()).status_code for _ in range(3)]
        await poller.refresh()
        assert book.plan_of("dave") == "free"
        clock.now += 1
        return before, [await get() for _ in range(3)]

    before, after = run(lambda: serving([worker], scenario))
    assert before == [200, 200, 200]
    assert [a.status_code for a in after] == [200, 200, 429]
    assert after[2].headers["ratelimit-policy"] == FREE_POLICY


def test_consumers_show_with_the_defaults(tmp_path: Path, upstream: ScriptedUpstream) -> None:
    """With the default (memory) backend, ``bastion consumers show`` prints the consumer, its
    plan and the plan's limits, and says why it cannot show what is left; a consumer without
    a plan says so; an unknown one is an error."""
    path, _ = write(tmp_path, upstream)
    shown = bastion("consumers", "show", "alice", "-c", str(path), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = [" ".join(line.split()) for line in shown.stdout.splitlines()]
    assert "plan: free" in lines and "source: config" in lines
    assert "LIMIT KIND ALLOWED WINDOW LEFT WHOLE IN" in lines
    assert "free-rate-2-per-1s rate limit 2 1s - -" in lines
    assert "free-quota-3-per-86400s quota 3 1d - -" in lines
    assert any(line.startswith("left: not shown with backends.state: memory") for line in lines)
    bob = bastion("consumers", "show", "bob", "-c", str(path), cwd=tmp_path)
    assert bob.returncode == 0 and "no plan: only the routes' own rate limits apply" in bob.stdout
    nobody = bastion("consumers", "show", "nobody", "-c", str(path), cwd=tmp_path)
    assert nobody.returncode == 1 and "no consumer named 'nobody'" in nobody.stderr


def test_consumers_show_reads_what_is_left_from_redis(tmp_path: Path, upstream: ScriptedUpstream,
                                                      redis_url: str) -> None:
    """On Redis, after two of alice's requests, ``consumers show`` reads her quota from
    Redis: 1 of 3 left today."""
    path, port = write(tmp_path, upstream, redis_backends(redis_url))
    worker = Worker(str(path), identity=identity(), load=signed_in)

    async def scenario(client: httpx.AsyncClient) -> list[int]:
        return [(await client.get(f"http://127.0.0.1:{port}/a", headers={"x-test-user": "alice"})).status_code
                for _ in range(2)]

    assert run(lambda: serving([worker], scenario)) == [200, 200]
    shown = bastion("consumers", "show", "alice", "-c", str(path), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    (quota,) = [" ".join(line.split()) for line in shown.stdout.splitlines() if "quota" in line]
    assert quota.startswith("free-quota-3-per-86400s quota 3 1d 1 ")


def test_plans_are_checked_where_they_are_written(tmp_path: Path) -> None:
    """A declared consumer on an undefined plan, and a plan limit with its own ``by``, are
    errors naming the field; a plan limit named like a route's limit is one too."""
    (tmp_path / "bastion.yaml").write_text("""\
consumers: [{name: alice, plan: gold}]
plans:
  free:
    quotas: [{limit: 10, window: 1d, by: ip}]
services: [{name: api, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]
""")
    try:
        load_config(tmp_path / "bastion.yaml")
    except ConfigError as exc:
        errors = [str(i) for i in exc.issues]
    else:
        raise AssertionError("the configuration loaded")
    assert any("plan 'gold', which `plans` does not define (it defines: free)" in e for e in errors), errors
    (tmp_path / "bastion.yaml").write_text("""\
plans:
  free:
    quotas: [{limit: 10, window: 1d, by: ip}]
services: [{name: api, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]
""")
    try:
        load_config(tmp_path / "bastion.yaml")
    except ConfigError as exc:
        errors = [str(i) for i in exc.issues]
    assert len(errors) == 1, errors
    assert "bastion.yaml:3" in errors[0] and "plans.free.quotas" in errors[0]
    assert "a plan's limits count per consumer: leave `by` out (got 'ip')" in errors[0]
    (tmp_path / "bastion.yaml").write_text("""\
plans:
  free:
    quotas: [{limit: 10, window: 1d, name: per-ip}]
services:
  - name: api
    upstream: 'http://127.0.0.1:9'
    routes: [{path: /, public: true, policies: {ratelimit: {limit: 5, window: 1s, by: ip, name: per-ip}}}]
""")
    try:
        load_config(tmp_path / "bastion.yaml")
    except ConfigError as exc:
        errors = [str(i) for i in exc.issues]
    assert len(errors) == 1, errors
    assert "the plan 'free' has a limit named 'per-ip', like one of the route's; rename one" in errors[0]


def test_a_plans_scopes_are_scope_tokens(tmp_path: Path) -> None:
    """``plans.<name>.scopes`` (what the developer portal lets keys carry) loads alone, sorted
    and without repeats; a scope that is not an RFC 6749 scope token is an error naming the
    field and its line."""
    (tmp_path / "bastion.yaml").write_text("""\
plans:
  free: {scopes: [orders:read, books:read, books:read]}
services: [{name: api, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]
""")
    loaded = load_config(tmp_path / "bastion.yaml")
    assert PlanLimits.model_validate(loaded.config.plans["free"]).scopes == ["books:read", "orders:read"]
    (tmp_path / "bastion.yaml").write_text("""\
plans:
  free:
    scopes: ['books read']
services: [{name: api, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]
""")
    try:
        load_config(tmp_path / "bastion.yaml")
    except ConfigError as exc:
        errors = [str(i) for i in exc.issues]
    else:
        raise AssertionError("the configuration loaded")
    assert len(errors) == 1, errors
    assert "bastion.yaml:3" in errors[0] and "plans.free.scopes" in errors[0]
    assert "'books read' is not a scope" in errors[0]
