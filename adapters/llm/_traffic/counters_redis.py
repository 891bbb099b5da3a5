"""The Redis ``Backend``: every check-and-take is one Lua script, so processes never race.

Scripts run by EVALSHA (loaded on a miss) with Redis's own clock, through a ``RedisLink``: short
timeouts, no retries (a retried script that timed out could count twice), and a breaker shared
with everything else using the same Redis, so an unreachable Redis fails at once and the
caller's ``Outage`` policy decides what happens next.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .counters import Backend, Hold, MemoryBackend, Reserved, Settled, Soft, Take, Taken
from .redis_link import RedisLink

if TYPE_CHECKING:
    from .._config.loader import Config

__all__ = ["RedisBackend", "backend_for"]

_LUA_COMMON = """
local function fmt(x) return string.format('%.17g', x) end
local now = ARGV[1]
if now == '' then local t = redis.call('TIME'); now = t[1] + t[2] / 1e6 else now = tonumber(now) end
"""

# KEYS: zset, hash per counter, groups flattened. ARGV: now, window, token, dry_run, #groups,
# each group's size, then limit, amount per counter.
_WINDOW_TAKE = _LUA_COMMON + """
local window, token, dry, ngroups = tonumber(ARGV[2]), ARGV[3], ARGV[4] == '1', tonumber(ARGV[5])
local base, groups, used, n = 5 + ngroups, {}, {}, 0
for g = 1, ngroups do
  groups[g] = {}
  for _ = 1, tonumber(ARGV[5 + g]) do n = n + 1; table.insert(groups[g], n) end
end
for i = 1, n do
  local z, h = KEYS[2 * i - 1], KEYS[2 * i]
  repeat
    local old = redis.call('ZRANGEBYSCORE', z, '-inf', fmt(now - window), 'LIMIT', 0, 500)
    if #old > 0 then
      local freed = 0
      for _, a in ipairs(redis.call('HMGET', h, unpack(old))) do
        freed = freed + (tonumber(a) or 0)
      end
      redis.call('ZREM', z, unpack(old)); redis.call('HDEL', h, unpack(old))
      redis.call('HINCRBYFLOAT', h, '_sum', fmt(-freed))
    end
  until #old == 0
  used[i] = tonumber(redis.call('HGET', h, '_sum')) or 0
end
local function wait(i)
  local limit, amount = tonumber(ARGV[base + 2 * i - 1]), tonumber(ARGV[base + 2 * i])
  local need = used[i] + amount - limit
  if amount > limit then return math.huge elseif need <= 0 then return 0 end
  for start = 0, math.huge, 200 do
    local rows = redis.call('ZRANGE', KEYS[2 * i - 1], start, start + 199, 'WITHSCORES')
    if #rows == 0 then return window end
    local members = {}
    for r = 1, #rows, 2 do table.insert(members, rows[r]) end
    for r, a in ipairs(redis.call('HMGET', KEYS[2 * i], unpack(members))) do
      need = need - (tonumber(a) or 0)
      if need <= 0 then return math.max(tonumber(rows[2 * r]) + window - now, 0) end
    end
  end
end
local waits, whos = {}, {}
for g = 1, ngroups do
  waits[g], whos[g] = 0, -1
  for _, i in ipairs(groups[g]) do
    local w = wait(i)
    if w > waits[g] then waits[g], whos[g] = w, i end
  end
end
local choice, soon, soon_who = -1, 0, -1
for g = 2, ngroups do
  if waits[g] == 0 then choice, soon, soon_who = g - 2, 0, -1; break end
  if soon_who < 0 or waits[g] < soon then soon, soon_who = waits[g], whos[g] end
end
local ok = waits[1] == 0 and (ngroups == 1 or choice >= 0)
local retry, who = waits[1], whos[1]
if ok then retry, who = 0, -1 elseif soon > retry then retry, who, choice = soon, soon_who, -1
else choice = -1 end
if ok and not dry then
  local ttl = math.ceil(window * 1000) + 1000
  for _, g in ipairs({groups[1], choice >= 0 and groups[choice + 2] or {}}) do
    for _, i in ipairs(g) do
      local z, h, amount = KEYS[2 * i - 1], KEYS[2 * i], ARGV[base + 2 * i]
      redis.call('ZADD', z, fmt(now), token); redis.call('HSET', h, token, amount)
      redis.call('HINCRBYFLOAT', h, '_sum', amount)
      redis.call('PEXPIRE', z, ttl); redis.call('PEXPIRE', h, ttl)
    end
  end
end
local out = {ok and 1 or 0, choice, fmt(retry), who < 0 and -1 or who - 1}
for i = 1, n do table.insert(out, fmt(used[i])) end
return out
"""

# KEYS: hash per counter. ARGV: token, delta.
_WINDOW_ADJUST = """
for _, h in ipairs(KEYS) do
  if redis.call('HEXISTS', h, ARGV[1]) == 1 then
    redis.call('HINCRBYFLOAT', h, ARGV[1], ARGV[2]); redis.call('HINCRBYFLOAT', h, '_sum', ARGV[2])
  end
