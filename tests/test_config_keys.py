"""Every config key is honoured or rejected: bad feature sections fail when the adapter is
built, LiteLLM's keys take effect over the real wire, a LiteLLM proxy config.yaml loads."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import uuid
import warnings
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from adapters.llm import (ConfigError, LiteLLMAdapter, ProviderError, RateLimited, UsageError,
                          load_config)
from adapters.llm.errors import ProxyKeyWarning
from adapters.llm._traffic.policies import PolicyPool
from adapters.llm.simulator import Fault, Scenario
from adapters.llm._observability.tracing import trace_sampled

from .conftest import one_group, sim_deployment, two_groups, unique
from .langfuse_server import LangfuseServer, use_project
from .redis_support import shared_redis_url, wait_for_ping

ML = {"model_list": [{"model_name": "a", "litellm_params": {"model": "openai/gpt-4o"}},
                     {"model_name": "b", "litellm_params": {"model": "anthropic/claude-x"}}]}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty working directory: no real .env or ./config is picked up."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def requests(sim: Any, name: str) -> int:
    return int(sim.stats(name).get("requests", 0)) if sim.stats(name) else 0


# ------------------------------------------------------------- bad sections fail at construction

BAD_SECTIONS: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    ("budgets-scope", {"budgets": {"limits": [{"scope": "planet", "limit": 1, "period": "day"}]}},
     "budgets.limits[0].scope", ("'planet' is not a valid scope", "user, session")),
    ("budgets-missing-period", {"budgets": {"limits": [{"scope": "user", "limit": 1}]}},
     "budgets.limits[0].period", ("period is missing",)),
    ("masking-detector", {"masking": {"detectors": ["emails"]}}, "masking.detectors",
     ("detectors must be a list drawn from",)),
    ("masking-regex", {"masking": {"patterns": [{"regex": "(unclosed"}]}}, "masking.patterns[0]",
     ("invalid regular expression",)),
    ("masking-unknown", {"masking": {"enable": True}}, "masking.enable",
     ("unknown key 'enable'", "did you mean 'enabled'?")),
    ("alerts-metric", {"alerts": {"rules": [{"name": "r", "metric": "errors", "above": 1,
                                             "window": "1h"}]}},
     "alerts.rules[0].metric", ("'errors' is not a valid metric",)),
    ("hedging-percentile", {"router_settings": {"hedging": {"after_percentile": 150}}},
     "router_settings.hedging.after_percentile", ("150 is out of range",)),
    ("hedging-both", {"router_settings": {"hedging": {"after_ms": 1, "after_percentile": 95}}},
     "router_settings.hedging", ("set one of after_ms and after_percentile",)),
    ("prompts-timeout", {"prompts": {"fetch_timeout": 0}}, "prompts.fetch_timeout",
     ("positive number of seconds",)),
    ("experiments-weight", {"prompts": {"experiments": {"p": {"variants": {"a": -1}}}}},
     "prompts.experiments.p.variants.a", ("must be a positive number",)),
    ("store-enabled", {"store": {"enabled": "sometimes"}}, "store.enabled",
     ("expected true or false",)),
    ("store-unknown", {"store": {"uri": "sqlite:///x"}}, "store.uri",
     ("unknown key 'uri' in store", "did you mean 'url'", "enabled, path, url")),
    ("store-recorder", {"store": {"recorder": "proces"}}, "store.recorder",
     ("'proces' is not a valid recorder", "process, thread")),
    ("limits-max-wait", {"router_settings": {"max_wait": "long"}}, "router_settings.max_wait",
     ("expected a number of seconds",)),
    ("langfuse-top-level", {"langfuse": {"sample_rate": 2}}, "langfuse.sample_rate",
     ("between 0 and 1",)),
    ("profile-budgets", {"environments": {"development": {"budgets": {"soft_threshold": 3}}}},
     "environments.development.budgets.soft_threshold", ("3 is out of range",)),
    ("profile-hedging", {"environments": {"development": {"router_settings": {
        "hedging": {"after": 2}}}}},
     "environments.development.router_settings.hedging.after", ("did you mean 'after_ms'?",)),
]


@pytest.mark.parametrize(("section", "key", "words"), [b[1:] for b in BAD_SECTIONS],
                         ids=[b[0] for b in BAD_SECTIONS])
def test_a_bad_feature_section_fails_when_the_adapter_is_built(
        config_file: Any, section: dict[str, Any], key: str, words: tuple[str, ...]) -> None:
    path = config_file({**ML, **section})
    with pytest.raises(ConfigError) as caught:
        LiteLLMAdapter(config_path=path)
    err = caught.value
    assert (err.path, err.key) == (str(path), key), str(err)
    assert err.fix, str(err)
    for word in words:
        assert word in str(err), f"{word!r} not in {err}"


# ----------------------------------------------------------------------- keys that are rejected

REJECTED: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    ("top-level-cache", {"cache": {"type": "redis"}}, "cache",
     ("not read", "router_settings.cache")),
    ("profile-cache", {"environments": {"development": {"cache": {"type": "local"}}}},
     "environments.development.cache", ("environments.development.router_settings.cache",)),
    ("litellm-modify-params", {"litellm_settings": {"modify_params": True}},
     "litellm_settings.modify_params", ("not supported", "would change how calls are made")),
    ("litellm-typo", {"litellm_settings": {"drop_param": True}}, "litellm_settings.drop_param",
     ("did you mean 'drop_params'?",)),
    ("litellm-cache", {"litellm_settings": {"cache": True}}, "litellm_settings.cache",
     ("not used by this library", "router_settings.cache")),
    ("litellm-num-retries", {"litellm_settings": {"num_retries": "many"}},
     "litellm_settings.num_retries", ("expected a whole number",)),
    ("cache-responses", {"router_settings": {"cache_responses": True}},
     "router_settings.cache_responses", ("litellm's own response cache", "router_settings.cache")),
    ("caching-groups", {"router_settings": {"caching_groups": [["a", "b"]]}},
     "router_settings.caching_groups", ("not supported",)),
    ("redis-port-alone", {"router_settings": {"redis_port": 6380}}, "router_settings.redis_host",
     ("redis_host is not",)),
    ("chain-twice", {"fallbacks": ["a", "b"], "litellm_settings": {"fallbacks": [{"a": ["b"]}]}},
     "litellm_settings.fallbacks", ("both here and at the top level",)),
]


@pytest.mark.parametrize(("section", "key", "words"), [r[1:] for r in REJECTED],
                         ids=[r[0] for r in REJECTED])
def test_a_key_that_is_not_honoured_is_an_error_naming_it(
        config_file: Any, section: dict[str, Any], key: str, words: tuple[str, ...]) -> None:
    path = config_file({**ML, **section})
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={}, load_dotenv=False)
    assert caught.value.key == key, str(caught.value)
    for word in words:
        assert word in str(caught.value), f"{word!r} not in {caught.value}"


# ------------------------------------------------------------------ a LiteLLM proxy config.yaml

PROXY_CONFIG = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      rpm: 60
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5-20250929
      api_key: os.environ/ANTHROPIC_API_KEY

litellm_settings:
  drop_params: True
  num_retries: 3
  request_timeout: 10
  success_callback: ["langfuse"]
  fallbacks: [{"gpt-4o": ["claude"]}]
  content_policy_fallbacks: [{"gpt-4o": ["claude"]}]

general_settings:
  master_key: sk-proxy-MASTER-1234
  database_url: "postgresql://proxy:pw-DB-5678@db.test:5432/litellm"
  alerting: ["slack"]
  store_model_in_db: true

router_settings:
  routing_strategy: usage-based-routing-v2
  redis_host: os.environ/REDIS_HOST
  redis_password: os.environ/REDIS_PASSWORD
  redis_port: os.environ/REDIS_PORT
  enable_pre_call_checks: true
"""


