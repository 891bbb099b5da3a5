"""The response cache: local, Redis (real server) and disk; per-call controls; stream replay."""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid

import pytest
import yaml

from adapters.llm._traffic.policies import PolicyPool

from .conftest import one_group, unique
from .redis_support import RUN, shared_redis_url


def adapter(make_adapter, name: str, cache: str, *, key: str = "sk-test-cache-0001",
            pool: PolicyPool | None = None):
    return make_adapter(one_group(name, key=key, router_settings={"cache": yaml.safe_load(cache)}),
                        policies=pool or PolicyPool())


def requests(sim, name: str) -> int:
    return int(sim.stats(name).get("requests", 0))


def test_identical_call_is_answered_from_the_cache_at_no_cost(make_adapter, sim):
    name = unique("cache-local")
    llm = adapter(make_adapter, name, "{type: local, ttl: 60}")
    first = llm.generate(prompt="Which therapists work Saturdays?", temperature=0)
    second = llm.generate(prompt="Which therapists work Saturdays?", temperature=0)
    assert requests(sim, name) == 1
    assert not first.cache_hit and second.cache_hit
    assert second.content == first.content and second.usage == first.usage
    assert second.cost == 0.0 and second.cost_saved == pytest.approx(first.cost)
    other = llm.generate(prompt="Which therapists work Saturdays?", temperature=0.5)
    assert not other.cache_hit and requests(sim, name) == 2, "temperature is part of the key"
    assert llm.policies.cache is not None and llm.policies.cache.hits == 1
    assert llm.flush_langfuse()
    with sqlite3.connect(llm.telemetry.store.path) as conn:
        row = conn.execute("SELECT cache_hit, cost, cost_saved FROM calls WHERE call_id = ?",
                           (second.call_id,)).fetchone()
    assert row[0] == 1 and row[1] == 0.0 and row[2] == pytest.approx(first.cost)


def test_per_call_controls(make_adapter, sim):
    name = unique("cache-controls")
    llm = adapter(make_adapter, name, "{type: local, ttl: 60}")
    llm.generate(prompt="q", cache={"no-store": True})
    assert not llm.generate(prompt="q").cache_hit, "no-store kept it out"
    assert llm.generate(prompt="q", cache={"no-cache": True}).cache_hit is False
    assert llm.generate(prompt="q").cache_hit, "no-cache still stored the answer"
    llm.generate(prompt="short-lived", cache={"ttl": 0.3})
    assert llm.generate(prompt="short-lived").cache_hit
    time.sleep(0.5)
    assert not llm.generate(prompt="short-lived").cache_hit
    with pytest.raises(Exception) as caught:
        llm.generate(prompt="q", cache={"nocache": True})
    assert "unknown cache control" in str(caught.value)


def test_streams_are_cached_and_replayed_as_streams(make_adapter, sim):
    name = unique("cache-stream")
    llm = adapter(make_adapter, name, "{type: local, ttl: 60}")
    first = llm.generate(prompt="tell me about Tuesday", stream=True)
    text = "".join(first)
    replay = llm.generate(prompt="tell me about Tuesday", stream=True)
    chunks = list(replay)
    assert len(chunks) > 1 and "".join(chunks) == text
    assert replay.response is not None and replay.response.cache_hit
    assert requests(sim, name) == 1


def test_redis_cache_is_shared_and_never_keyed_by_api_key(make_adapter, sim, monkeypatch):
    redis_url = shared_redis_url()
    monkeypatch.setenv("REDIS_URL", redis_url)
    name, namespace = unique("cache-redis"), f"{RUN}{uuid.uuid4().hex}"
    settings = f"{{type: redis, ttl: 60, namespace: {namespace}}}"
    one = adapter(make_adapter, name, settings, key="sk-test-process-one-0001")
    two = adapter(make_adapter, name, settings, key="sk-test-process-two-0002")
    assert one.config.fingerprint() != two.config.fingerprint()
    first = one.generate(prompt="shared across replicas")
    second = two.generate(prompt="shared across replicas")
    assert second.cache_hit and second.content == first.content
    assert requests(sim, name) == 1
    import redis

    keys = redis.Redis.from_url(redis_url).keys(f"llm-adapter:{namespace}:*")
    assert keys and all(b"sk-test" not in k for k in keys)


def test_redis_down_calls_go_on_uncached_with_one_warning(make_adapter, sim, monkeypatch, caplog):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    name = unique("cache-redis-down")
    llm = adapter(make_adapter, name, "{type: redis, ttl: 60}")
    with caplog.at_level(logging.WARNING, logger="adapters.llm"):
        answers = [llm.generate(prompt="still answered") for _ in range(3)]
    assert all(a.content for a in answers) and not any(a.cache_hit for a in answers)
    warnings = [r for r in caplog.records if "cache is unreachable" in r.getMessage()]
    assert len(warnings) == 1


def test_disk_cache_survives_a_new_process_pool(make_adapter, sim, tmp_path):
    name = unique("cache-disk")
    settings = f"{{type: disk, ttl: 60, path: {tmp_path / 'cache.sqlite3'}}}"
    adapter(make_adapter, name, settings).generate(prompt="persist me")
    again = adapter(make_adapter, name, settings).generate(prompt="persist me")
    assert again.cache_hit and requests(sim, name) == 1
