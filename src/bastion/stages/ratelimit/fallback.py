"""The conservative local limit a ``failure_mode: open`` rate limit falls back to.

When the shared state backend (Redis) does not answer, ``failure_mode: closed`` refuses with
503. ``open`` must not mean *unlimited* either -- an outage of Redis would then be an outage
of every limit, which an attacker can bring about by loading Redis. So each worker limits on
its own, in memory, with the same GCRA and a share of each limit: ``limit // (workers *
instances)`` (at least 1), the workers of this instance and the ``instances`` the stage's
settings declare. The shares of every worker of every instance add up to at most the limit
(unless it is smaller than the number of workers: each worker still admits one).

The switch is per worker, shared by its rate-limit stages and kept across reloads
(``services.shared``). Each switch -- to the local limit and back -- is logged once and
counted in ``bastion_ratelimit_fallback_total{to}``. While local, the worker gives the shared
backend one request every :data:`RETRY_SECONDS` (the others do not wait for its timeout); the
first that succeeds switches back. The local counts are then dropped: Redis counted what it
counted, and the local budget starts whole the next time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from bastion.errors import DependencyUnavailable
from bastion.proxy.metrics import METRICS
from bastion.state.interface import Script, ScriptArg, ScriptResult
from bastion.state.memory import MemoryBackend

log = logging.getLogger("bastion.ratelimit")

#: Seconds between two attempts on the shared backend while the local limit is on.
RETRY_SECONDS = 1.0
#: The key of the worker's fallback in ``services.shared``.
SHARED_KEY = "ratelimit:fallback"


class LocalFallback:
    """One worker's switch between the shared backend and its local limit."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.local = MemoryBackend(clock)
        #: Whether the shared backend failed last time and the local limit is on.
        self.active = False
        self._retry_at = 0.0

    def skip_shared(self) -> bool:
        """Whether this request should not try the shared backend (it is down and the next
        attempt is not due). A due attempt is given to this request alone."""
        if not self.active:
            return False
        now = self.clock()
        if now < self._retry_at:
            return True
        self._retry_at = now + RETRY_SECONDS
        return False

    def failed(self, exc: DependencyUnavailable) -> None:
        """The shared backend failed: switch to the local limit (logged once per switch)."""
        self._retry_at = self.clock() + RETRY_SECONDS
        if not self.active:
            self.active = True
            METRICS.inc("bastion_ratelimit_fallback", ("local",))
            log.warning("rate limits: %s; limiting locally (failure_mode: open) until it answers again", exc)

    def answered(self) -> None:
        """The shared backend answered: switch back if the local limit was on."""
        if self.active:
            self.active = False
            METRICS.inc("bastion_ratelimit_fallback", ("shared",))
            log.warning("rate limits: the state backend answers again; limits are shared again")
            self.local = MemoryBackend(self.clock)

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[ScriptArg]) -> ScriptResult:
        """The limits' ``script`` on the local table; ``args`` carry the local shares' numbers."""
        return await self.local.run(script, keys, args)


def local_share(limit: int, workers: int, instances: int) -> int:
    """A limit's share for one worker: never more than the limit split evenly, at least 1."""
    return max(1, limit // (max(1, workers) * max(1, instances)))


__all__ = ["RETRY_SECONDS", "SHARED_KEY", "LocalFallback", "local_share"]
