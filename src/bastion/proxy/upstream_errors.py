"""How a request to an upstream fails: the error the proxy turns into a 502, 503 or 504.

Raised by the pool (:mod:`bastion.proxy.upstream`: no target can take traffic, a connect
fails) and by a connection (:mod:`bastion.proxy.upstream_connection`: a timeout, an
invalid or cut response).
"""

from __future__ import annotations

#: The record's reason for a response over ``max_upstream_response_bytes`` (a resource limit,
#: listed with the others in :mod:`bastion.proxy.limits`).
RESPONSE_TOO_LARGE = "http.response_too_large"


class UpstreamError(Exception):
    """The upstream could not give a response. ``status`` is what the client gets,
    ``kind`` labels the failure in metrics and logs; ``limit``, when set, is the resource
    limit the response crossed (the record's reason, see :mod:`bastion.proxy.limits`): a
    refusal by the gateway, not a sign the target is unhealthy."""

    def __init__(
        self, message: str, *, retryable: bool = False, status: int = 502, kind: str = "error", limit: str = ""
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.kind = kind
        self.limit = limit


class UpstreamConnectError(UpstreamError):
    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable, kind="connect")


class UpstreamTimeout(UpstreamError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=504, kind="timeout")


class UpstreamUnavailable(UpstreamError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=503, kind="unavailable")


class UpstreamProtocolError(UpstreamError):
    def __init__(self, message: str) -> None:
        super().__init__(message, kind="protocol")


class UpstreamResponseTooLarge(UpstreamError):
    """The response body is larger than the route's ``max_upstream_response_bytes``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="response_too_large", limit=RESPONSE_TOO_LARGE)
