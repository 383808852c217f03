"""Brute force: failed authentications counted per client IP and per credential id, with
lockouts that double each time (``policies.auth.lockout``).

Counting happens only on a failure, in one atomic script on the state backend (memory or
Redis), so a request that authenticates costs no round trip: it only looks in this
worker's table of known lockouts (a dictionary lookup). A worker learns a lockout when a
failure it counts trips it or finds it already set, so a client locked out through
another worker (or instance) gets at most one more try on this one before it is refused
here too -- the rate of guesses stays bounded, which is what a lockout is for.

An IP lockout refuses every attempt from that address, before any credential is checked.
A credential lockout (an API key's public prefix) turns that credential's failing tries
into 429s, but never refuses the right key: counting rejections must not become a way to
shut a consumer out from wherever it really is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from bastion.stages.auth.config import LockoutConfig
from bastion.state.interface import Script, ScriptArg, ScriptResult, ScriptStore, StateBackend

_LUA = """
local window, base, cap, memory = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for i = 1, #KEYS / 3 do
  local fail, level, lock = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local left = redis.call('PTTL', lock)
  if left > 0 then
    out[i] = left
  else
    local n = redis.call('INCR', fail)
    if n == 1 then redis.call('PEXPIRE', fail, window) end
    if n < tonumber(ARGV[4 + i]) then
      out[i] = 0
    else
      redis.call('DEL', fail)
      local times = redis.call('INCR', level)
      redis.call('PEXPIRE', level, memory)
      local ms = math.floor(math.min(base * 2 ^ (times - 1), cap))
      redis.call('SET', lock, '1', 'PX', ms)
      out[i] = ms
    end
  end
end
return out
"""


def _count_local(store: ScriptStore, keys: Sequence[str], args: Sequence[ScriptArg]) -> ScriptResult:
    """The memory backend's copy of :data:`_LUA` (same keys, same arguments, same answer)."""
    window, base, cap, memory = (int(a) for a in args[:4])
    out: list[int | bytes | None] = []
    for i in range(len(keys) // 3):
        fail, level, lock = keys[3 * i], keys[3 * i + 1], keys[3 * i + 2]
        left = store.ttl(lock)
        if left is not None and left > 0:
            out.append(max(1, int(left * 1000)))
            continue
        if store.incr(fail, 1, window / 1000) < int(args[4 + i]):
            out.append(0)
            continue
        store.delete(fail)
        times = store.incr(level, 1, memory / 1000)
        store.set(level, times, memory / 1000)  # remembered afresh at each lockout, as PEXPIRE does
        ms = int(min(base * 2 ** (times - 1), cap))
        store.set(lock, 1, ms / 1000)
        out.append(ms)
    return out


#: Count one failure for each subject (keys in threes: failures, lockouts so far, lock);
#: answers, per subject, the milliseconds of the lockout in force (0: none).
COUNT_FAILURE = Script("auth-lockout", _LUA, _count_local)


class KnownLocks:
    """This worker's table of lockouts it has seen: subject key -> monotonic end. Shared by
    every route's auth stage (``services.shared``), bounded."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self.until: dict[str, float] = {}

    def remaining(self, key: str, now: float) -> float:
        end = self.until.get(key)
        if end is None:
            return 0.0
        if end <= now:
            del self.until[key]
            return 0.0
        return end - now

    def add(self, key: str, end: float, now: float) -> None:
        until = self.until
        if len(until) >= self.limit:
            for k in [k for k, e in until.items() if e <= now]:
                del until[k]
            if len(until) >= self.limit:
                return  # still in the backend: this worker relearns it at the next failure
        until[key] = end


class Lockout:
    """One route's thresholds, over the worker's state backend and table of known lockouts."""

    def __init__(self, config: LockoutConfig) -> None:
        self.config = config
        self._args: tuple[int, int, int, int] = (
            _ms(config.window),
            _ms(config.backoff),
            _ms(config.max_backoff),
            _ms(config.max_backoff * 4),  # how long the doubling is remembered
        )
        self._state: StateBackend | None = None
        self._known = KnownLocks()
        self._clock: Callable[[], float] = time.monotonic

    def start(self, state: StateBackend, known: KnownLocks, clock: Callable[[], float]) -> None:
        self._state = state
        self._known = known
        self._clock = clock

    def ip_locked(self, ip: str) -> float:
        """Seconds left of this worker's known lockout of ``ip`` (0: none known)."""
        known = self._known
        if not known.until:
            return 0.0
        return known.remaining("ip:" + ip, self._clock())

    async def count(self, ip: str, handle: str) -> float:
        """Count a failure of ``ip`` (and of the credential ``handle``, if any): the seconds of
        the lockout now in force for either, 0 when none."""
        state = self._state
        if state is None:
            raise RuntimeError("the auth stage's lockout was used before the stage started")
        subjects = ["ip:" + ip] + (["cred:" + handle] if handle else [])
        keys: list[str] = []
        for subject in subjects:
            keys += [f"auth:fail:{subject}", f"auth:level:{subject}", f"auth:lock:{subject}"]
        limits = [self.config.max_failures_per_ip, self.config.max_failures_per_credential][: len(subjects)]
        answer = await state.run(COUNT_FAILURE, keys, [*self._args, *limits])
        now = self._clock()
        longest = 0.0
        for subject, ms in zip(subjects, answer if isinstance(answer, list) else [], strict=False):
            if isinstance(ms, int) and ms > 0:
                seconds = ms / 1000
                self._known.add(subject, now + seconds, now)
                longest = max(longest, seconds)
        return longest


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


__all__ = ["COUNT_FAILURE", "KnownLocks", "Lockout"]