def test_a_litellm_proxy_config_loads_and_its_call_keys_apply(config_file: Any) -> None:
    path = config_file(PROXY_CONFIG)
    env = {"REDIS_HOST": "redis.test", "REDIS_PORT": "6380", "REDIS_PASSWORD": "p@ss/word",
           "OPENAI_API_KEY": "sk-o-1"}
    config = load_config(path, env=env, load_dotenv=False)
    rs = config.router_settings
    assert rs.redis_url == "redis://:p%40ss%2Fword@redis.test:6380"
    assert (rs.num_retries, rs.timeout, rs.routing_strategy) == (3, 10.0,
                                                                 "usage-based-routing-v2")
    assert config.settings.litellm.drop_params is True
    assert config.fallbacks == config.content_policy_fallbacks == (("gpt-4o", ("claude",)),)
    assert config.settings.proxy_only == (
        "general_settings.master_key", "general_settings.database_url",
        "general_settings.alerting", "general_settings.store_model_in_db",
        "litellm_settings.success_callback")
    assert "p@ss" not in repr(config) and "MASTER" not in repr(config)


def test_environment_variables_feed_the_files_references_only(config_file: Any) -> None:
    before = dict(os.environ)
    path = config_file({**ML, "environment_variables": {"LLMA_TEST_BASE": "http://b.test/v1",
                                                        "OPENAI_API_KEY": "sk-from-file-1"},
                        "router_settings": {"redis_host": "os.environ/LLMA_TEST_REDIS"}})
    path.write_text(path.read_text().replace("model: openai/gpt-4o",
                                             "model: openai/gpt-4o\n    api_base: "
                                             "os.environ/LLMA_TEST_BASE"))
    config = load_config(path, env={"OPENAI_API_KEY": "sk-env"}, load_dotenv=False)
    a = config.deployments[0]
    assert a.litellm_params["api_base"] == "http://b.test/v1"
    assert a.litellm_params["api_key"] == "sk-from-file-1"     # as the proxy: the file's wins
    assert config.router_settings.redis_url is None             # LLMA_TEST_REDIS is unset
    assert dict(os.environ) == before and "environment_variables" not in config.sections


