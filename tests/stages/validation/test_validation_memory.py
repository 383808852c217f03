"""Operations without a body remember the parameters of valid requests (bounded, per worker)."""

from __future__ import annotations

import pytest

from bastion.stages.validation import check
from bastion.stages.validation.stage import ValidationStage
from tests.stages.validation.helpers import body_stage, param_stage, send

PARAMS = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 50}},
    {"name": "X-Tenant", "in": "header", "schema": {"type": "string", "enum": ["a", "b"]}},
    {"name": "theme", "in": "cookie", "schema": {"type": "string", "enum": ["dark", "light"]}},
]


def remembered(stage: ValidationStage) -> int:
    assert stage._checker is not None
    return stage._checker.remembered


def test_a_valid_parameter_set_is_remembered_and_an_invalid_one_never() -> None:
    stage = param_stage(PARAMS)
    ok = {"query": "limit=20", "headers": [("x-tenant", "a"), ("cookie", "theme=dark")]}
    assert send(stage, **ok)[0] is None
    assert remembered(stage) == 1
    assert send(stage, **ok)[0] is None  # answered from memory
    assert remembered(stage) == 1
    assert send(stage, query="limit=500", headers=ok["headers"])[0] is not None
    assert remembered(stage) == 1


@pytest.mark.parametrize(
    "changed",
    [
        {"query": "limit=20", "headers": [("x-tenant", "c"), ("cookie", "theme=dark")]},
        {"query": "limit=20", "headers": [("x-tenant", "a"), ("cookie", "theme=blue")]},
        {"query": "limit=20", "headers": [("x-tenant", "a"), ("x-tenant", "b"), ("cookie", "theme=dark")]},
        {"query": "limit=20&limit=30", "headers": [("x-tenant", "a"), ("cookie", "theme=dark")]},
    ],
)
def test_memory_is_keyed_on_every_declared_input(changed: dict[str, object]) -> None:
    """The same query with a different declared header or cookie, a repeated header or a
    repeated parameter is checked again, and refused."""
    stage = param_stage(PARAMS)
    assert send(stage, query="limit=20", headers=[("x-tenant", "a"), ("cookie", "theme=dark")])[0] is None
    outcome, _ = send(stage, **changed)
    assert outcome is not None and outcome.status == 400


def test_undeclared_headers_do_not_defeat_the_memory() -> None:
    stage = param_stage(PARAMS)
    for trace in ("t1", "t2", "t3"):
        headers = [("x-tenant", "a"), ("cookie", "theme=dark"), ("traceparent", trace)]
        assert send(stage, query="limit=20", headers=headers)[0] is None
    assert remembered(stage) == 1


def test_the_memory_is_bounded() -> None:
    """One memory per worker, shared by every operation, never past MEMORY_ENTRIES: past
    that it starts over."""
    stage = param_stage(PARAMS[:1])
    for i in range(check.MEMORY_ENTRIES + 10):
        assert send(stage, query=f"limit={i % 50}&n={i}")[0] is None
        assert len(check._MEMORY.valid) <= check.MEMORY_ENTRIES
    assert 0 < remembered(stage) < check.MEMORY_ENTRIES


def test_operations_do_not_share_what_they_remember() -> None:
    """A parameter set valid for one operation is checked again for another."""
    loose = param_stage([{"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 50}}])
    strict = param_stage([{"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 10}}])
    assert send(loose, query="limit=20")[0] is None
    outcome, _ = send(strict, query="limit=20")
    assert outcome is not None and outcome.status == 400


def test_operations_with_a_body_remember_nothing() -> None:
    stage = body_stage({"type": "object"})
    assert send(stage, json={"a": 1})[0] is None
    assert remembered(stage) == 0
