"""The rate limit itself: GCRA over every limit of a request, in one atomic script.

GCRA (the generic cell rate algorithm) keeps one number per key: the *theoretical arrival
time* (TAT), when the client's budget would be whole again. A limit of ``limit`` per
``window`` admits one request every ``T = window / limit``; a request is admitted while
``TAT - now <= (limit - 1) * T``, and then moves TAT on by ``T``. So a fresh client may
send ``limit`` requests at once (the burst is the limit), after which requests are admitted
smoothly, one per ``T`` -- never the double burst a fixed window allows at its edge. One
read and one write per key, and the key expires by itself when the budget is whole.

Why it is exact: the check and the update of every limit of a request happen in one
script, which Redis (or the memory backend, under its lock) runs atomically; concurrent
requests from any worker of any instance are serialised there, so a limit of N admits N.
All times are whole microseconds and ``T`` is rounded *up* to one, so the arithmetic is
exact and never admits more than the limit. A request is admitted only if *every* limit
admits it, and a refused request writes nothing: refusals consume no budget, and a client
that keeps hammering gets back in as soon as its budget allows.

A limit may instead be a *sliding window* (``algorithm: sliding-window``): a log of the
times of the requests it admitted (a Redis list, newest first), from which those older
than the window are dropped; a request is admitted while fewer than ``limit`` remain, and
then logged. So no interval of ``window`` ever holds more than ``limit`` admitted
requests, where GCRA, after its burst, goes on admitting one per ``T`` (up to
``2 * limit - 1`` in one window); it costs one entry per admitted request, so it is for
small limits (a login's 5 per hour). It is checked and counted in the same script as the
GCRA limits of the request (one round trip, all or nothing): its arguments say which it is.

Time comes from Redis itself (``TIME``) on a shared backend, so instances whose clocks
differ still agree; the memory backend is given the worker's clock (``services.clock``).
"""

from __future__ import annotations

from collections.abc import Sequence

from bastion.state.interface import Script, ScriptArg, ScriptResult, ScriptStore

# KEYS: one per limit. ARGV[1]: now in microseconds, or '' for Redis's own clock; then for
# each limit two numbers: a GCRA limit's T and its tolerance (limit - 1) * T, in
# microseconds; a sliding window's -window (negative: that is how it is told apart) and its
# limit. Answer: 1 (admitted) or 0, then per limit its remaining requests and microseconds:
# until the budget is whole, or, for a limit that refused, until its next request is admitted.
_LUA = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local seen, admit = {}, 1
for i = 1, #KEYS do
  local t, tau = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  if t < 0 then
    -- a sliding window: drop the times that have left it (oldest last), count the rest
    local last = redis.call('LINDEX', KEYS[i], -1)
    while last and tonumber(last) <= now + t do
      redis.call('RPOP', KEYS[i])
      last = redis.call('LINDEX', KEYS[i], -1)
    end
    seen[i] = redis.call('LLEN', KEYS[i])
    if seen[i] >= tau then admit = 0 end
  else
    local tat = redis.call('GET', KEYS[i])
    tat = tat and tonumber(tat) or now
    if tat < now then tat = now end
    seen[i] = tat - now
    if seen[i] > tau then admit = 0 end
  end
end
local out = {admit}
for i = 1, #KEYS do
  local t, tau, diff = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1]), seen[i]
  if t < 0 then
    if admit == 1 then
      redis.call('LPUSH', KEYS[i], string.format('%.0f', now))
      redis.call('PEXPIRE', KEYS[i], math.ceil(-t / 1000))
      out[2 * i] = tau - diff - 1
      out[2 * i + 1] = -t
    elseif diff >= tau then
      -- full: a place opens when the entry that makes it full leaves the window
      out[2 * i] = 0
      out[2 * i + 1] = tonumber(redis.call('LINDEX', KEYS[i], tau - diff - 1)) - t - now
    else
      out[2 * i] = tau - diff
      out[2 * i + 1] = diff == 0 and 0 or tonumber(redis.call('LINDEX', KEYS[i], 0)) - t - now
    end
  elseif admit == 1 then
    redis.call('SET', KEYS[i], string.format('%.0f', now + diff + t), 'PX', math.ceil((diff + t) / 1000))
    out[2 * i] = math.floor((tau - diff) / t)
    out[2 * i + 1] = diff + t
  elseif diff > tau then
    out[2 * i] = 0
    out[2 * i + 1] = diff - tau
  else
    out[2 * i] = math.floor((tau - diff) / t) + 1
    out[2 * i + 1] = diff
  end