def test_proxy_only_keys_are_named_in_one_warning_without_their_values(
        config_file: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_HOST", raising=False)
    path = config_file(PROXY_CONFIG.replace("  redis_host: os.environ/REDIS_HOST\n", "")
                       .replace("  redis_password: os.environ/REDIS_PASSWORD\n", "")
                       .replace("  redis_port: os.environ/REDIS_PORT\n", ""))
    with pytest.warns(ProxyKeyWarning) as caught:
        LiteLLMAdapter(config_path=path)
    [warning] = caught.list
    text = str(warning.message)
    assert "general_settings.master_key" in text and "litellm_settings.success_callback" in text
    assert "LiteLLM proxy" in text and "does not use them" in text
    assert "MASTER" not in text and "pw-DB" not in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LiteLLMAdapter(config_path=config_file(ML))        # nothing to say: no warning


# ------------------------------------------------------------------ honoured, over the real wire


def test_drop_params_drops_what_the_provider_does_not_support(make_adapter: Any) -> None:
    name = unique("drop")
    base = {"model_list": [sim_deployment("main", name,
                                          model="anthropic/claude-sonnet-4-5-20250929")]}
    strict = make_adapter(base)
    with pytest.raises(UsageError, match="logit_bias"):
        strict.generate(prompt="Hello", logit_bias={"1": 5})
    import litellm

    before = (litellm.drop_params, litellm.num_retries, litellm.request_timeout)
    lenient = make_adapter({**base, "litellm_settings": {"drop_params": True, "num_retries": 2,
                                                         "request_timeout": 30}})
    assert lenient.generate(prompt="Hello", logit_bias={"1": 5}).content.startswith("Simulated")
    # The application's own litellm calls are untouched: nothing was set on the module.
    assert (litellm.drop_params, litellm.num_retries, litellm.request_timeout) == before
    with pytest.raises(litellm.UnsupportedParamsError):
        litellm.completion(model="anthropic/claude-sonnet-4-5-20250929", api_key="sk-ant-test-1",
                           api_base="http://127.0.0.1:9",      # refused before sending
                           messages=[{"role": "user", "content": "Hi"}], logit_bias={"1": 5})


@pytest.mark.parametrize(("settings", "expected"), [
    ({"litellm_settings": {"num_retries": 2}}, 3),
    ({"litellm_settings": {"num_retries": 0}}, 1),
    ({"litellm_settings": {"num_retries": 2}, "router_settings": {"num_retries": 0}}, 1),
])
def test_num_retries_is_the_attempts_the_simulator_counts(
        make_adapter: Any, sim: Any, settings: dict[str, Any], expected: int) -> None:
    names = [unique(f"retry-{i}") for i in range(3)]
    for name in names:
        sim.set_scenario(name, "down")
    llm = make_adapter({"model_list": [sim_deployment("pool", n) for n in names], **settings})
    with pytest.raises(ProviderError):
        llm.generate(prompt="Hello", timeout=20)
    assert sum(requests(sim, n) for n in names) == expected


def test_request_timeout_bounds_each_attempt(make_adapter: Any, sim: Any) -> None:
    p, b = unique("slow"), unique("backup")
    sim.set_scenario(p, Scenario(faults=[Fault(kind="stall", stall_s=30)]))
    llm = make_adapter(two_groups(p, b, litellm_settings={"request_timeout": 1},
                                  router_settings={"num_retries": 0}))
    assert llm.config.router_settings.timeout == 1.0
    response = llm.generate(prompt="Hello")
    assert response.deployment == b
    assert (response.attempts[0].deployment, response.attempts[0].error_kind) == (p, "timeout")


SAFETY = Fault(kind="status", status=400, message="Your request was rejected as a result of "
               "the safety system.")


@pytest.mark.parametrize("with_policy_chain", [True, False])
def test_content_policy_fallbacks_take_their_own_chain(make_adapter: Any, sim: Any,
                                                       with_policy_chain: bool) -> None:
    p, b, safe = unique("policy"), unique("backup"), unique("safe")
    sim.set_scenario(p, Scenario(faults=[SAFETY]))
    config = two_groups(p, b, router_settings={"num_retries": 0})
    config["model_list"].append(sim_deployment("safe", safe))
    if with_policy_chain:
        config["content_policy_fallbacks"] = [{"primary": ["safe"]}]
    response = make_adapter(config).generate(prompt="Hello")
    failed = response.attempts[0]
    assert (failed.deployment, failed.error_kind, failed.status) == (p, "content_policy", 400)
    if with_policy_chain:
        assert response.deployment == safe and requests(sim, b) == 0
    else:               # LiteLLM's rule: without that chain, the usual fallbacks
        assert response.deployment == b and requests(sim, safe) == 0


def test_redis_host_and_port_share_limits_between_adapters(make_adapter: Any) -> None:
    url = urlsplit(shared_redis_url())
    environment = unique("shared")
    config = {**one_group(unique("limited")),
              "router_settings": {"redis_host": url.hostname, "redis_port": url.port or 6379,
                                  "rpm": 1},
              "environments": {environment: {}}}
    first = make_adapter(config, environment=environment, policies=PolicyPool())
    second = make_adapter(config, environment=environment, policies=PolicyPool())
    assert first.config.router_settings.redis_url == \
        f"redis://{url.hostname}:{url.port or 6379}"
    first.generate(prompt="Hello")
    # Another pool would count in its own memory: only the shared Redis knows of the first call.
    with pytest.raises(RateLimited):
        second.generate(prompt="Hello")


@pytest.fixture
def locked_redis() -> Any:
    """A Redis server of this test's own that wants a password."""
    import redis

    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed (apt-get install redis-server)"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    password = f"pw/{uuid.uuid4().hex[:8]}@x"
    proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no",
                             "--requirepass", password], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port, password=password)
    wait_for_ping(client, f"redis-server on port {port} answering with its password")
    yield port, password, client
    client.close()
    proc.kill()
    proc.wait()