end
return 1
"""

# KEYS: hash, holds zset, roster set per hold. ARGV: now, token, hold_s, then limit, amount,
# expire-at ms ('' = never), member per hold.
_RESERVE = _LUA_COMMON + """
local token, hold, out, fail = ARGV[2], tonumber(ARGV[3]), {}, -1
for i = 1, #KEYS / 3 do
  local h, z = KEYS[3 * i - 2], KEYS[3 * i - 1]
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', fmt(now))) do
    local a = redis.call('HGET', h, 'r:' .. m)
    if a then
      redis.call('HINCRBYFLOAT', h, 'reserved', fmt(-a)); redis.call('HDEL', h, 'r:' .. m)
    end
    redis.call('ZREM', z, m)
  end
  local v = redis.call('HMGET', h, 'spent', 'reserved')
  local spent, reserved = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  table.insert(out, fmt(spent)); table.insert(out, fmt(reserved))
  if fail < 0 and spent + reserved + tonumber(ARGV[4 * i + 1]) > tonumber(ARGV[4 * i]) then
    fail = i - 1
  end
end
if fail < 0 then
  for i = 1, #KEYS / 3 do
    local h, z, idx, amount, expire = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i], ARGV[4*i+1], ARGV[4*i+2]
    if redis.call('HSETNX', h, 'r:' .. token, amount) == 1 then
      redis.call('HINCRBYFLOAT', h, 'reserved', amount)
      redis.call('ZADD', z, fmt(now + hold), token)
    end
    redis.call('SADD', idx, ARGV[4 * i + 3])
    if expire ~= '' then
      for _, k in ipairs({h, z, idx}) do redis.call('PEXPIREAT', k, expire) end
    end
  end
end
table.insert(out, 1, fail)
return out
"""

# KEYS: hash, holds zset per counter. ARGV: token, actual, held_only ('1': add only where the
# reservation is still held), expire-at ms ('' = never) per counter, then (counter number,
# threshold, flag) per soft threshold.
_SETTLE = """
local token, actual, held_only, n, out = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1', #KEYS / 2, {}
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local a = redis.call('HGET', h, 'r:' .. token)
  if a then
    redis.call('HINCRBYFLOAT', h, 'reserved', string.format('%.17g', -a))
    redis.call('HDEL', h, 'r:' .. token); redis.call('ZREM', z, token)
  end
  if actual ~= 0 and (a or not held_only) then
    redis.call('HINCRBYFLOAT', h, 'spent', ARGV[2])
    if ARGV[3 + i] ~= '' then redis.call('PEXPIREAT', h, ARGV[3 + i]) end
  end
  out[i] = redis.call('HGET', h, 'spent') or '0'
end
for j = 4 + n, #ARGV, 3 do
  local k, crossed = tonumber(ARGV[j]), 0
  if tonumber(out[k]) >= tonumber(ARGV[j + 1]) then
    crossed = redis.call('HSETNX', KEYS[2 * k - 1], ARGV[j + 2], 1)
  end
  table.insert(out, crossed)
