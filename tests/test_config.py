"""Config loading: lookup, .env, interpolation, profiles, validation messages (no litellm)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adapters.llm._config.loader import (
    Config, Deployment, LangfuseSettings, Profile, RouterSettings, load_config,
)
from adapters.llm.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
REPO_CONFIG = REPO / "config" / "litellm_config.yaml"
PACKAGED = REPO / "adapters" / "llm" / "data" / "litellm_config.yaml"
ENVIRONMENTS = ("development", "staging", "production", "simulation")
FAKE_KEYS = {"ANTHROPIC_API_KEY": "sk-ant-FAKE-4f9c2e", "OPENAI_API_KEY": "sk-FAKE-openai-77aa",
             "GEMINI_API_KEY": "AIza-FAKE-gemini-0b1d"}

ML = """\
model_list:
  - model_name: a
    litellm_params: {model: openai/gpt-4o}
  - model_name: b
    litellm_params: {model: anthropic/claude-x}
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in an empty directory so no real .env or ./config is picked up."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def write(tmp_path: Path, text: str, name: str = "conf.yaml") -> Path:
    file = tmp_path / "proj" / "config" / name
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text, encoding="utf-8")
    return file


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None, **kw: Any) -> Config:
    return load_config(write(tmp_path, text), env=env or {}, load_dotenv=False, **kw)


# ---------------------------------------------------------------------------- the repo's config


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_repo_config_loads_without_keys(environment: str) -> None:
    config = load_config(REPO_CONFIG, environment=environment, env={}, load_dotenv=False)
    assert config.environment == environment
    assert config.groups() == ("claude-sonnet", "gpt-4-fallback", "gemini-fallback",
                               "ollama-local")
    by_group = {d.model_name: d for d in config.deployments}
    for group, var in (("claude-sonnet", "ANTHROPIC_API_KEY"),
                       ("gpt-4-fallback", "OPENAI_API_KEY"),
                       ("gemini-fallback", "GEMINI_API_KEY")):
        assert by_group[group].key_env == var
        assert by_group[group].key_present is False
        assert by_group[group].litellm_params["api_key"] is None
    ollama = by_group["ollama-local"]
    assert (ollama.key_env, ollama.key_present, ollama.provider) == (None, True, "ollama_chat")
    assert ollama.litellm_params["api_base"] == "http://localhost:11434"
    assert ollama.model_info["input_cost_per_token"] == 0
    assert by_group["claude-sonnet"].id == "claude-sonnet-primary"
    assert by_group["gpt-4-fallback"].id == "gpt-4-fallback-1"
    assert [d.provider for d in config.deployments] == ["anthropic", "openai", "gemini",
                                                         "ollama_chat"]
    assert config.fallbacks == (("claude-sonnet", ("gpt-4-fallback", "gemini-fallback")),
                                ("gpt-4-fallback", ("gemini-fallback",)))
    assert config.context_window_fallbacks == (("claude-sonnet", ("gemini-fallback",)),)
    rs = config.router_settings
    assert (rs.routing_strategy, rs.num_retries, rs.timeout, rs.stream_timeout) == \
        ("least-busy", 1, 60.0, 20.0)
    assert (rs.cooldown_time, rs.allowed_fails, rs.rpm, rs.tpm) == (30.0, 0, 500, 100000)
    assert set(config.profiles) == set(ENVIRONMENTS)
    assert config.profile is config.profiles[environment]