def test_redis_password_reaches_a_server_that_wants_one(make_adapter: Any, locked_redis: Any
                                                        ) -> None:
    port, password, client = locked_redis
    environment = unique("locked")
    config = {**one_group(unique("locked")),
              "router_settings": {"redis_host": "127.0.0.1", "redis_port": port,
                                  "redis_password": password, "rpm": 1},
              "environments": {environment: {}}}
    first = make_adapter(config, environment=environment, policies=PolicyPool())
    first.generate(prompt="Hello")
    with pytest.raises(RateLimited):
        make_adapter(config, environment=environment, policies=PolicyPool()).generate(
            prompt="Hello")
    assert any(environment.encode() in k for k in client.keys("*")), "counted in that Redis"


# -------------------------------------------------------------------------- langfuse.sample_rate


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_sample_rate_sends_that_share_of_traces_and_the_store_keeps_every_call(
        make_adapter: Any, server: LangfuseServer, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, rate: float) -> None:
    public, _ = use_project(server, monkeypatch, tmp_path / "home")
    environment = unique("sampled")
    llm = make_adapter({**one_group(unique("sampled")), "langfuse": {"sample_rate": rate},
                        "environments": {environment: {"langfuse": {"enabled": True}}}},
                       environment=environment)
    trace_ids = []
    for i in range(40):
        if i % 2:                       # an llm.trace span goes, or stays, with its calls
            with llm.trace(f"request {i}"):
                trace_ids.append(llm.generate(prompt=f"q{i}").trace_id)
        else:
            trace_ids.append(llm.generate(prompt=f"q{i}").trace_id)
    assert llm.flush_langfuse(timeout=20)
    spans = [s for s in server.spans() if s.scope_attributes.get("public_key") == public]
    sent = {s.trace_id for s in spans if s.attr("langfuse.observation.type") == "generation"}
    expected = {t for t in trace_ids if trace_sampled(t, rate)}
    assert sent == expected
    roots = {s.trace_id for s in spans if s.name.startswith("request ")}
    assert roots == {t for i, t in enumerate(trace_ids) if i % 2 and t in expected}
    if rate == 0.5:
        assert 0 < len(sent) < 40, "about half of 40 random trace ids"
    with closing(sqlite3.connect(tmp_path / "home" / "calls.sqlite3")) as conn:
        assert conn.execute("SELECT COUNT(*) FROM calls WHERE environment = ?",
                            (environment,)).fetchone()[0] == 40


