"""Budgets over both backends: the in-process one and a real Redis
($LLM_ADAPTER_TEST_REDIS_URL, default 127.0.0.1:6379).

Redis tests fail (never skip) when no server listens. Each test uses its own key prefix and
deletes its keys afterwards.
"""

from __future__ import annotations

import logging
import multiprocessing
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from adapters.llm import BudgetExceeded, ConfigError, UsageError, load_config
from adapters.llm._traffic.counters import Backend, BackendUnavailable, MemoryBackend
from adapters.llm._traffic.counters_redis import RedisBackend
from adapters.llm._traffic.budgets import BudgetRule, Budgets

from .redis_support import (backend, prefix, redis_backend,  # noqa: F401 (fixtures)
                            shared_redis_url)

CALL = {"user": "alice", "session": "s1", "agent": "matching", "tags": ["urgent"],
        "environment": "production"}


def budgets(backend: Backend, *rules: BudgetRule, **kw: object) -> Budgets:
    return Budgets(rules, backend, namespace="ns", **kw)  # type: ignore[arg-type]


def balance(b: Budgets, scope: str, value: str) -> tuple[float, float]:
    row = next(r for r in b.usage() if (r["scope"], r["id"]) == (scope, value))
    return round(row["spent"], 9), round(row["reserved"], 9)


# ------------------------------------------------------------------------------------- config


def write_config(tmp_path: Path, budgets_yaml: str, profile_yaml: str = "") -> Path:
    path = tmp_path / "litellm_config.yaml"
    path.write_text(textwrap.dedent("""\
        model_list:
          - model_name: m
            litellm_params: {model: openai/gpt-4o, api_key: k}
        """) + textwrap.dedent(budgets_yaml) + (
        "environments:\n  development: {}\n  production:\n" +
        textwrap.indent(textwrap.dedent(profile_yaml), "    ") if profile_yaml else ""))
    return path


def from_yaml(tmp_path: Path, budgets_yaml: str, profile_yaml: str = "",
              environment: str | None = None) -> Budgets | None:
    config = load_config(write_config(tmp_path, budgets_yaml, profile_yaml),
                         environment=environment, load_dotenv=False)
    return Budgets.from_config(config, MemoryBackend())


@pytest.mark.parametrize("limits, key, words", [
    ("[{scope: users, limit: 5, period: day}]", "budgets.limits[0].scope",
     ["'users' is not a valid scope", "did you mean 'user'?"]),
    ("[{scope: user, limit: 5, period: daily}]", "budgets.limits[0].period",
     ["'daily' is not a valid period", "day, week, month, total"]),
    ("[{scope: tag, limit: 1, period: day}, {scope: user, limit: -1, period: day}]",
     "budgets.limits[1].limit", ["-1 is out of range", ">= 0"]),
    ("[{scope: user, period: day}]", "budgets.limits[0].limit", ["limit is missing", "add limit"]),
    ("[{scope: user, limit: 5}]", "budgets.limits[0].period", ["period is missing"]),
    ("[{scope: user, limt: 5, period: day}]", "budgets.limits[0].limt",
     ["unknown key 'limt'", "did you mean 'limit'?"]),
    ("[{scope: user, limit: five, period: day}]", "budgets.limits[0].limit",
     ["expected a number", "e.g. 5.00"]),
    ("[user]", "budgets.limits[0]", ["must be a mapping", "{scope: user, limit: 5.00"]),
    ("[{scope: agent, id: a, limit: 1, period: day}, {scope: agent, id: a, limit: 2, "
     "period: day}]", "budgets.limits[1]", ["already defined at budgets.limits[0]"]),
])
def test_config_errors_name_the_key_and_the_fix(tmp_path: Path, limits: str, key: str,
                                                words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        from_yaml(tmp_path, f"budgets:\n  limits: {limits}\n")
    assert err.value.key == key and err.value.path and err.value.fix
    for word in words:
        assert word in str(err.value)


def test_config_section_keys_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"budgets.soft_threshold: 1.5 is out of range"):
        from_yaml(tmp_path, "budgets: {soft_threshold: 1.5, limits: []}\n")
    with pytest.raises(ConfigError, match=r"budgets.limit: unknown key .*did you mean 'limits'"):
        from_yaml(tmp_path, "budgets: {limit: []}\n")