def test_repo_config_profiles() -> None:
    def get(name: str) -> Config:
        return load_config(REPO_CONFIG, environment=name, env={}, load_dotenv=False)

    dev, staging, prod, sim = (get(n) for n in ENVIRONMENTS)
    assert dev.default_model == "ollama-local" and dev.profile.langfuse.enabled is False
    assert staging.profile.langfuse == LangfuseSettings(enabled=True, default_tags=("staging",))
    assert prod.default_model == "claude-sonnet" and prod.profile.fallbacks_enabled
    assert prod.profile.langfuse.default_tags == ("production",)
    assert prod.router_settings.cache == {"type": "redis", "ttl": 3600}
    assert sim.profile.simulated and not prod.profile.simulated
    assert sim.profile.langfuse.enabled is False and sim.default_model == "claude-sonnet"
    assert sim.router_settings.cache == {"type": "local", "ttl": 3600}
    assert sim.profile.router_settings == {
        "cache": {"type": "local", "ttl": 3600},
        "hedging": {"after_percentile": "p95", "default_after_ms": 1000}}
    assert "hedging" not in prod.router_settings.extra, "hedging is off unless configured"
    assert len({c.fingerprint() for c in (dev, staging, prod, sim)}) == 4


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_fake_keys_resolve_but_never_show(environment: str) -> None:
    config = load_config(REPO_CONFIG, environment=environment, env=dict(FAKE_KEYS),
                         load_dotenv=False)
    shown = [repr(config), str(config), repr(config.profile), repr(config.router_settings)]
    for d in config.deployments:
        shown += [repr(d), str(d), str(d.public_params())]
        if d.key_env:
            assert d.key_present is True
            assert d.litellm_params["api_key"] == FAKE_KEYS[d.key_env]
            assert d.public_params()["api_key"] == "***"
    for secret in FAKE_KEYS.values():
        assert not any(secret in text for text in shown)


def test_packaged_copy_is_identical() -> None:
    assert PACKAGED.read_bytes() == REPO_CONFIG.read_bytes()


def test_public_params_masks_secret_looking_keys(tmp_path: Path) -> None:
    config = load(tmp_path, """\
model_list:
  - model_name: a
    litellm_params: {model: openai/x, api_key: lit-KEY-1, aws_secret_access_key: s3cr3t,
                     azure_ad_token: tok-9, max_tokens: 100, input_cost_per_token: 0.1,
                     api_base: "https://user:pw-123@example.test/v1"}
""")
    d = config.deployments[0]
    assert (d.key_env, d.key_present) == (None, True)
    shown = d.public_params()
    assert shown["api_key"] == shown["aws_secret_access_key"] == shown["azure_ad_token"] == "***"
    assert shown["max_tokens"] == 100 and shown["input_cost_per_token"] == 0.1
    assert "pw-123" not in repr(d) and "s3cr3t" not in repr(config) and "tok-9" not in str(d)


# -------------------------------------------------------------------------------- interpolation


def test_interpolation_forms(tmp_path: Path) -> None:
    config = load(tmp_path, """\
model_list:
  - model_name: a
    litellm_params:
      model: openai/gpt-4o
      api_key: ${A_KEY}
      api_base: "https://${HOST:-fallback.test}:${PORT:-443}/v1"
      organization: os.environ/ORG
      region_name: "$${NOT_A_VAR} and $${X:-y}"
      vertex_project: ${EMPTY:-used-when-empty}
      timeout: ${TIMEOUT:-30}
  - model_name: b
    litellm_params: {model: anthropic/c, api_key: os.environ/MISSING_KEY}
""", env={"A_KEY": "k-1", "HOST": "h.test", "ORG": "org-1", "EMPTY": ""})
    a, b = config.deployments
    assert a.litellm_params["api_key"] == "k-1" and a.key_env == "A_KEY" and a.key_present
    assert a.litellm_params["api_base"] == "https://h.test:443/v1"
    assert a.litellm_params["organization"] == "org-1"
    assert a.litellm_params["region_name"] == "${NOT_A_VAR} and ${X:-y}"
    assert a.litellm_params["vertex_project"] == "used-when-empty"
    assert a.litellm_params["timeout"] == 30
    assert b.litellm_params["api_key"] is None
    assert (b.key_env, b.key_present) == ("MISSING_KEY", False)


def test_missing_var_inside_string_is_an_error(tmp_path: Path) -> None:
    text = ML.replace("{model: openai/gpt-4o}", "{model: openai/gpt-4o, api_base: "
                      "'http://${NOPE_HOST}/v1'}")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    err = info.value
    assert err.key == "model_list[0].litellm_params.api_base"
    assert "NOPE_HOST" in err.problem and err.fix == "set NOPE_HOST or use ${NOPE_HOST:-default}"


