"""The limits the proxy checks on every request, as plain integers copied once at load.

A field of a pydantic model read from compiled code is a generic attribute lookup through
the model's class (~330 instructions each, callgrind), and the proxy read about ten of them
per request (the route's head limits, the worker's in-flight bound, the largest upstream
answer, a body's JSON limits). Copied here when the runtime is built, each is a native
attribute read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only a type here: importing bastion.config would import every stage
    from bastion.config.model import Limits


class Bounds:
    """One set of :class:`~bastion.config.model.Limits` (the listener's, or a route's in
    effect) as the proxy reads it per request."""

    def __init__(self, limits: Limits) -> None:
        self.max_in_flight: int = limits.max_in_flight
        self.max_headers: int = limits.max_headers
        self.max_header_bytes: int = limits.max_header_bytes
        self.max_url_bytes: int = limits.max_url_bytes
        self.max_query_bytes: int = limits.max_query_bytes
        self.max_query_params: int = limits.max_query_params
        self.max_upstream_response_bytes: int = limits.max_upstream_response_bytes
        # A buffered body's JSON limits (``bastion.proxy.jsonscan``), read on every request
        # with a body.
        self.max_json_depth: int = limits.max_json_depth
        self.max_json_keys: int = limits.max_json_keys
        self.max_json_array_items: int = limits.max_json_array_items
        self.max_json_string_bytes: int = limits.max_json_string_bytes
        self.max_json_number_chars: int = limits.max_json_number_chars


__all__ = ["Bounds"]
