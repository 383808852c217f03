"""The sign-in rate limit per client address: a sliding minute in the admin process.

The account lockout stops guessing one account's password; this stops one address from
trying many accounts (or many second-factor codes). It lives in memory: there is one admin
process per gateway, and a restart forgetting it costs an attacker a restart's time.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

#: Addresses remembered at most (the oldest is forgotten first), so a flood of addresses
#: cannot grow the table without bound.
MAX_CLIENTS = 10_000
WINDOW = 60.0


class LoginLimiter:
    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._attempts: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, client: str, now: float | None = None) -> bool:
        """Count an attempt of ``client``; false when it made ``per_minute`` in the last minute."""
        now = time.monotonic() if now is None else now
        recent = self._attempts.get(client)
        if recent is None:
            recent = self._attempts[client] = deque()
            if len(self._attempts) > MAX_CLIENTS:
                self._attempts.popitem(last=False)
        else:
            self._attempts.move_to_end(client)
        while recent and recent[0] <= now - WINDOW:
            recent.popleft()
        if len(recent) >= self.per_minute:
            return False
        recent.append(now)
        return True
