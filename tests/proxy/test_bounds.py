"""The limits the proxy reads per request, copied from the configuration at load."""

from __future__ import annotations

from bastion.config.model import Limits
from bastion.proxy.bounds import Bounds

#: Every limit the proxy reads from :class:`Bounds` instead of the settings model.
COPIED = (
    "max_in_flight",
    "max_headers",
    "max_header_bytes",
    "max_url_bytes",
    "max_query_bytes",
    "max_query_params",
    "max_upstream_response_bytes",
    "max_json_depth",
    "max_json_keys",
    "max_json_array_items",
    "max_json_string_bytes",
    "max_json_number_chars",
)


def test_bounds_hold_each_limit_of_the_settings_they_were_built_from() -> None:
    """Each copied limit equals its own field of the settings, with every value distinct and
    none the default: a field copied into the wrong attribute, or not at all, fails."""
    limits = Limits(
        max_in_flight=1001,
        max_headers=77,
        max_header_bytes=20_000,
        max_url_bytes=3000,
        max_query_bytes=2500,
        max_query_params=55,
        max_upstream_response_bytes=123_456,
        max_json_depth=33,
        max_json_keys=4321,
        max_json_array_items=5432,
        max_json_string_bytes=65_000,
        max_json_number_chars=44,
    )
    bounds = Bounds(limits)
    assert {name: getattr(bounds, name) for name in COPIED} == {name: getattr(limits, name) for name in COPIED}
    assert len({getattr(limits, name) for name in COPIED}) == len(COPIED)
    assert all(getattr(limits, name) != Limits.model_fields[name].default for name in COPIED)