def test_from_config_reads_rules_and_profile_overrides(tmp_path: Path) -> None:
    assert from_yaml(tmp_path, "") is None
    assert from_yaml(tmp_path, "budgets: {limits: []}\n") is None
    base = """\
        budgets:
          soft_threshold: 0.5
          limits:
            - {scope: user, limit: 5.00, period: day}
            - {scope: agent, id: matching, limit: 50, period: month}
        """
    dev = from_yaml(tmp_path, base, "budgets: {limits: [{scope: environment, limit: 100, "
                    "period: total}]}\n", environment="development")
    assert dev is not None and dev.soft_threshold == 0.5 and dev.namespace == "development"
    assert [(r.scope, r.id, r.limit, r.period, r.key) for r in dev.rules] == [
        ("user", None, 5.0, "day", "budgets.limits[0]"),
        ("agent", "matching", 50.0, "month", "budgets.limits[1]")]
    prod = from_yaml(tmp_path, base, "budgets: {limits: [{scope: environment, limit: 100, "
                     "period: total}]}\n", environment="production")
    assert prod is not None and prod.soft_threshold == 0.5
    assert [(r.scope, r.key) for r in prod.rules] == [
        ("environment", "environments.production.budgets.limits[0]")]
    with pytest.raises(ConfigError) as err:
        from_yaml(tmp_path, base, "budgets: {limits: [{scope: env, limit: 1, period: day}]}\n",
                  environment="production")
    assert err.value.key == "environments.production.budgets.limits[0].scope"


# -------------------------------------------------------------------------- reserve and settle


def test_the_call_that_would_cross_is_refused_and_reserves_nothing(backend: Backend) -> None:
    b = budgets(backend, BudgetRule("user", 5.0, "day", key="budgets.limits[0]"),
                BudgetRule("environment", 100.0, "month"))
    b.settle(b.check_and_reserve(**CALL, estimated_cost=4.90), 4.90)
    with pytest.raises(BudgetExceeded) as err:
        b.check_and_reserve(**CALL, estimated_cost=0.20)
    e = err.value
    assert (e.scope, e.spent, e.limit) == ("user", 4.90, 5.0)
    tomorrow = datetime.fromtimestamp(time.time() + 86400, timezone.utc).date()
    assert e.resets_at == f"{tomorrow.isoformat()}T00:00:00+00:00"
    assert "user 'alice' has spent $4.90 of its $5.00 per day (budgets.limits[0])" in str(e)
    assert "raise budgets.limits[0].limit" in str(e)
    assert balance(b, "user", "alice") == (4.90, 0)
    assert balance(b, "environment", "production") == (4.90, 0)   # not reserved either
    b.release(b.check_and_reserve(**CALL, estimated_cost=0.10))     # exactly up to the limit


def test_settle_replaces_the_estimate_and_release_drops_it(backend: Backend) -> None:
    b = budgets(backend, BudgetRule("session", 1.0, "total"))
    reservation = b.check_and_reserve(**CALL, estimated_cost=0.50)
    assert balance(b, "session", "s1") == (0, 0.50)
    b.settle(reservation, 0.30)
    assert balance(b, "session", "s1") == (0.30, 0)
    b.release(b.check_and_reserve(**CALL, estimated_cost=0.60))
    assert balance(b, "session", "s1") == (0.30, 0)
    b.settle(b.check_and_reserve(**CALL, estimated_cost=0.25), None)   # unknown price
    assert balance(b, "session", "s1") == (0.55, 0)
    with pytest.raises(UsageError, match="already settled"):
        b.settle(reservation, 0.1)
    with pytest.raises(UsageError, match="estimated_cost"):
        b.check_and_reserve(**CALL, estimated_cost=-1)
    assert b.usage()[0]["resets_at"] is None


def test_in_flight_reservations_count_and_expire(backend: Backend) -> None:
    b = budgets(backend, BudgetRule("user", 1.0, "day"), hold_s=0.3)
    b.check_and_reserve(**CALL, estimated_cost=0.70)        # its process "dies": never settled
    with pytest.raises(BudgetExceeded, match=r"\+ \$0.70 reserved by calls in flight"):
        b.check_and_reserve(**CALL, estimated_cost=0.40)
    time.sleep(0.4)
    b.check_and_reserve(**CALL, estimated_cost=0.40)


def test_rules_with_an_id_apply_to_that_value_only(backend: Backend) -> None:
    b = budgets(backend, BudgetRule("agent", 1.0, "week", "matching"),
                BudgetRule("user", 0.5, "day"), BudgetRule("tag", 0.5, "month"))
    b.settle(b.check_and_reserve(**{**CALL, "agent": "other"}, estimated_cost=0.4), 0.4)
    b.settle(b.check_and_reserve(**{**CALL, "user": "bob", "tags": ["a", "b", "a"]},
                                 estimated_cost=0.3), 0.3)
    assert {(r["scope"], r["id"]): round(r["spent"], 9) for r in b.usage()} == {
        ("agent", "matching"): 0.3, ("user", "alice"): 0.4, ("user", "bob"): 0.3,
        ("tag", "a"): 0.3, ("tag", "b"): 0.3, ("tag", "urgent"): 0.4}
    with pytest.raises(BudgetExceeded, match="tag 'b'"):
        b.check_and_reserve(**{**CALL, "user": "carol", "tags": ["b"]}, estimated_cost=0.25)
    reservation = b.check_and_reserve(user=None, session=None, agent=None, tags=[],
                                      environment="production", estimated_cost=9)
    assert reservation.budgets == []                        # no rule names these values