def test_conventional_key_var_is_used_when_api_key_absent(tmp_path: Path) -> None:
    config = load(tmp_path, ML + """\
  - model_name: c
    litellm_params: {model: mistral/m, api_key: null}
  - model_name: d
    litellm_params: {model: bedrock/x}
  - model_name: e
    litellm_params: {model: ollama/llama3}
""", env={"OPENAI_API_KEY": "sk-o"})
    a, b, c, d, e = config.deployments
    assert (a.key_env, a.key_present, a.litellm_params["api_key"]) == ("OPENAI_API_KEY", True,
                                                                       "sk-o")
    assert (b.key_env, b.key_present, "api_key" in b.litellm_params) == (
        "ANTHROPIC_API_KEY", False, False)
    assert (c.key_env, c.key_present, c.provider) == ("MISTRAL_API_KEY", False, "mistral")
    assert (d.key_env, d.key_present) == (None, True)
    assert (e.key_env, e.key_present, e.provider) == (None, True, "ollama")


def test_dotenv_fills_but_never_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    file = write(tmp_path, ML.replace("{model: openai/gpt-4o}",
                                      "{model: openai/gpt-4o, api_base: '${BASE}', "
                                      "organization: '${ORG}', region_name: '${REGION}'}"))
    Path(".env").write_text("BASE=from-cwd-dotenv\nORG=from-cwd-dotenv\nENVIRONMENT=development\n")
    (file.parent.parent / ".env").write_text("ORG=from-project\nREGION=from-project\n")
    monkeypatch.delenv("REGION", raising=False)
    before = dict(os.environ)
    config = load_config(file, env={"ORG": "real-env"})
    params = config.deployments[0].litellm_params
    assert params["api_base"] == "from-cwd-dotenv"
    assert params["organization"] == "real-env"
    assert params["region_name"] == "from-project"
    assert dict(os.environ) == before
    ignored = load_config(file, env={"ORG": "o"}, load_dotenv=False)
    assert ignored.deployments[0].litellm_params["api_base"] is None


def test_dotenv_key_reaches_litellm_params(tmp_path: Path) -> None:
    file = write(tmp_path, ML)
    Path(".env").write_text("OPENAI_API_KEY=sk-from-dotenv\n")
    d = load_config(file, env={}).deployments[0]
    assert d.key_present and d.litellm_params["api_key"] == "sk-from-dotenv"
    assert "sk-from-dotenv" not in repr(d)


# ---------------------------------------------------------------------------------- path lookup


def test_path_precedence(tmp_path: Path) -> None:
    assert load_config(env={}, load_dotenv=False).path == PACKAGED
    local = Path("config") / "litellm_config.yaml"
    local.parent.mkdir()
    local.write_text(ML)
    assert load_config(env={}, load_dotenv=False).path == local.resolve()
    by_env = write(tmp_path, ML, "env.yaml")
    assert load_config(env={"LLM_ADAPTER_CONFIG": str(by_env)}, load_dotenv=False).path == by_env
    by_arg = write(tmp_path, ML, "arg.yaml")
    assert load_config(by_arg, env={"LLM_ADAPTER_CONFIG": str(by_env)},
                       load_dotenv=False).path == by_arg


def test_config_path_from_dotenv(tmp_path: Path) -> None:
    by_env = write(tmp_path, ML, "dotenv.yaml")
    Path(".env").write_text(f"LLM_ADAPTER_CONFIG={by_env}\n")
    assert load_config(env={}).path == by_env


@pytest.mark.parametrize("via_env", [False, True])
def test_explicit_missing_path_is_named(tmp_path: Path, via_env: bool) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        if via_env:
            load_config(env={"LLM_ADAPTER_CONFIG": str(missing)}, load_dotenv=False)
        else:
            load_config(missing, env={}, load_dotenv=False)
    assert info.value.path == str(missing)
    assert "does not exist" in str(info.value)
    assert ("LLM_ADAPTER_CONFIG" if via_env else "the path argument") in str(info.value)