def test_trace_sampling_is_uniform_over_uuid4_and_opentelemetry_ids() -> None:
    import random

    for ids in ([uuid.uuid4().hex for _ in range(4000)],
                [format(random.getrandbits(128), "032x") for _ in range(4000)]):
        assert all(trace_sampled(t, 1.0) for t in ids)
        assert not any(trace_sampled(t, 0.0) for t in ids)
        for rate in (0.25, 0.5, 0.75):
            share = sum(trace_sampled(t, rate) for t in ids) / len(ids)
            assert abs(share - rate) < 0.05, (rate, share)
        assert [trace_sampled(t, 0.5) for t in ids] == [trace_sampled(t, 0.5) for t in ids]


def test_a_top_level_langfuse_section_is_under_every_profile(config_file: Any) -> None:
    path = config_file({**ML, "langfuse": {"enabled": True, "default_tags": ["app"],
                                           "sample_rate": 0.5},
                        "environments": {"development": {},
                                         "production": {"langfuse": {"default_tags": ["prod"]}},
                                         "ci": {"langfuse": {"enabled": False}}}})
    get = {e: load_config(path, environment=e, env={}, load_dotenv=False).profile.langfuse
           for e in ("development", "production", "ci")}
    assert (get["development"].enabled, get["development"].default_tags) == (True, ("app",))
    assert (get["production"].enabled, get["production"].default_tags) == (True, ("prod",))
    assert get["ci"].enabled is False and get["ci"].sample_rate == 0.5
    assert LiteLLMAdapter(config_path=path, environment="ci").enable_langfuse is False