def next_month() -> datetime:
    """The start of next month (UTC): a period boundary in the future, so counters live on."""
    today = datetime.now(timezone.utc)
    return datetime(today.year + today.month // 12, today.month % 12 + 1, 1, tzinfo=timezone.utc)


def test_soft_threshold_crossing_is_reported_once_per_period(backend: Backend) -> None:
    boundary = next_month()
    now = [boundary.timestamp() - 3600]                     # 23:00 on the month's last day
    b = budgets(backend, BudgetRule("user", 1.0, "day"), BudgetRule("user", 3.0, "month"),
                soft_threshold=0.8, clock=lambda: now[0])
    assert b.settle(b.check_and_reserve(**CALL, estimated_cost=0.5), 0.5) == []
    crossings = b.settle(b.check_and_reserve(**CALL, estimated_cost=0.1), 0.35)
    assert [(c.rule.period, c.id, round(c.spent, 9), c.limit, c.threshold, c.resets_at)
            for c in crossings] == [("day", "alice", 0.85, 1.0, 0.8, boundary.isoformat())]
    assert b.settle(b.check_and_reserve(**CALL, estimated_cost=0.1), 0.1) == []
    now[0] += 3600                                          # a new day and a new month
    assert [c.rule.period for c in b.settle(b.check_and_reserve(**CALL, estimated_cost=0.1),
                                            0.9)] == ["day"]
    assert b.settle(b.check_and_reserve(**CALL, estimated_cost=0.05), 0.05) == []
    following = datetime(boundary.year + boundary.month // 12, boundary.month % 12 + 1, 1,
                         tzinfo=timezone.utc)
    assert {r["period"]: r["resets_at"] for r in b.usage()} == {
        "day": (boundary + timedelta(days=1)).isoformat(), "month": following.isoformat()}


def test_week_periods_start_on_monday() -> None:
    today = datetime.now(timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0)
    wednesday = today + timedelta(days=(2 - today.weekday()) % 7 + 7)
    b = budgets(MemoryBackend(), BudgetRule("user", 1.0, "week"),
                clock=lambda: wednesday.timestamp())
    b.check_and_reserve(**CALL, estimated_cost=0.1)
    monday = (wednesday + timedelta(days=5)).replace(hour=0)
    assert monday.weekday() == 0 and b.usage()[0]["resets_at"] == monday.isoformat()


def test_usage_is_shared_through_redis(prefix: str) -> None:
    one = budgets(redis_backend(prefix), BudgetRule("user", 5.0, "day"))
    two = budgets(redis_backend(prefix), BudgetRule("user", 5.0, "day"))
    one.settle(one.check_and_reserve(**CALL, estimated_cost=1), 1.25)
    assert two.usage() == [{"scope": "user", "id": "alice", "spent": 1.25, "reserved": 0.0,
                            "limit": 5.0, "period": "day", "resets_at": two.usage()[0][
                                "resets_at"], "rule": ""}]


# --------------------------------------------------------------------------------- Redis away


def test_unreachable_redis_fails_closed_or_open_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    rule = BudgetRule("user", 1.0, "day")
    closed = budgets(RedisBackend("redis://127.0.0.1:1/0"), rule)
    with pytest.raises(BackendUnavailable, match="127.0.0.1:1"):
        closed.check_and_reserve(**CALL, estimated_cost=0.1)
    opened = budgets(RedisBackend("redis://127.0.0.1:1/0"), rule, fail_open=True)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            opened.settle(opened.check_and_reserve(**CALL, estimated_cost=5), 5)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not checked against budgets" in warnings[0].getMessage()
    with pytest.raises(BackendUnavailable):
        opened.usage()                      # a report never shows numbers it could not read


# ------------------------------------------------------------------------------- many processes


def _spend(prefix: str, barrier: object, results: object) -> None:
    """One process: ten reservations of $0.10 against a shared $1.00 budget."""
    b = Budgets([BudgetRule("user", 1.0, "total")], RedisBackend(shared_redis_url(), prefix=prefix),
                namespace="ns")
    barrier.wait()  # type: ignore[attr-defined]
    ok = 0
    for _ in range(10):
        try:
            reservation = b.check_and_reserve(**CALL, estimated_cost=0.10)
        except BudgetExceeded:
            continue
        ok += 1
        b.settle(reservation, 0.10)
    results.put(ok)  # type: ignore[attr-defined]


def test_processes_sharing_redis_share_one_budget(prefix: str) -> None:
    redis_backend(prefix)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    workers = [ctx.Process(target=_spend, args=(prefix, barrier, results)) for _ in range(4)]
    for w in workers:
        w.start()
    counts = [results.get(timeout=30) for _ in workers]
    for w in workers:
        w.join(timeout=10)
        assert w.exitcode == 0
    assert sum(counts) == 10, counts
    b = Budgets([BudgetRule("user", 1.0, "total")], RedisBackend(shared_redis_url(), prefix=prefix),
                namespace="ns")
    assert balance(b, "user", "alice") == (1.0, 0)
