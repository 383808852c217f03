"""The reasons a request is refused for crossing a resource limit (OWASP API4).

Each names one limit: it is the ``reason`` of the exchange's record (the access log) and
the label of ``bastion_limit_rejections_total``, so an operator sees which bound clients
hit. ``docs/limits.md`` lists every limit with its reason.
"""

from __future__ import annotations

from bastion.proxy.jsonscan import NUMBER_TOO_LONG, STRING_TOO_LONG, TOO_DEEP, TOO_MANY_ITEMS, TOO_MANY_KEYS
from bastion.proxy.upstream_errors import RESPONSE_TOO_LARGE

#: The request body is larger than the route's ``max_body_bytes`` (413).
BODY_TOO_LARGE = "http.body_too_large"
#: The request head's header fields are larger than ``max_header_bytes`` (431).
HEADER_TOO_LARGE = "http.header_too_large"
#: The request has more header fields than ``max_headers`` (431).
TOO_MANY_HEADERS = "http.too_many_headers"
#: The request target is longer than ``max_url_bytes`` (414).
URL_TOO_LONG = "http.url_too_long"
#: The query string is longer than the route's ``max_query_bytes`` (414).
QUERY_TOO_LONG = "http.query_too_long"
#: The query string has more parameters than the route's ``max_query_params`` (414).
TOO_MANY_QUERY_PARAMS = "http.too_many_query_params"
#: The worker already handles ``max_in_flight`` requests (503).
TOO_MANY_IN_FLIGHT = "http.too_many_in_flight"
#: The consumer already has the route's ``concurrency.max_in_flight`` requests in flight (429).
CONSUMER_IN_FLIGHT = "concurrency.exceeded"
#: The request head did not arrive within ``timeouts.header`` of its first byte (408).
HEADER_TIMEOUT = "http.header_timeout"
#: No piece of the request body arrived within ``timeouts.body`` (408).
BODY_TIMEOUT = "http.body_timeout"
#: The request body did not arrive in full within ``timeouts.body_total`` of its head (408).
BODY_TOTAL_TIMEOUT = "http.body_total_timeout"

# RESPONSE_TOO_LARGE: the upstream's response body is larger than the route's
# ``max_upstream_response_bytes`` (502 before the answer's head, else the answer is cut);
# defined with the upstream's errors, which carry it.

#: Every reason above: a record refused for one of them is counted by reason in
#: ``bastion_limit_rejections_total``.
LIMIT_REASONS = frozenset(
    {
        BODY_TOO_LARGE,
        HEADER_TOO_LARGE,
        TOO_MANY_HEADERS,
        URL_TOO_LONG,
        QUERY_TOO_LONG,
        TOO_MANY_QUERY_PARAMS,
        TOO_MANY_IN_FLIGHT,
        CONSUMER_IN_FLIGHT,
        HEADER_TIMEOUT,
        BODY_TIMEOUT,
        BODY_TOTAL_TIMEOUT,
        RESPONSE_TOO_LARGE,
        TOO_DEEP,
        TOO_MANY_KEYS,
        TOO_MANY_ITEMS,
        STRING_TOO_LONG,
        NUMBER_TOO_LONG,
    }
)

__all__ = [
    "BODY_TIMEOUT",
    "BODY_TOO_LARGE",
    "BODY_TOTAL_TIMEOUT",
    "CONSUMER_IN_FLIGHT",
    "HEADER_TIMEOUT",
    "HEADER_TOO_LARGE",
    "LIMIT_REASONS",
    "QUERY_TOO_LONG",
    "RESPONSE_TOO_LARGE",
    "TOO_MANY_HEADERS",
    "TOO_MANY_IN_FLIGHT",
    "TOO_MANY_QUERY_PARAMS",
    "URL_TOO_LONG",
]