# ------------------------------------------------------------------------ environments, shapes


def test_environment_selection(tmp_path: Path) -> None:
    text = ML + "environments:\n  development: {}\n  production: {default_model: b}\n"
    file = write(tmp_path, text)
    assert load_config(file, env={}, load_dotenv=False).environment == "development"
    prod = load_config(file, env={"ENVIRONMENT": "production"}, load_dotenv=False)
    assert prod.environment == "production" and prod.default_model == "b"
    dev = load_config(file, environment="development", env={"ENVIRONMENT": "production"},
                      load_dotenv=False)
    assert dev.environment == "development" and dev.default_model == "a"


def test_no_environments_section_means_implicit_development(tmp_path: Path) -> None:
    config = load(tmp_path, ML)
    assert tuple(config.profiles) == ("development",)
    assert config.profile == Profile(name="development", default_model="a")
    assert config.default_model == "a" and config.router_settings == RouterSettings()


@pytest.mark.parametrize("form", [
    "fallbacks: [a, b, c]",
    "fallbacks: [{a: [b, c]}, {b: [c]}]",
    "fallbacks: {a: [b, c], b: [c]}",
    "fallbacks:\n  - a: [b, c]\n    b: [c]",
])
def test_fallback_forms_normalise_the_same(tmp_path: Path, form: str) -> None:
    text = ML + "  - model_name: c\n    litellm_params: {model: gemini/g}\n" + form + "\n"
    config = load(tmp_path, text)
    assert config.fallbacks == (("a", ("b", "c")), ("b", ("c",)))


def test_groups_ids_and_group_lookup(tmp_path: Path) -> None:
    config = load(tmp_path, ML + "  - model_name: a\n    litellm_params: {model: openai/o}\n")
    assert config.groups() == ("a", "b")
    assert [d.id for d in config.group("a")] == ["a-1", "a-2"]
    assert all(d.model_info["id"] == d.id for d in config.deployments)
    with pytest.raises(ConfigError) as info:
        config.group("aa")
    assert "'aa'" in str(info.value) and "did you mean 'a'?" in str(info.value)


def test_fingerprint_stable_and_sensitive(tmp_path: Path) -> None:
    first = load_config(REPO_CONFIG, env=dict(FAKE_KEYS), load_dotenv=False)
    again = load_config(REPO_CONFIG, env=dict(FAKE_KEYS), load_dotenv=False)
    assert first.fingerprint() == again.fingerprint()
    assert len(first.fingerprint()) == 64
    other_key = load_config(REPO_CONFIG, env={**FAKE_KEYS, "OPENAI_API_KEY": "sk-other"},
                            load_dotenv=False)
    assert other_key.fingerprint() != first.fingerprint()
    base = load(tmp_path, ML).fingerprint()
    assert load(tmp_path, ML).fingerprint() == base
    changed = load(tmp_path, ML.replace("openai/gpt-4o", "openai/gpt-4o-mini")).fingerprint()
    assert changed != base


def test_router_settings_pass_through_and_profile_merge(tmp_path: Path) -> None:
    config = load(tmp_path, ML + """\
router_settings:
  timeout: 30
  retry_policy: {RateLimitErrorRetries: 2}
  hedging: {after_ms: 2}
  redis_url: "redis://:hunter2@redis.test:6379"
  cache: {type: redis, ttl: 60, password: pw-redis}
environments:
  development:
    router_settings: {num_retries: 3, cache: {type: local}}
""")
    rs = config.router_settings
    assert (rs.timeout, rs.num_retries, rs.cache) == (30.0, 3, {"type": "local"})
    assert rs.extra == {"retry_policy": {"RateLimitErrorRetries": 2}, "hedging": {"after_ms": 2}}
    assert "hunter2" not in repr(config) and "hunter2" not in repr(rs)


