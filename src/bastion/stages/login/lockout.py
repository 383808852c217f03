"""Account lockout's two atomic scripts, written for Redis and for the memory backend.

A login try is counted when it is made, not when it has failed (``ATTEMPT``): the count is
taken and compared in one step, so guesses sent at once, through several workers or
instances, cannot all pass before the first failure is counted. Once the upstream has
answered, ``SETTLE`` keeps the count (a failure), resets the account (a success) or gives
the try back (neither: an error, a malformed request).

Keys, per account, in threes: tries within the window, lockouts so far (the back-off's
doubling, remembered four times the longest lockout), and the lock itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from bastion.state.interface import Script, ScriptArg, ScriptResult, ScriptStore

_ATTEMPT_LUA = """
local left = redis.call('PTTL', KEYS[3])
if left > 0 then return left end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n <= tonumber(ARGV[5]) then return 0 end
redis.call('DEL', KEYS[1])
local times = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local ms = math.floor(math.min(tonumber(ARGV[2]) * 2 ^ (times - 1), tonumber(ARGV[3])))
redis.call('SET', KEYS[3], '1', 'PX', ms)
return ms
"""


def _attempt_local(store: ScriptStore, keys: Sequence[str], args: Sequence[ScriptArg]) -> ScriptResult:
    """The memory backend's copy of :data:`ATTEMPT` (same keys, arguments and answer)."""
    tries, level, lock = keys
    window, base, cap, memory, limit = (int(a) for a in args)
    left = store.ttl(lock)
    if left is not None and left > 0:
        return max(1, int(left * 1000))
    if store.incr(tries, 1, window / 1000) <= limit:
        return 0
    store.delete(tries)
    times = store.incr(level, 1, memory / 1000)
    store.set(level, times, memory / 1000)  # remembered afresh at each lockout, as PEXPIRE does
    ms = int(min(base * 2 ** (times - 1), cap))
    store.set(lock, 1, ms / 1000)
    return ms


#: Count one login try of an account: the milliseconds of its lockout in force (the try is
#: then refused and not counted), or 0 (counted, and let through).
ATTEMPT = Script("login-attempt", _ATTEMPT_LUA, _attempt_local)

_SETTLE_LUA = """
if ARGV[1] == 'success' then
  redis.call('DEL', KEYS[1], KEYS[2])
elseif ARGV[1] == 'refund' then
  local n = tonumber(redis.call('GET', KEYS[1]) or '0')
  if n > 0 then redis.call('DECR', KEYS[1]) end
end
return 0
"""


def _settle_local(store: ScriptStore, keys: Sequence[str], args: Sequence[ScriptArg]) -> ScriptResult:
    """The memory backend's copy of :data:`SETTLE`."""
    tries, level = keys[0], keys[1]
    if args[0] == "success":
        store.delete(tries)
        store.delete(level)
    elif args[0] == "refund":
        raw = store.get(tries)
        if raw is not None and int(raw) > 0:
            store.incr(tries, -1)
    return 0


#: Settle a counted try once the upstream answered: ``success`` clears the account's tries
#: and back-off (not a lock in force), ``refund`` takes the try back, ``failure`` keeps it.
SETTLE = Script("login-settle", _SETTLE_LUA, _settle_local)


def account_keys(digest: str) -> list[str]:
    """The state keys of the account whose hashed name is ``digest``."""
    return [f"login:tries:{digest}", f"login:level:{digest}", f"login:lock:{digest}"]


__all__ = ["ATTEMPT", "SETTLE", "account_keys"]
