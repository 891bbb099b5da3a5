"""Shared counters for rate limits and budgets: in this process, or in Redis for many.

Like an HTTP transport, ``Backend`` is a narrow interface with two implementations, so the
limiter and budgets hold no storage logic. Every check-and-take is one atomic step (a lock in
memory, one Lua script in Redis): two callers can never both take the last unit.

Rate windows are exact sliding logs (one entry per take, plus a running sum), so the time until
there is room is exact, not a fixed-minute guess. Budget counters hold ``spent`` and
reservations; each reservation has a hold time, so a process killed mid-call does not keep its
reservation forever. By default Redis scripts use Redis's clock (``TIME``), so hosts with skewed
clocks still agree; ``now`` arguments are for tests.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ._config_schema import masked
from .errors import LLMAdapterError

if TYPE_CHECKING:
    from .config import Config

__all__ = ["Backend", "BackendUnavailable", "Hold", "MemoryBackend", "Outage", "RedisBackend",
           "Reserved", "Settled", "Soft", "Take", "Taken", "backend_for"]

log = logging.getLogger(__name__)


class BackendUnavailable(LLMAdapterError):
    """The shared counter store (Redis) cannot be reached; nothing was counted."""


class Take(NamedTuple):
    key: str
    limit: float
    amount: float


class Taken(NamedTuple):
    ok: bool
    choice: int             # which alternative group was taken; -1 when none or not ok
    retry_after: float      # seconds until there is room; 0 when ok; inf: it can never fit
    blocking: int           # the counter to wait for (all groups flattened); -1 when ok
    used: tuple[float, ...]  # per counter, flattened, before this take


class Hold(NamedTuple):
    key: str
    limit: float
    amount: float
    expires_at: float | None   # unix time after which the counter may be dropped; None: never
    roster: str                # a set naming the members counted this period (for reports)
    member: str


class Reserved(NamedTuple):
    ok: bool
    blocking: int                # the first hold that would cross its limit; -1 when ok
    spent: tuple[float, ...]     # per hold, before this reservation
    reserved: tuple[float, ...]  # per hold: other calls' reservations still in flight


class Soft(NamedTuple):
    counter: int    # index into the keys given to ``settle``
    at: float       # the spent amount that crosses the threshold
    flag: str       # kept on the counter, so a crossing is reported once per counter


class Settled(NamedTuple):
    spent: tuple[float, ...]
    crossed: tuple[bool, ...]   # per Soft: newly crossed by this settle


class Backend(abc.ABC):
    """Atomic counters; every method raises ``BackendUnavailable`` when its store is away."""

    description = "backend"

    @abc.abstractmethod
    def window_take(self, groups: Sequence[Sequence[Take]], window_s: float, *, token: str,
                    dry_run: bool = False, now: float | None = None) -> Taken:
        """Take group 0 and the first later group with room, all or nothing, in one step."""

    async def awindow_take(self, groups: Sequence[Sequence[Take]], window_s: float, *,
                           token: str, dry_run: bool = False, now: float | None = None) -> Taken:
        return self.window_take(groups, window_s, token=token, dry_run=dry_run, now=now)

    @abc.abstractmethod
    def window_adjust(self, keys: Sequence[str], token: str, delta: float) -> None:
        """Change what ``token`` took in each window by ``delta`` (if still in the window)."""

    async def awindow_adjust(self, keys: Sequence[str], token: str, delta: float) -> None:
        self.window_adjust(keys, token, delta)

    @abc.abstractmethod
    def reserve(self, holds: Sequence[Hold], *, token: str, hold_s: float,
                now: float | None = None) -> Reserved:
        """Reserve every hold if ``spent + reserved + amount <= limit`` for all, else none."""

    @abc.abstractmethod
    def settle(self, keys: Sequence[tuple[str, float | None]], *, token: str, actual: float,
               softs: Sequence[Soft] = ()) -> Settled:
        """Drop ``token``'s reservation on each (key, expires_at); add ``actual`` to spent."""

    @abc.abstractmethod
    def balances(self, keys: Sequence[str]) -> list[tuple[float, float]]:
        """(spent, reserved) per budget counter."""

    @abc.abstractmethod
    def members(self, roster: str) -> list[str]:
        """The members ``reserve`` recorded in a roster."""

    @abc.abstractmethod
    def ping(self) -> float:
        """Round-trip seconds."""

    def close(self) -> None:
        """Release connections."""