end
return out
"""


def _gcra_local(store: ScriptStore, keys: Sequence[str], args: Sequence[ScriptArg]) -> ScriptResult:
    """The memory backend's copy of :data:`_LUA` (same keys, arguments and answer); the
    caller always gives ``now`` (the memory backend has no clock of its own to offer).
    Written for speed: it runs on every request of a rate-limited route (the keys read and
    written in one call each, plain loops: a comprehension or ``enumerate`` costs more than
    the arithmetic here)."""
    now = int(args[0])
    tats = store.get_ints(keys)
    diffs: list[int] = []
    admit = 1
    i = 2
    for tat in tats:
        diff = tat - now if tat is not None and tat > now else 0
        diffs.append(diff)
        if diff > int(args[i]):
            admit = 0
        i += 2
    out: list[int | bytes | None] = [admit]
    i = 1
    if admit:
        writes: list[tuple[str, int, float]] = []
        for key in keys:
            t, diff = int(args[i]), diffs[i >> 1]
            ahead = diff + t
            # Expiry in whole milliseconds, rounded up, as the Lua's PX.
            writes.append((key, now + ahead, -(-ahead // 1000) / 1000))
            out.append((int(args[i + 1]) - diff) // t)
            out.append(ahead)
            i += 2
        store.set_ints(writes)
        return out
    for diff in diffs:
        t, tau = int(args[i]), int(args[i + 1])
        if diff > tau:
            out.append(0)
            out.append(diff - tau)
        else:
            out.append((tau - diff) // t + 1)
            out.append(diff)
        i += 2
    return out


def _window_log(stored: bytes | None, after: int) -> list[int]:
    """A sliding window's admitted times (oldest first) still later than ``after``."""
    if not stored:
        return []
    times = [int(t) for t in stored.split(b",")]
    first = 0
    while first < len(times) and times[first] <= after:
        first += 1
    return times[first:]


def _limits_local(store: ScriptStore, keys: Sequence[str], args: Sequence[ScriptArg]) -> ScriptResult:
    """The memory backend's copy of :data:`_LUA` for limits that include a sliding window
    (its log kept as the times joined by commas, oldest first); the GCRA-only sets use the
    faster :func:`_gcra_local`."""
    now = int(args[0])
    logs: list[list[int]] = []
    diffs: list[int] = []
    admit = 1
    for n, key in enumerate(keys):
        t, tau = int(args[2 * n + 1]), int(args[2 * n + 2])
        if t < 0:
            log = _window_log(store.get(key), now + t)
            logs.append(log)
            diffs.append(len(log))
            if len(log) >= tau:
                admit = 0
        else:
            tat = store.get_int(key)
            logs.append([])
            diffs.append(tat - now if tat is not None and tat > now else 0)
            if diffs[-1] > tau:
                admit = 0
    out: list[int | bytes | None] = [admit]
    for n, key in enumerate(keys):
        t, tau, diff, log = int(args[2 * n + 1]), int(args[2 * n + 2]), diffs[n], logs[n]
        if t < 0:
            if admit:
                log.append(now)
                store.set(key, b",".join(b"%d" % time for time in log), -t / 1_000_000)
                out += [tau - diff - 1, -t]
            elif diff >= tau:
                out += [0, log[diff - tau] - t - now]
            else:
                out += [tau - diff, log[-1] - t - now if log else 0]
        elif admit:
            store.set_int(key, now + diff + t, -(-(diff + t) // 1000) / 1000)
            out += [(tau - diff) // t, diff + t]
        elif diff > tau:
            out += [0, diff - tau]
        else:
            out += [(tau - diff) // t + 1, diff]
    return out


#: Check every limit of one request and, only if all admit it, count it against each.
GCRA = Script("ratelimit-gcra", _LUA, _gcra_local)
#: The same script, for limits of which one at least is a sliding window (on Redis it is
#: :data:`GCRA` itself; the memory backend's copy differs, to keep GCRA's own fast).
LIMITS = Script("ratelimit-limits", _LUA, _limits_local)


_PEEK_LUA = """
local t = redis.call('TIME')
local out = {tonumber(t[1]) * 1000000 + tonumber(t[2])}
for i = 1, #KEYS do
  local tat = redis.call('GET', KEYS[i])
  out[i + 1] = tat and tonumber(tat) or -1
end
return out
"""


def _peek_local(store: ScriptStore, keys: Sequence[str], args: Sequence[ScriptArg]) -> ScriptResult:
    out: list[int | bytes | None] = [int(args[0])]
    for key in keys:
        stored = store.get(key)
        out.append(int(stored) if stored is not None else -1)
    return out


#: Read, without counting anything, the clock (Redis's own; the memory backend is given
#: ``now``) and each key's TAT (-1 where it has none): for an operator to see a consumer's
#: quota left.
PEEK = Script("ratelimit-peek", _PEEK_LUA, _peek_local)


def remaining(limit: int, window: float, tat: int, now: int) -> tuple[int, int]:
    """What a limit has left for a key whose TAT is ``tat`` (-1: none), and the microseconds
    until its budget is whole: as the GCRA script would answer a request now, before counting it."""
    t = interval_us(limit, window)
    tau = (limit - 1) * t
    diff = max(0, tat - now) if tat >= 0 else 0
    if diff > tau:
        return 0, diff
    return (tau - diff) // t + 1, diff


def interval_us(limit: int, window: float) -> int:
    """``T``: microseconds between two requests at the limit's steady rate, rounded up."""
    window_us = round(window * 1_000_000)
    return max(1, -(-window_us // limit))


def window_us(window: float) -> int:
    """A sliding window's length in whole microseconds."""
    return max(1, round(window * 1_000_000))


__all__ = ["GCRA", "LIMITS", "PEEK", "interval_us", "remaining", "window_us"]