end
return out
"""


def _num(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def _ms(at: float | None) -> str:
    return "" if at is None else str(int(at * 1000))


class RedisBackend(Backend):
    """Counters in Redis, shared by every process using the same server and prefix.

    Each operation is one ``EVALSHA`` (scripts load on first use) through ``link``: by default
    one of its own; the policy pool passes the one shared by everything using this URL.
    """

    def __init__(self, url: str, *, prefix: str = "llm-adapter", timeout: float = 0.5,
                 link: RedisLink | None = None) -> None:
        self.link = link or RedisLink(url, timeout=timeout)
        self.url, self.prefix, self.timeout = url, prefix, self.link.timeout
        self.description = self.link.description

    def _eval(self, source: str, keys: list[str], args: list[str]) -> Any:
        return self.link.run(lambda conn: conn.script(source)(keys, args))

    async def _aeval(self, source: str, keys: list[str], args: list[str]) -> Any:
        return await self.link.arun(lambda conn: conn.script(source)(keys, args))

    def _k(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def _window(self, groups: Sequence[Sequence[Take]], window_s: float, token: str,
                dry_run: bool, now: float | None) -> tuple[list[str], list[str]]:
        flat = [t for g in groups for t in g]
        keys = [self._k(f"{t.key}:{part}") for t in flat for part in ("z", "h")]
        args = [_num(now), _num(window_s), token, "1" if dry_run else "0", str(len(groups)),
                *(str(len(g)) for g in groups), *(_num(x) for t in flat for x in t[1:])]
        return keys, args

    @staticmethod
    def _taken(raw: list[Any]) -> Taken:
        return Taken(bool(raw[0]), int(raw[1]), float(raw[2]), int(raw[3]),
                     tuple(float(x) for x in raw[4:]))

    def window_take(self, groups: Sequence[Sequence[Take]], window_s: float, *, token: str,
                    dry_run: bool = False, now: float | None = None) -> Taken:
        return self._taken(self._eval(_WINDOW_TAKE,
                                      *self._window(groups, window_s, token, dry_run, now)))

    async def awindow_take(self, groups: Sequence[Sequence[Take]], window_s: float, *,
                           token: str, dry_run: bool = False, now: float | None = None) -> Taken:
        return self._taken(await self._aeval(
            _WINDOW_TAKE, *self._window(groups, window_s, token, dry_run, now)))

    def window_adjust(self, keys: Sequence[str], token: str, delta: float) -> None:
        self._eval(_WINDOW_ADJUST, [self._k(f"{k}:h") for k in keys], [token, _num(delta)])

    async def awindow_adjust(self, keys: Sequence[str], token: str, delta: float) -> None:
        await self._aeval(_WINDOW_ADJUST, [self._k(f"{k}:h") for k in keys],
                          [token, _num(delta)])

    def _holds(self, holds: Sequence[Hold], token: str, hold_s: float, now: float | None
               ) -> tuple[list[str], list[str]]:
        keys = [self._k(k) for h in holds for k in (h.key, f"{h.key}:holds", h.roster)]
        args = [_num(now), token, _num(hold_s), *(x for h in holds for x in (
            _num(h.limit), _num(h.amount), _ms(h.expires_at), h.member))]
        return keys, args

    @staticmethod
    def _reserved(raw: list[Any]) -> Reserved:
        values = [float(x) for x in raw[1:]]
        return Reserved(int(raw[0]) < 0, int(raw[0]), tuple(values[0::2]), tuple(values[1::2]))

    def reserve(self, holds: Sequence[Hold], *, token: str, hold_s: float,
                now: float | None = None) -> Reserved:
        return self._reserved(self._eval(_RESERVE, *self._holds(holds, token, hold_s, now)))

    async def areserve(self, holds: Sequence[Hold], *, token: str, hold_s: float,
                       now: float | None = None) -> Reserved:
        return self._reserved(await self._aeval(_RESERVE,
                                                *self._holds(holds, token, hold_s, now)))

    def _settling(self, keys: Sequence[tuple[str, float | None]], token: str, actual: float,
                  softs: Sequence[Soft], held_only: bool) -> tuple[list[str], list[str]]:
        return ([self._k(k) for key, _ in keys for k in (key, f"{key}:holds")],
                [token, _num(actual), "1" if held_only else "0", *(_ms(at) for _, at in keys),
                 *(x for s in softs for x in (str(s.counter + 1), _num(s.at), s.flag))])

    @staticmethod
    def _settled(raw: list[Any], n: int) -> Settled:
        return Settled(tuple(float(x) for x in raw[:n]), tuple(bool(x) for x in raw[n:]))

    def settle(self, keys: Sequence[tuple[str, float | None]], *, token: str, actual: float,
               softs: Sequence[Soft] = (), held_only: bool = False) -> Settled:
        return self._settled(self._eval(_SETTLE, *self._settling(keys, token, actual, softs,
                                                                 held_only)), len(keys))

    async def asettle(self, keys: Sequence[tuple[str, float | None]], *, token: str,
                      actual: float, softs: Sequence[Soft] = (),
                      held_only: bool = False) -> Settled:
        return self._settled(await self._aeval(_SETTLE, *self._settling(
            keys, token, actual, softs, held_only)), len(keys))

    def balances(self, keys: Sequence[str]) -> list[tuple[float, float]]:
        def read(conn: Any) -> list[Any]:
            pipe = conn.client.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(self._k(key), "spent", "reserved")
            return list(pipe.execute())
        return [(float(s or 0), float(r or 0)) for s, r in self.link.run(read)]

    def members(self, roster: str) -> list[str]:
        return sorted(self.link.run(lambda conn: conn.client.smembers(self._k(roster))))

    def _enrolling(self, entries: Sequence[tuple[str, str, float | None]]) -> Any:
        def op(conn: Any) -> Any:
            pipe = conn.client.pipeline(transaction=False)
            for roster, member, expires_at in entries:
                pipe.sadd(self._k(roster), member)
                if expires_at is not None:
                    pipe.pexpireat(self._k(roster), int(expires_at * 1000))
            return pipe.execute()
        return op

    def enroll(self, entries: Sequence[tuple[str, str, float | None]]) -> None:
        self.link.run(self._enrolling(entries))

    async def aenroll(self, entries: Sequence[tuple[str, str, float | None]]) -> None:
        await self.link.arun(self._enrolling(entries))

    def ping(self) -> float:
        return self.link.ping()

    def close(self) -> None:
        self.link.close()

    async def aclose(self) -> None:
        """Close this event loop's async client."""
        await self.link.aclose()


def backend_for(config: Config, env: Mapping[str, str] | None = None, *,
                link: Callable[[str], RedisLink] | None = None) -> Backend:
    """Redis when ``router_settings.redis_url`` or ``REDIS_URL`` is set, else this process.

    ``link`` gives the shared connection (and breaker) for a URL; by default one of its own.
    """
    url = config.router_settings.redis_url or (os.environ if env is None else env).get("REDIS_URL")
    if not url:
        return MemoryBackend()
    return RedisBackend(url, link=None if link is None else link(url))
