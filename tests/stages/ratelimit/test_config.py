"""Rate limits as users write them: inline or several, in bastion.yaml or OpenAPI, and
errors that name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

from bastion.config import load_config
from bastion.stages.ratelimit import RateLimitStage
from tests.config.util import errors_of, write

OPENAPI = """\
openapi: 3.1.0
info: {title: shop, version: "1"}
paths:
  /books:
    get:
      operationId: listBooks
      x-bastion-rate-limit: {limit: 20, window: 10s, by: consumer}
      responses: {"200": {description: ok}}
  /authors:
    get:
      operationId: listAuthors
      responses: {"200": {description: ok}}
"""


def stages(path: Path) -> dict[str, RateLimitStage]:
    loaded = load_config(path)
    return {r.id: s for r in loaded.routes for s in r.built if isinstance(s, RateLimitStage)}


def test_the_openapi_extension_and_several_limits(tmp_path: Path) -> None:
    """``x-bastion-rate-limit`` on an operation limits that operation only; ``limits`` in
    bastion.yaml gives several, each named in ``RateLimit-Policy`` with its quota and window."""
    write(tmp_path, OPENAPI, "shop.yaml")
    path = write(tmp_path, """\
        services:
          - name: shop
            upstream: http://127.0.0.1:9
            openapi: shop.yaml
          - name: search
            upstream: http://127.0.0.1:9
            policies:
              ratelimit:
                limits:
                  - {limit: 10, window: 1s, by: ip, name: burst}
                  - {limit: 10000, window: 1d, by: "header:X-Tenant"}
            routes: [{path: /search, public: true}]
        """)
    built = stages(path)
    assert set(built) == {"listBooks", "search:/search"}
    assert built["listBooks"].policy_header == '"consumer-20-per-10s";q=20;w=10'
    assert built["search:/search"].policy_header == (
        '"burst";q=10;w=1, "header-x-tenant-10000-per-86400s";q=10000;w=86400')
    assert built["search:/search"].uses_state


def test_a_layer_without_a_limit_adds_none(tmp_path: Path) -> None:
    """A service-wide layer that only sets ``failure_mode`` puts the stage on no route that
    has no limit of its own, and applies to the one that has."""
    path = write(tmp_path, """\
        services:
          - name: api
            upstream: http://127.0.0.1:9
            policies: {ratelimit: {failure_mode: open}}
            routes:
              - {path: /free, public: true}
              - {path: /paid, public: true, policies: {ratelimit: {limit: 5, window: 1m}}}
        """)
    built = stages(path)
    assert list(built) == ["api:/paid"]
    assert built["api:/paid"].config.failure_mode == "open"


def test_mistakes_are_reported_with_file_line_and_field(tmp_path: Path) -> None:
    """A window that is not a duration, an unknown key, a limit without a window, two limits
    with one name: each is an error naming where and what."""
    path = write(tmp_path, """\
        services:
          - name: api
            upstream: http://127.0.0.1:9
            routes:
              - path: /a
                public: true
                policies: {ratelimit: {limit: 5, window: 10 minutes}}
              - path: /b
                public: true
                policies: {ratelimit: {limit: 5, window: 10s, by: user}}
              - path: /c
                public: true
                policies: {ratelimit: {limit: 5}}
              - path: /d
                public: true
                policies: {ratelimit: {limits: [{limit: 1, window: 1s, name: x}, {limit: 2, window: 1h, name: x}]}}
        """)
    errors = errors_of(path)
    assert len(errors) == 4, errors
    assert any("bastion.yaml:7" in e and "window" in e and "'10 minutes' is not a duration" in e
               for e in errors), errors
    assert any("bastion.yaml:10" in e and "by" in e and "'user' is not a rate limit key" in e
               and "body:/POINTER" in e for e in errors), errors
    assert any("bastion.yaml:13" in e and "needs both `limit` and `window`" in e for e in errors), errors
    assert any("bastion.yaml:16" in e and "two limits share the name 'x'" in e for e in errors), errors


def test_the_bare_list_form_in_bastion_yaml_and_openapi(tmp_path: Path) -> None:
    """A bare list in place of the settings is ``limits``: in ``x-bastion-rate-limit`` and in
    ``policies.ratelimit``, with a broader layer's ``failure_mode`` still applied to it."""
    write(tmp_path, """\
        openapi: 3.1.0
        info: {title: shop, version: "1"}
        paths:
          /login:
            post:
              operationId: login
              x-bastion-rate-limit: [{limit: 10, window: 1s, by: ip}, {limit: 10000, window: 1d, by: global}]
              responses: {"200": {description: ok}}
        """, "shop.yaml")
    path = write(tmp_path, """\
        policies: {ratelimit: {failure_mode: open}}
        services:
          - name: shop
            upstream: http://127.0.0.1:9
            openapi: shop.yaml
          - name: search
            upstream: http://127.0.0.1:9
            routes:
              - path: /search
                public: true
                policies:
                  ratelimit:
                    - {limit: 10, window: 1s, by: consumer}
                    - {limit: 10000, window: 1d}
        """)
    built = stages(path)
    assert built["login"].policy_header == '"ip-10-per-1s";q=10;w=1, "global-10000-per-86400s";q=10000;w=86400'
    assert built["search:/search"].policy_header == (
        '"consumer-10-per-1s";q=10;w=1, "consumer-10000-per-86400s";q=10000;w=86400')
    assert built["login"].config.failure_mode == "open"
    assert built["search:/search"].config.failure_mode == "open"