def backend_for(config: Config, env: Mapping[str, str] | None = None) -> Backend:
    """Redis when ``router_settings.redis_url`` or ``REDIS_URL`` is set, else this process."""
    url = config.router_settings.redis_url or (os.environ if env is None else env).get("REDIS_URL")
    return RedisBackend(url) if url else MemoryBackend()


def _decide(waits: Sequence[tuple[float, int]]) -> tuple[bool, int, float, int]:
    """(ok, choice, retry_after, blocking) from each group's (longest wait, its counter)."""
    alternatives = waits[1:]
    fits = [i for i, (w, _) in enumerate(alternatives) if w == 0]
    if waits[0][0] == 0 and (fits or not alternatives):
        return True, fits[0] if fits else -1, 0.0, -1
    soonest = min(alternatives, key=lambda w: w[0], default=(0.0, -1))
    retry, who = max(waits[0], soonest, key=lambda w: w[0])
    return False, -1, retry, who


# ------------------------------------------------------------------------------------ in memory


@dataclass
class _Log:
    """One sliding window: (time, token) in time order, amounts by token, and their sum."""

    entries: deque[tuple[float, str]] = field(default_factory=deque)
    amounts: dict[str, float] = field(default_factory=dict)
    total: float = 0.0

    def used(self, cutoff: float) -> float:
        while self.entries and self.entries[0][0] <= cutoff:
            self.total -= self.amounts.pop(self.entries.popleft()[1], 0.0)
        return self.total

    def wait(self, limit: float, amount: float, used: float, now: float, window: float) -> float:
        need = used + amount - limit
        if amount > limit or need <= 0:
            return math.inf if amount > limit else 0.0
        for ts, token in self.entries:
            need -= self.amounts.get(token, 0.0)
            if need <= 0:
                return max(ts + window - now, 0.0)
        return window


@dataclass
class _Account:
    spent: float = 0.0
    holds: dict[str, tuple[float, float]] = field(default_factory=dict)  # token: (amount, until)
    flags: set[str] = field(default_factory=set)
    expires_at: float | None = None

    def reserved(self, now: float) -> float:
        for token in [t for t, (_, until) in self.holds.items() if until <= now]:
            del self.holds[token]
        return sum((a for a, _ in self.holds.values()), 0.0)


class MemoryBackend(Backend):
    """Counters for one process, behind one lock."""

    description = "in-process counters"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[str, _Log] = {}
        self._accounts: dict[str, _Account] = {}
        self._rosters: dict[str, tuple[set[str], float | None]] = {}
        self._swept = time.time()

    def window_take(self, groups: Sequence[Sequence[Take]], window_s: float, *, token: str,
                    dry_run: bool = False, now: float | None = None) -> Taken:
        t = time.time() if now is None else now
        with self._lock:
            logs = [[self._logs.setdefault(k.key, _Log()) for k in g] for g in groups]
            used = [[lg.used(t - window_s) for lg in g] for g in logs]
            waits, flat = [], 0
            for g, takes in enumerate(groups):
                waits.append(max(((logs[g][i].wait(k.limit, k.amount, used[g][i], t, window_s),
                                   flat + i) for i, k in enumerate(takes)), default=(0.0, -1)))
                flat += len(takes)
            ok, choice, retry, who = _decide(waits)
            taking = [] if not ok or dry_run else [0, choice + 1] if choice >= 0 else [0]
            for g in taking:
                for k, lg in zip(groups[g], logs[g]):
                    lg.entries.append((max(t, lg.entries[-1][0]) if lg.entries else t, token))
                    lg.amounts[token] = lg.amounts.get(token, 0.0) + k.amount
                    lg.total += k.amount
        return Taken(ok, choice, retry, who, tuple(u for g in used for u in g))

    def window_adjust(self, keys: Sequence[str], token: str, delta: float) -> None:
        with self._lock:
            for log in (self._logs.get(k) for k in keys):
                if log is not None and token in log.amounts:
                    log.amounts[token] += delta
                    log.total += delta

    def _account(self, key: str, now: float) -> _Account:
        account = self._accounts.get(key)
        if account is None or (account.expires_at is not None and account.expires_at <= now):
            account = self._accounts[key] = _Account()
        return account

    def reserve(self, holds: Sequence[Hold], *, token: str, hold_s: float,
                now: float | None = None) -> Reserved:
        t = time.time() if now is None else now
        with self._lock:
            self._sweep(t)
            accounts = [self._account(h.key, t) for h in holds]
            spent = tuple(a.spent for a in accounts)
            reserved = tuple(a.reserved(t) for a in accounts)
            for i, h in enumerate(holds):
                if spent[i] + reserved[i] + h.amount > h.limit:
                    return Reserved(False, i, spent, reserved)
            for h, account in zip(holds, accounts):
                account.holds[token] = (h.amount, t + hold_s)
                account.expires_at = h.expires_at
                members = self._rosters.get(h.roster, (set(), None))[0]
                self._rosters[h.roster] = (members | {h.member}, h.expires_at)
        return Reserved(True, -1, spent, reserved)

    def settle(self, keys: Sequence[tuple[str, float | None]], *, token: str, actual: float,
               softs: Sequence[Soft] = ()) -> Settled:
        now = time.time()
        with self._lock:
            accounts = [self._account(key, now) for key, _ in keys]
            for account, (_, expires_at) in zip(accounts, keys):
                account.holds.pop(token, None)
                if actual:
                    account.spent += actual
                    account.expires_at = expires_at
            crossed = []
            for soft in softs:
                account = accounts[soft.counter]
                crossed.append(account.spent >= soft.at and soft.flag not in account.flags)
                if crossed[-1]:
                    account.flags.add(soft.flag)
        return Settled(tuple(a.spent for a in accounts), tuple(crossed))

    def balances(self, keys: Sequence[str]) -> list[tuple[float, float]]:
        now = time.time()
        with self._lock:
            return [(a.spent, a.reserved(now)) for a in (self._account(k, now) for k in keys)]

    def members(self, roster: str) -> list[str]:
        with self._lock:
            members, expires_at = self._rosters.get(roster, (set(), None))
            return [] if expires_at is not None and expires_at <= time.time() else sorted(members)

    def ping(self) -> float:
        return 0.0

    def _sweep(self, now: float) -> None:
        """Once a minute, drop counters of past periods so a long-lived process stays small."""
        if now - self._swept >= 60:
            self._swept = now
            for key in [k for k, a in self._accounts.items() if (a.expires_at or now) < now]:
                del self._accounts[key]
            for key in [k for k, (_, e) in self._rosters.items() if (e or now) < now]:
                del self._rosters[key]


