"""How a request to an upstream fails: the error the proxy turns into a 502, 503 or 504.

Raised by the pool (:mod:`bastion.proxy.upstream`: no target can take traffic, a connect
fails) and by a connection (:mod:`bastion.proxy.upstream_connection`: a timeout, an
invalid or cut response).
"""

from __future__ import annotations


class UpstreamError(Exception):
    """The upstream could not give a response. ``status`` is what the client gets,
    ``kind`` labels the failure in metrics and logs."""

    def __init__(self, message: str, *, retryable: bool = False, status: int = 502, kind: str = "error") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.kind = kind


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