def test_mistakes_in_the_bare_list_form_point_into_the_list(tmp_path: Path) -> None:
    """An unknown key in the second item of a bare list is reported at that item's line and
    as ``...ratelimit[1].by``; an item that is not a mapping, and a bare list given to a stage
    that takes none, are errors too."""
    write(tmp_path, """\
        openapi: 3.1.0
        info: {title: shop, version: "1"}
        paths:
          /login:
            post:
              x-bastion-rate-limit:
                - {limit: 10, window: 1s}
                - {limit: 10, window: 1s, by: username}
              responses: {"200": {description: ok}}
        """, "shop.yaml")
    path = write(tmp_path, """\
        services:
          - name: shop
            upstream: http://127.0.0.1:9
            openapi: shop.yaml
          - name: api
            upstream: http://127.0.0.1:9
            routes:
              - path: /a
                public: true
                policies:
                  ratelimit:
                    - {limit: 10, window: 1s}
                    - 10/s
              - path: /b
                public: true
                policies: {headers: [{limit: 1, window: 1s}]}
        """)
    errors = errors_of(path)
    assert len(errors) == 3, errors
    assert any("shop.yaml:8" in e and "x-bastion-rate-limit[1].by" in e and "'username' is not a rate limit key" in e
               for e in errors), errors
    assert any("bastion.yaml:13" in e and "ratelimit[1]" in e for e in errors), errors
    assert any("bastion.yaml:16" in e and "policies.headers" in e and "expected a mapping of stage settings, not a list"
               in e for e in errors), errors


def test_a_body_member_is_a_pointer_or_a_plain_jsonpath(tmp_path: Path) -> None:
    """``body:$.user.name`` is ``body:/user/name``; a recursive JSONPath, a pointer without
    its leading slash or with a space is an error saying what to write."""
    path = write(tmp_path, """\
        services:
          - name: api
            upstream: http://127.0.0.1:9
            routes:
              - path: /a
                public: true
                policies: {ratelimit: [{limit: 5, window: 1m, by: "body:$.user.name"}]}
              - path: /b
                public: true
                policies:
                  ratelimit:
                    - {limit: 5, window: 1m, by: "body:$..name"}
                    - {limit: 5, window: 1m, by: "body:username"}
                    - {limit: 5, window: 1m, by: "body:/user name"}
        """)
    errors = errors_of(path)
    assert len(errors) == 3, errors
    for line, item, where in ((12, 0, "$..name"), (13, 1, "username"), (14, 2, "/user name")):
        assert any(f"bastion.yaml:{line}" in e and f"ratelimit[{item}].by" in e
                   and f"{where!r} is not a body member: write a JSON pointer such as /username" in e
                   for e in errors), errors
    fine = write(tmp_path, """\
        services:
          - name: api
            upstream: http://127.0.0.1:9
            routes:
              - path: /a
                public: true
                policies: {ratelimit: [{limit: 5, window: 1m, by: "body:$.user.name"}]}
        """, "fine.yaml")
    assert stages(fine)["api:/a"].policy_header == '"body-user-name-5-per-60s";q=5;w=60'


def test_a_sliding_window_is_chosen_per_limit_and_kept_small(tmp_path: Path) -> None:
    """``algorithm: sliding-window`` inline, in ``limits`` and in the OpenAPI extension builds
    sliding limits beside GCRA ones; a sliding window over 10,000 and one in a plan (whose
    quotas are GCRA) are errors naming the line and the fix, as is an unknown algorithm."""
    good = write(tmp_path, """\
        services:
          - name: api
            upstream: http://127.0.0.1:9
            routes:
              - path: /login
                public: true
                policies:
                  ratelimit: {limit: 5, window: 1h, by: "body:$.username", algorithm: sliding-window}
              - path: /orders
                public: true
                policies:
                  ratelimit:
                    limits:
                      - {limit: 10, window: 1s, by: ip}
                      - {limit: 100, window: 1h, by: ip, algorithm: sliding-window}
        """)
    built = stages(good)
    assert [limit.sliding for limit in built["api:/login"].limits] == [True]
    assert [limit.sliding for limit in built["api:/orders"].limits] == [False, True]
    bad = write(tmp_path, """\
        plans:
          gold: {quotas: [{limit: 1000, window: 1d, algorithm: sliding-window}]}
        services:
          - name: api
            upstream: http://127.0.0.1:9
            routes:
              - path: /a
                public: true
                policies: {ratelimit: {limit: 10001, window: 1h, algorithm: sliding-window}}
              - path: /b
                public: true
                policies: {ratelimit: {limits: [{limit: 5, window: 1h, algorithm: sliding}]}}
        """, "bad.yaml")
    errors = errors_of(bad)
    assert len(errors) == 3, errors
    assert any("bad.yaml:2" in e and "a plan's limits are rolling GCRA quotas" in e for e in errors), errors
    assert any("bad.yaml:9" in e and "its limit is at most 10,000 (got 10,001)" in e
               and "algorithm: gcra" in e for e in errors), errors
    assert any("bad.yaml:12" in e and "algorithm" in e and "sliding-window" in e for e in errors), errors