# ---------------------------------------------------------------------------------------- Redis

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

# KEYS: hash, holds zset per counter. ARGV: token, actual, expire-at ms ('' = never) per
# counter, then (counter number, threshold, flag) per soft threshold.
_SETTLE = """
local token, actual, n, out = ARGV[1], tonumber(ARGV[2]), #KEYS / 2, {}
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local a = redis.call('HGET', h, 'r:' .. token)
  if a then
    redis.call('HINCRBYFLOAT', h, 'reserved', string.format('%.17g', -a))
    redis.call('HDEL', h, 'r:' .. token); redis.call('ZREM', z, token)
  end
  if actual ~= 0 then
    redis.call('HINCRBYFLOAT', h, 'spent', ARGV[2])
    if ARGV[2 + i] ~= '' then redis.call('PEXPIREAT', h, ARGV[2 + i]) end
  end
  out[i] = redis.call('HGET', h, 'spent') or '0'
end
for j = 3 + n, #ARGV, 3 do
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


class _Conn(NamedTuple):
    """A redis client and its registered scripts (each runs by EVALSHA, loading on a miss)."""

    client: Any
    scripts: dict[str, Any]

    def script(self, source: str) -> Any:
        if source not in self.scripts:
            self.scripts[source] = self.client.register_script(source)
        return self.scripts[source]


class RedisBackend(Backend):
    """Counters in Redis, shared by every process using the same server and prefix.

    Each operation is one ``EVALSHA`` (scripts load on first use). Clients are made lazily: one
    sync, one async per event loop (asyncio connections belong to their loop). No retries: a
    script that timed out may have run, and running it again would count twice.
    """

    def __init__(self, url: str, *, prefix: str = "llm-adapter", timeout: float = 0.5) -> None:
        self.url, self.prefix, self.timeout = url, prefix, timeout
        self.description = f"Redis at {masked(url)}"
        self._lock = threading.Lock()
        self._sync: _Conn | None = None
        self._async: dict[asyncio.AbstractEventLoop, _Conn] = {}

    def _new(self, module: Any, retry: Any) -> _Conn:
        from redis.backoff import NoBackoff
        client = module.Redis.from_url(self.url, retry=retry(NoBackoff(), 0),
                                       decode_responses=True, socket_timeout=self.timeout,
                                       socket_connect_timeout=self.timeout)
        return _Conn(client, {})

    def _conn(self) -> _Conn:
        with self._lock:
            if self._sync is None:
                import redis
                import redis.retry
                self._sync = self._new(redis, redis.retry.Retry)
            return self._sync

    def _aconn(self) -> _Conn:
        loop = asyncio.get_running_loop()
        with self._lock:
            if loop not in self._async:
                for closed in [old for old in self._async if old.is_closed()]:
                    del self._async[closed]     # their connections died with their loop
                import redis.asyncio
                import redis.asyncio.retry
                self._async[loop] = self._new(redis.asyncio, redis.asyncio.retry.Retry)
            return self._async[loop]

    @staticmethod
    def _errors() -> tuple[type[Exception], ...]:
        """What means "the server is away" (evaluated only when something was raised)."""
        import redis
        return (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError, OSError)

    def _unavailable(self, exc: Exception) -> BackendUnavailable:
        return BackendUnavailable(
            f"{self.description} is unavailable ({type(exc).__name__}: {exc}); start Redis or "
            "fix router_settings.redis_url / REDIS_URL")

    def _eval(self, source: str, keys: list[str], args: list[str]) -> Any:
        conn = self._conn()
        try:
            return conn.script(source)(keys, args)
        except self._errors() as exc:
            raise self._unavailable(exc) from exc

    async def _aeval(self, source: str, keys: list[str], args: list[str]) -> Any:
        conn = self._aconn()
        try:
            return await conn.script(source)(keys, args)
        except self._errors() as exc:
            raise self._unavailable(exc) from exc

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

    def reserve(self, holds: Sequence[Hold], *, token: str, hold_s: float,
                now: float | None = None) -> Reserved:
        keys = [self._k(k) for h in holds for k in (h.key, f"{h.key}:holds", h.roster)]
        args = [_num(now), token, _num(hold_s), *(x for h in holds for x in (
            _num(h.limit), _num(h.amount), _ms(h.expires_at), h.member))]
        raw = self._eval(_RESERVE, keys, args)
        values = [float(x) for x in raw[1:]]
        return Reserved(int(raw[0]) < 0, int(raw[0]), tuple(values[0::2]), tuple(values[1::2]))

    def settle(self, keys: Sequence[tuple[str, float | None]], *, token: str, actual: float,
               softs: Sequence[Soft] = ()) -> Settled:
        raw = self._eval(_SETTLE, [self._k(k) for key, _ in keys for k in (key, f"{key}:holds")],
                         [token, _num(actual), *(_ms(at) for _, at in keys),
                          *(x for s in softs for x in (str(s.counter + 1), _num(s.at), s.flag))])
        return Settled(tuple(float(x) for x in raw[:len(keys)]),
                       tuple(bool(x) for x in raw[len(keys):]))

    def _call(self, op: Callable[[Any], Any]) -> Any:
        try:
            return op(self._conn().client)
        except self._errors() as exc:
            raise self._unavailable(exc) from exc

    def balances(self, keys: Sequence[str]) -> list[tuple[float, float]]:
        def read(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(self._k(key), "spent", "reserved")
            return list(pipe.execute())
        return [(float(s or 0), float(r or 0)) for s, r in self._call(read)]

    def members(self, roster: str) -> list[str]:
        return sorted(self._call(lambda client: client.smembers(self._k(roster))))

    def ping(self) -> float:
        started = time.perf_counter()
        self._call(lambda client: client.ping())
        return time.perf_counter() - started

    def close(self) -> None:
        with self._lock:
            conn, self._sync = self._sync, None
        if conn is not None:
            conn.client.close()

    async def aclose(self) -> None:
        """Close this event loop's async client."""
        with self._lock:
            conn = self._async.pop(asyncio.get_running_loop(), None)
        if conn is not None:
            await conn.client.aclose()



class Outage:
    """How a limiter or budget goes on when its backend is away: fail closed (raise), or open.

    Failing open, it warns once per outage and then skips the backend for ``retry_s`` seconds,
    so a Redis that hangs costs one socket timeout every few seconds, not one per call.
    """

    def __init__(self, fail_open: bool, consequence: str, *, retry_s: float = 5.0) -> None:
        self.fail_open = fail_open
        self.consequence = consequence
        self.retry_s = retry_s
        self._failed_at: float | None = None

    def skipping(self) -> bool:
        """Whether to go on without the backend now (failing open, it failed just before)."""
        return self._failed_at is not None and time.monotonic() - self._failed_at < self.retry_s

    def failed(self, exc: BackendUnavailable) -> None:
        """Raise ``exc`` when failing closed; else warn (once per outage) and return."""
        if not self.fail_open:
            raise exc
        if self._failed_at is None:
            log.warning("%s; %s until it is back", exc, self.consequence)
        self._failed_at = time.monotonic()

    def answered(self) -> None:
        self._failed_at = None
