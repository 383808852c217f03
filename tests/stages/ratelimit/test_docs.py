"""The configuration examples of docs/ratelimit.md load as written, and give the limits the
page says they give."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from bastion.config import load_config
from bastion.stages.ratelimit import RateLimitBodyStage, RateLimitStage

DOC = Path(__file__).parents[3] / "docs" / "ratelimit.md"


def examples() -> dict[str, str]:
    """The page's YAML blocks whose first line names their file (``# bastion.yaml``)."""
    out: dict[str, str] = {}
    for block in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S):
        first = block.splitlines()[0]
        if first.startswith("# ") and first.split()[1].endswith(".yaml"):
            out[first.split()[1]] = block
    return out


def test_the_examples_load_and_limit_what_they_say(tmp_path: Path) -> None:
    """bastion.yaml and shop.yaml from the page load together; the inline limit, ``limits``
    and the bare list (in bastion.yaml and as ``x-bastion-rate-limit``) each become the
    route's limits, in order, after the service's inline limit that the page says still applies."""
    files = examples()
    assert {"bastion.yaml", "shop.yaml"} <= set(files)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    loaded = load_config(tmp_path / "bastion.yaml")
    policies = {r.id: s.policy_header for r in loaded.routes for s in r.built if isinstance(s, RateLimitStage)}
    service = '"consumer-20-per-10s";q=20;w=10, '  # the service's inline limit, merged into each route's
    assert policies["shop:/search"] == (
        service + '"burst";q=10;w=1, "header-x-tenant-10000-per-86400s";q=10000;w=86400')
    assert policies["shop:/export"] == (
        service + '"consumer-10-per-1s";q=10;w=1, "consumer-10000-per-86400s";q=10000;w=86400')
    assert policies["shop:POST /orders"] == '"consumer-5-per-3600s";q=5;w=3600'
    assert policies["shop:GET /reports"] == (
        service + '"consumer-1-per-1s";q=1;w=1, "consumer-100-per-86400s";q=100;w=86400')


def test_the_login_example_limits_per_address_then_per_account(tmp_path: Path) -> None:
    """login.yaml from the page, behind a service: the login route gets the body stage, its
    IP limit decided on the head and its account limit (``$.username`` read as
    ``/username``) on the body."""
    (tmp_path / "login.yaml").write_text(examples()["login.yaml"])
    (tmp_path / "bastion.yaml").write_text(
        "services: [{name: accounts, upstream: 'http://127.0.0.1:9', openapi: login.yaml}]\n")
    [stage] = [s for r in load_config(tmp_path / "bastion.yaml").routes for s in r.built
               if isinstance(s, RateLimitBodyStage)]
    assert [limit.by for limit in stage.head_limits] == ["ip"]
    assert [(limit.by, limit.what) for limit in stage.body_limits] == [("body", "/username")]
    assert stage.policy_header == '"ip-20-per-60s";q=20;w=60, "body-username-5-per-900s";q=5;w=900'


def test_the_policies_snippets_load(tmp_path: Path) -> None:
    """Every ``policies:`` snippet of the page (the failure_mode: open one among them) is
    valid at the top of a bastion.yaml, and gives its route a rate limit."""
    snippets = [textwrap.dedent(b) for b in re.findall(r"```yaml\n(.*?)\s*```", DOC.read_text(), re.S)
                if textwrap.dedent(b).startswith("policies:")]
    assert snippets and any("failure_mode: open" in s for s in snippets)
    for snippet in snippets:
        (tmp_path / "bastion.yaml").write_text(
            snippet + "\nservices: [{name: api, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]\n")
        built = [s for r in load_config(tmp_path / "bastion.yaml").routes for s in r.built
                 if isinstance(s, RateLimitStage)]
        assert len(built) == 1, snippet


def test_the_plans_example_loads(tmp_path: Path) -> None:
    """plans.yaml from the page loads; its route (with no limit of its own) gets the stage,
    holding free consumers to 5 per second, 1000 per day and 20000 per 30 days."""
    (tmp_path / "bastion.yaml").write_text(examples()["plans.yaml"])
    [stage] = [s for r in load_config(tmp_path / "bastion.yaml").routes for s in r.built
               if isinstance(s, RateLimitStage)]
    assert not stage.limits
    assert [rule.policy_name for rule in stage.config.plans["free"].rules_of("free")] == [
        "free-rate-5-per-1s", "free-quota-1000-per-86400s", "free-quota-20000-per-2592000s"]


def test_the_scaling_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """instances.yaml from docs/scaling.md (Redis behind Sentinel, PostgreSQL, a rate limit
    with failure_mode open for 3 instances) is a valid configuration as written."""
    text = (DOC.parent / "scaling.md").read_text()
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if b.startswith("# instances.yaml")]
    monkeypatch.setenv("PGPASSWORD", "example")
    (tmp_path / "bastion.yaml").write_text(block)
    loaded = load_config(tmp_path / "bastion.yaml")
    assert loaded.config.backends.redis is not None
    assert loaded.config.backends.redis.url.startswith("redis+sentinel://")
    [stage] = [s for r in loaded.routes for s in r.built if isinstance(s, RateLimitStage)]
    assert stage.config.failure_mode == "open" and stage.config.instances == 3
