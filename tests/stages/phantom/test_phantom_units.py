"""The phantom stage's settings and records, without a gateway."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bastion.config import load_config
from bastion.stages.phantom.config import PhantomConfig
from bastion.stages.phantom.tokens import PHANTOM_PREFIX, Record, jwt_claims, new_token, state_key

from ...config.util import errors_of, write


def test_failing_open_is_refused() -> None:
    """``failure_mode: open`` would hand out the upstream's token when the state backend is
    down: a config error that says why."""
    with pytest.raises(ValidationError, match="failure_mode must be 'closed'"):
        PhantomConfig.model_validate({"issue": {}, "failure_mode": "open"})
    assert PhantomConfig.model_validate({"issue": {"token_field": "data.token"}}).issue is not None


def test_tokens_are_random_and_stored_under_their_hash() -> None:
    """Two tokens differ, carry 256 bits (43 base64url characters), and their state key is
    a SHA-256 that does not contain the token."""
    one, two = new_token(), new_token()
    assert one != two and one.startswith(PHANTOM_PREFIX) and len(one) == len(PHANTOM_PREFIX) + 43
    key = state_key(one)
    assert one not in key and len(key.split(":")[1]) == 64


def test_records_round_trip_and_junk_is_no_record() -> None:
    """A record reads back as written; bytes that are not a record read as none."""
    record = Record("up.tok.en", "alice", ("a:read",), ("user",), {"sub": "alice"}, 1234.5)
    assert Record.decode(record.encode()) == record
    for junk in (b"", b"[]", b"{}", b'{"t": 1, "c": "x", "s": [], "r": [], "exp": 1}', b"\xff"):
        assert Record.decode(junk) is None


def test_jwt_claims_are_read_only_from_a_jwt() -> None:
    """The payload of a three-part token is read; an opaque token has no claims."""
    assert jwt_claims("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln") == {"sub": "alice"}
    assert jwt_claims("opaque-token") is None
    assert jwt_claims("a.!!!.c") is None


LOGIN_ROUTE = """\
services:
  - name: app
    upstream: http://127.0.0.1:9
    routes:
      - path: /login
        methods: [POST]
        public: true
        response_body_over_limit: {over}
        policies: {{phantom: {{issue: {{token_field: access_token}}}}}}
"""


def test_a_login_route_cannot_pass_large_responses_unseen(tmp_path: Path) -> None:
    """``response_body_over_limit: pass`` on a route that issues phantom tokens is a load
    error naming the file, the route's line and the field: a login response over the limit would reach the
    client with the upstream's token. ``block`` loads."""
    (error,) = errors_of(write(tmp_path, LOGIN_ROUTE.format(over="pass")))
    assert error.startswith(f"{tmp_path / 'bastion.yaml'}:5: response_body_over_limit (app:/login): 'pass'")
    assert "phantom stage" in error
    assert load_config(write(tmp_path, LOGIN_ROUTE.format(over="block"))).routes


def test_cookie_settings_need_phantom_tokens_and_a_cookie_name() -> None:
    """``phantom_cookie`` and ``phantom_logout`` on a route that does not take phantom tokens,
    and a cookie name that is no RFC 6265 token (on the route or the login), are config
    errors that say what is missing."""
    from bastion.stages.auth.config import AuthConfig

    for bad in ({"phantom_cookie": "session"}, {"phantom_logout": True}):
        with pytest.raises(ValidationError, match="needs phantom_tokens: true"):
            AuthConfig.model_validate(bad)
    with pytest.raises(ValidationError, match="is not a cookie name"):
        AuthConfig.model_validate({"phantom_tokens": True, "phantom_cookie": "a b"})
    with pytest.raises(ValidationError, match="is not a cookie name"):
        PhantomConfig.model_validate({"issue": {"cookie": "sid;x"}})
    assert AuthConfig.model_validate({"phantom_tokens": True, "phantom_cookie": "sid"}).phantom_cookie == "sid"