def test_sections_and_profile_extra_are_carried(tmp_path: Path) -> None:
    config = load(tmp_path, ML + """\
masking: {enabled: true}
budgets: {soft_threshold: 0.5}
store: {path: "${DB_PATH:-x.db}"}
litellm_settings: {drop_params: true}
environments:
  development: {budgets: {fail_open: true}, description: local work, simulator: {scenarios: {a: down}}}
""")
    assert config.sections["masking"] == {"enabled": True}
    assert config.sections["store"] == {"path": "x.db"}
    assert config.sections["litellm_settings"] == {"drop_params": True}
    assert config.profile.extra == {"budgets": {"fail_open": True}, "description": "local work"}
    assert config.profile.simulated and config.profile.simulator == {"scenarios": {"a": "down"}}
    budgets = config.settings.budgets           # the profile's keys over the file's
    assert (budgets.soft_threshold, budgets.fail_open) == (0.5, True)
    assert config.settings.masking.enabled is True and config.settings.store.path == "x.db"
    assert config.settings.litellm.drop_params is True


def test_mappings_are_read_only_but_copy_to_plain_dicts(tmp_path: Path) -> None:
    d: Deployment = load(tmp_path, ML).deployments[0]
    with pytest.raises(TypeError):
        d.litellm_params["model"] = "x"  # type: ignore[index]
    plain = copy.deepcopy(d.litellm_params)
    assert type(plain) is dict
    plain["model"] = "x"
    assert d.litellm_params["model"] == "openai/gpt-4o"


# -------------------------------------------------------------------------------- bad configs

ENV_PROD = "environments:\n  development: {}\n  production: {}\n"

BAD: list[tuple[str, str, str | None, tuple[str, ...], dict[str, Any]]] = [
    ("yaml-syntax", "model_list:\n  - model_name: a\n    litellm_params: {model: x\n"
     "fallbacks: [a\n", None, ("invalid YAML at line", "column"), {}),
    ("yaml-duplicate-key", ML + "fallbacks: [a]\nfallbacks: [b]\n", None,
     ("duplicate key 'fallbacks'", "line 7"), {}),
    ("empty-file", "", None, ("the file is empty; it needs at least model_list",), {}),
    ("only-comments", "# nothing yet\n", None, ("the file is empty",), {}),
    ("top-level-list", "- a\n- b\n", None, ("a mapping at the top level",), {}),
    ("model_list-missing", "router_settings: {timeout: 5}\n", "model_list",
     ("model_list is missing", "model_name: gpt-4o", "litellm_params"), {}),
    ("model_list-not-list", "model_list: {a: 1}\n", "model_list",
     ("must be a list", "model_name: gpt-4o"), {}),
    ("model_list-empty", "model_list: []\n", "model_list", ("model_list is empty",), {}),
    ("entry-not-mapping", "model_list: [gpt-4o]\n", "model_list[0]",
     ("must be a mapping", "model_name:"), {}),
    ("no-model_name", "model_list:\n  - litellm_params: {model: openai/x}\n", "model_list[0]",
     ("model_name is missing", "add model_name"), {}),
    ("no-litellm_params", "model_list:\n  - model_name: a\n", "model_list[0]",
     ("litellm_params is missing", "add litellm_params: {model:"), {}),
    ("no-model", "model_list:\n  - model_name: a\n    litellm_params: {api_key: x}\n",
     "model_list[0].litellm_params.model", ("model is missing", "openai/gpt-4o"), {}),
    ("unknown-top-level", ML + "fallback: [a, b]\n", "fallback",
     ("unknown top-level key 'fallback'", "did you mean 'fallbacks'?", "model_list"), {}),
    ("unknown-deployment-key", ML + "    modelinfo: {id: x}\n", "model_list[1].modelinfo",
     ("unknown key 'modelinfo'", "did you mean 'model_info'?"), {}),
    ("unknown-router-key", ML + "router_settings: {routing_stratgy: least-busy}\n",
     "router_settings.routing_stratgy", ("did you mean 'routing_strategy'?",), {}),
    ("bad-routing-strategy", ML + "router_settings: {routing_strategy: least_busy}\n",
     "router_settings.routing_strategy",
     ("'least_busy' is not a valid routing_strategy", "did you mean 'least-busy'?",
      "latency-based-routing"), {}),
    ("timeout-10s", ML + "router_settings: {timeout: 10s}\n", "router_settings.timeout",
     ("got '10s'", "use a number of seconds, e.g."), {}),
    ("negative-cooldown", ML + "router_settings: {cooldown_time: -1}\n",
     "router_settings.cooldown_time", ("-1 is out of range", ">= 0"), {}),
    ("num_retries-three", ML + "router_settings: {num_retries: three}\n",
     "router_settings.num_retries", ("whole number between 0 and 10", "got 'three'"), {}),
    ("num_retries-11", ML + "router_settings: {num_retries: 11}\n", "router_settings.num_retries",
     ("11 is out of range",), {}),
    ("router-rpm-0", ML + "router_settings: {rpm: 0}\n", "router_settings.rpm",
     ("out of range", ">= 1"), {}),
    ("enable_pre_call_checks-str", ML + "router_settings: {enable_pre_call_checks: sure}\n",
     "router_settings.enable_pre_call_checks", ("expected true or false",), {}),
    ("fallbacks-unknown-chain", ML + "fallbacks: [a, c]\n", "fallbacks[1]",
     ("unknown model group 'c'", "defined model_name values: a, b"), {}),
    ("fallbacks-unknown-dict", ML + "fallbacks: [{a: [b, zz]}]\n", "fallbacks[0].a[1]",
     ("unknown model group 'zz'", "a, b"), {}),
    ("fallbacks-unknown-primary", ML + "fallbacks: [{aa: [b]}]\n", "fallbacks[0].aa",
     ("unknown model group 'aa'", "did you mean 'a'?"), {}),
    ("self-fallback", ML + "fallbacks: [{a: [b, a]}]\n", "fallbacks[0].a[1]",
     ("'a' falls back to itself",), {}),
    ("self-fallback-chain", ML + "fallbacks: [a, b, a]\n", "fallbacks[2]",
     ("appears twice in the chain",), {}),
    ("fallbacks-number", ML + "fallbacks: 3\n", "fallbacks",
     ("chain [a, b, c]", "[{a: [b, c]}"), {}),
    ("fallbacks-nested-list", ML + "fallbacks: [[a, b]]\n", "fallbacks[0]",
     ("chain [a, b, c]", "[{a: [b, c]}"), {}),
    ("cw-fallbacks-unknown", ML + "context_window_fallbacks: [{a: [q]}]\n",
     "context_window_fallbacks[0].a[0]", ("unknown model group 'q'",), {}),
    ("unknown-default-model", ML + "environments:\n  production: {default_model: gpt-5}\n",
     "environments.production.default_model", ("unknown model group 'gpt-5'", "a, b"),
     {"environment": "production"}),
    ("unknown-environment", ML + ENV_PROD, "environments",
     ("unknown environment 'prod'", "ENVIRONMENT", "did you mean 'production'?", "development"),
     {"env": {"ENVIRONMENT": "prod"}}),
    ("environment-without-section", ML, "environments",
     ("unknown environment 'staging'", "development"), {"environment": "staging"}),
    ("duplicate-id", ML.replace("{model: openai/gpt-4o}", "{model: openai/gpt-4o}\n"
                                "    model_info: {id: same}") + "    model_info: {id: same}\n",
     "model_list[1].model_info.id", ("'same' is already used by model_list[0]",), {}),
    ("duplicate-generated-id", ML + "    model_info: {id: a-1}\n", "model_list[1].model_info.id",
     ("'a-1' is already used",), {}),
    ("cache-type", ML + "router_settings: {cache: {type: memcached}}\n",
     "router_settings.cache.type", ("'memcached' is not a valid type", "local, redis, disk"), {}),
    ("cache-ttl-0", ML + "router_settings: {cache: {type: local, ttl: 0}}\n",
     "router_settings.cache.ttl", ("0 is out of range", "> 0"), {}),
    ("cache-unknown-key", ML + "router_settings: {cache: {type: local, tll: 5}}\n",
     "router_settings.cache.tll", ("did you mean 'ttl'?",), {}),
    ("langfuse-enabled-yes-please",
     ML + "environments:\n  development: {langfuse: {enabled: yes please}}\n",
     "environments.development.langfuse.enabled", ("expected true or false", "'yes please'"), {}),
    ("sample-rate-2", ML + "environments:\n  development: {langfuse: {sample_rate: 2}}\n",
     "environments.development.langfuse.sample_rate", ("between 0 and 1",), {}),
    ("profile-unknown-key", ML + "environments:\n  development: {default_modle: a}\n",
     "environments.development.default_modle", ("did you mean 'default_model'?",), {}),
    ("profile-router-settings", ML + "environments:\n  development:\n"
     "    router_settings: {cache: {type: memcached}}\n",
     "environments.development.router_settings.cache.type", ("local, redis, disk",), {}),
    ("simulator-string", ML + "environments:\n  development: {simulator: 'on'}\n",
     "environments.development.simulator", ("expected true, false or a mapping",), {}),
    ("missing-var-in-string", ML.replace("openai/gpt-4o", "'openai/${MODEL_SUFFIX}-x'"),
     "model_list[0].litellm_params.model",
     ("MODEL_SUFFIX", "set MODEL_SUFFIX or use ${MODEL_SUFFIX:-default}"), {}),
    ("unterminated-ref", ML.replace("openai/gpt-4o", "'openai/${GPT'"),
     "model_list[0].litellm_params.model", ("unterminated", "$${"), {}),
    ("weight-0", ML.replace("{model: openai/gpt-4o}", "{model: openai/gpt-4o, weight: 0}"),
     "model_list[0].litellm_params.weight", ("0 is out of range", "> 0"), {}),
    ("tags-not-list", ML.replace("{model: openai/gpt-4o}", "{model: openai/gpt-4o, tags: fast}"),
     "model_list[0].litellm_params.tags", ("expected a list of strings",), {}),
    ("deployment-timeout-10s",
     ML.replace("{model: openai/gpt-4o}", "{model: openai/gpt-4o, timeout: 10s}"),
     "model_list[0].litellm_params.timeout", ("use a number of seconds, e.g.",), {}),
    ("api_version-date",
     ML.replace("{model: openai/gpt-4o}", "{model: azure/x, api_version: 2024-06-01}"),
     "model_list[0].litellm_params.api_version", ("expected text", "quote"), {}),
    ("model_info-cost-negative", ML + "    model_info: {input_cost_per_token: -1}\n",
     "model_list[1].model_info.input_cost_per_token", (">= 0",), {}),
    ("section-not-mapping", ML + "masking: [a]\n", "masking", ("expected a mapping",), {}),
]


@pytest.mark.parametrize(("text", "key", "expected", "kw"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_config(tmp_path: Path, text: str, key: str | None, expected: tuple[str, ...],
                    kw: dict[str, Any]) -> None:
    file = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(file, **{"env": {}, "load_dotenv": False, **kw})
    err, message = info.value, str(info.value)
    assert err.path == str(file) and str(file) in message
    assert err.key == key
    assert err.problem and err.fix, message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_error_messages_never_show_secrets(tmp_path: Path) -> None:
    text = ML.replace("{model: openai/gpt-4o}", "{model: openai/gpt-4o, api_key: [sk-SECRET-1]}")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert info.value.key == "model_list[0].litellm_params.api_key"
    assert "sk-SECRET-1" not in str(info.value)


def test_yaml_error_reports_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, ML + "router_settings:\n  timeout: [1\n")
    assert "line 8" in info.value.problem or "line 9" in info.value.problem


def test_loading_does_not_import_litellm() -> None:
    code = ("import sys; from adapters.llm._config.loader import load_config; "
            "load_config(environment='production', env={}, load_dotenv=False); "
            "assert 'litellm' not in sys.modules, 'litellm imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
