"""The prompt registry: Langfuse through the real SDK's REST client over real HTTP to a loopback
Langfuse, the local registry behind it, the cache, variables, placeholders and A/B splits."""

from __future__ import annotations

import logging
import socket
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pytest

from adapters.llm import ConfigError, UsageError, load_config
from adapters.llm._prompts.experiments import Experiment, parse_experiments
from adapters.llm._prompts.sources import LangfuseSource
from adapters.llm._prompts.registry import (CompiledChat, CompiledText, PromptRegistry, build_registry,
                                  prompt_link)
from adapters.llm._observability.tracing import Credentials, TraceScope

from .langfuse_server import LangfuseServer

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    """A monotonic clock the test moves by hand, so TTLs need no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def creds(server: LangfuseServer, monkeypatch: pytest.MonkeyPatch) -> Credentials:
    """A fresh key pair per test, also in the environment for build_registry."""
    public, secret = f"pk-lf-{uuid.uuid4().hex[:12]}", f"sk-lf-{uuid.uuid4().hex[:12]}"
    server.add_key(public, secret)
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", public)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", secret)
    monkeypatch.setenv("LANGFUSE_BASE_URL", server.url)
    return Credentials(public, secret, server.url)


@pytest.fixture
def local(tmp_path: Path) -> Path:
    directory = tmp_path / "prompts"
    directory.mkdir()
    return directory


def name(prefix: str = "p") -> str:
    """Prompt names are per test: the server's prompt store is shared by the module."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def write_local(directory: Path, prompt: str, text: str, *, labels: str = "[production]",
                version: int = 1) -> None:
    (directory / f"{prompt}.yaml").write_text(textwrap.dedent(f"""\
        name: {prompt}
        type: text
        versions:
          - version: {version}
            labels: {labels}
            prompt: "{text}"
        """))


def gets(server: LangfuseServer, prompt: str) -> int:
    return server.request_count(f"/api/public/v2/prompts/{quote(prompt, safe='')}", method="GET")


def registry(local: Path, creds: Credentials | None, **kwargs: object) -> PromptRegistry:
    langfuse = LangfuseSource(creds) if creds else None
    return PromptRegistry(local, langfuse=langfuse, **kwargs)  # type: ignore[arg-type]


# -- sources, versions, labels ---------------------------------------------------------------
def test_text_prompt_from_langfuse_by_version_and_label(server, creds, local):
    p = name()
    server.add_prompt(p, "Skills: {{ required_skills }}.", labels=["production"],
                      config={"temperature": 0.1})
    server.add_prompt(p, "v2 {{required_skills}}", labels=["staging"])
    reg = registry(local, creds)

    prod = reg.get(p)
    assert (prod.version, prod.source, prod.variant) == (1, "langfuse", None)
    assert prod.labels == ("production",) and prod.config == {"temperature": 0.1}
    assert reg.get(p, version=2).version == 2
    assert reg.get(p, version="2").version == 2
    assert reg.get(p, label="staging").version == 2
    assert reg.get(p, version="staging").version == 2          # a label name given as version
    assert reg.get(p, version="latest").version == 2           # no experiment: the newest

    text = prod.compile(required_skills="orthopedic")
    assert text == "Skills: orthopedic." and isinstance(text, CompiledText)
    assert prompt_link(text) is prod and prompt_link(None, [{"role": "user"}]) is None
    with pytest.raises(UsageError, match="not both"):
        reg.get(p, version=1, label="staging")


def test_missing_variable_names_it_and_unused_ones_are_logged(server, creds, local, caplog):
    p = name()
    server.add_prompt(p, "At most {{max_appointments}} for {{therapist}}", labels=["production"])
    prompt = registry(local, creds).get(p)
    assert prompt.variables == ("max_appointments", "therapist")
    with pytest.raises(UsageError) as caught:
        prompt.compile(therapist="Dr. Rivera")
    assert "'max_appointments'" in str(caught.value) and p in str(caught.value)
    with caplog.at_level(logging.DEBUG, logger="adapters.llm"):
        assert prompt.compile(max_appointments=3, therapist="", extra=1) == "At most 3 for "
    assert "ignores variable(s) extra" in caplog.text
    with pytest.raises(UsageError) as caught:
        prompt.compile(max_appointments=3, therapist=None)
    assert "'therapist'" in str(caught.value) and "None" in str(caught.value)


def test_chat_prompt_with_placeholder(server, creds, local):
    p = name("chat")
    server.add_prompt(p, [{"role": "system", "content": "You are a {{level}} scheduler"},
                          {"type": "placeholder", "name": "history"},
                          {"role": "user", "content": "Next free slot for {{patient}}?"}],
                      type="chat", labels=["production"])
    prompt = registry(local, creds).get(p)
    assert prompt.type == "chat" and prompt.placeholders == ("history",)
    history = [{"role": "user", "content": "hi {{not_a_var}}"},
               {"role": "assistant", "content": "hello"}]
    messages = prompt.compile(level="senior", patient="P7", history=history)
    assert isinstance(messages, CompiledChat) and messages.prompt is prompt
    assert messages == [{"role": "system", "content": "You are a senior scheduler"},
                        *history,                      # inserted as given, not templated
                        {"role": "user", "content": "Next free slot for P7?"}]
    user_turn = {"role": "user", "content": "and tomorrow?"}
    assert prompt_link(None, [*messages, user_turn]) is prompt     # survives spreading
    with pytest.raises(UsageError, match="'history'"):
        prompt.compile(level="senior", patient="P7")
    with pytest.raises(UsageError, match="placeholder 'history' needs a list of messages"):
        prompt.compile(level="senior", patient="P7", history="hi")


def test_local_registry_alone_and_edits_take_effect_without_restart(local, caplog):
    p = name()
    write_local(local, p, "first {{x}}")
    clock = Clock()
    reg = PromptRegistry(local, cache_ttl=60, clock=clock)
    assert (reg.get(p).source, reg.get(p).compile(x=1)) == ("local", "first 1")
    write_local(local, p, "second {{x}}")
    assert reg.get(p).compile(x=1) == "first 1"               # fresh: no file access
    clock.now += 61
    assert reg.get(p).compile(x=1) == "first 1"               # stale: served, refresh started
    assert reg.wait_idle()
    assert reg.get(p).compile(x=1) == "second 1"
    with pytest.raises(UsageError, match="did you mean"):
        reg.get(p[:-1])
    assert "comes from the local registry" not in caplog.text  # not a fallback: no warning


# -- cache -----------------------------------------------------------------------------------
class SlowSource(LangfuseSource):
    """The real source, with a delay before each request (to see who waits for it)."""

    delay = 0.0

    def fetch(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(self.delay)
        return super().fetch(*args, **kwargs)


def test_stale_entry_served_at_once_and_refreshed_once_in_background(server, creds, local):
    p = name()
    server.add_prompt(p, "version one", labels=["production"])
    clock = Clock()
    source = SlowSource(creds)
    reg = PromptRegistry(local, langfuse=source, cache_ttl=60, clock=clock)
    assert reg.get(p).version == 1 and gets(server, p) == 1
    for _ in range(1000):
        reg.get(p)
    assert gets(server, p) == 1                                # warm: no request at all

    server.add_prompt(p, "version two", labels=["production"])   # edited in Langfuse
    clock.now += 61
    source.delay = 0.5
    started = time.perf_counter()
    stale = [reg.get(p) for _ in range(50)]
    assert time.perf_counter() - started < 0.25                # nobody waited for the refresh
    assert {s.version for s in stale} == {1}
    assert reg.wait_idle()
    assert gets(server, p) == 2                                # one refresh for 50 stale gets
    assert reg.get(p).version == 2 and reg.get(p).source == "langfuse"


def test_prefetch_warms_the_cache_in_the_background(server, creds, local, tmp_path):
    p = name()
    server.add_prompt(p, "hello", labels=["production"])
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent(f"""\
        model_list: [{{model_name: m, litellm_params: {{model: openai/gpt-4o}}}}]
        prompts: {{dir: {local}, prefetch: [{p}], cache_ttl: 30, fetch_timeout: 1}}
        """))
    reg = build_registry(load_config(config, load_dotenv=False), enable_langfuse=True)
    assert reg.cache_ttl == 30 and reg.fetch_timeout == 1 and reg.langfuse is not None
    assert reg.wait_idle()
    before = gets(server, p)
    assert before == 1 and reg.get(p).source == "langfuse"
    assert gets(server, p) == before                           # the call path made no request


# -- Langfuse unreachable or without the prompt ----------------------------------------------
def test_langfuse_down_warm_serves_the_stale_copy(server, creds, local):
    p = name()
    server.add_prompt(p, "from langfuse", labels=["production"])
    write_local(local, p, "from the local registry")
    clock = Clock()
    reg = registry(local, creds, clock=clock)
    assert reg.get(p).source == "langfuse"
    server.set_down(True)
    try:
        clock.now += 61
        assert reg.get(p).template == "from langfuse"
        assert reg.wait_idle()
        again = reg.get(p)                                     # refresh failed: copy kept
        assert (again.template, again.source) == ("from langfuse", "langfuse")
    finally:
        server.set_down(False)


def test_langfuse_down_cold_falls_back_to_local_once_warned(server, creds, local, caplog):
    p = name()
    write_local(local, p, "local copy")
    reg = registry(local, creds, fetch_timeout=0.5)
    server.set_down(True)
    try:
        started = time.perf_counter()
        prompt = reg.get(p)
        assert time.perf_counter() - started < 0.5
    finally:
        server.set_down(False)
    assert (prompt.source, prompt.template) == ("fallback", "local copy")
    assert reg.get(p, version=1).source == "fallback"
    warnings = [r for r in caplog.records if "comes from the local registry" in r.getMessage()]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()


def test_langfuse_not_answering_is_bounded_by_fetch_timeout(creds, local, caplog):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)                                          # accepts, never answers
    try:
        p = name()
        write_local(local, p, "local copy")
        blackhole = Credentials(creds.public_key, creds.secret_key,
                                f"http://127.0.0.1:{silent.getsockname()[1]}")
        reg = PromptRegistry(local, langfuse=LangfuseSource(blackhole), fetch_timeout=0.3)
        started = time.perf_counter()
        assert reg.get(p).source == "fallback"
        assert 0.25 < time.perf_counter() - started < 1.0
        started = time.perf_counter()                          # Langfuse resting: no wait
        assert reg.get(p, version=1).source == "fallback"
        assert time.perf_counter() - started < 0.2
        warned = [r for r in caplog.records if "comes from the local registry" in r.getMessage()]
        assert len(warned) == 1                                # once per prompt
    finally:
        silent.close()


def test_404_falls_back_to_local_and_a_404_refresh_replaces_the_entry(server, creds, local):
    only_local, both = name(), name()
    write_local(local, only_local, "only here")
    write_local(local, both, "local twin")
    server.add_prompt(both, "in langfuse", labels=["production"])
    clock = Clock()
    reg = registry(local, creds, clock=clock)
    assert reg.get(only_local).source == "fallback"
    assert reg.get(both).source == "langfuse"

    server.prompts.delete(both)                                # gone from Langfuse
    clock.now += 61
    assert reg.get(both).source == "langfuse"                  # stale, refresh started
    assert reg.wait_idle()
    assert (reg.get(both).source, reg.get(both).template) == ("fallback", "local twin")
    with pytest.raises(UsageError, match="Langfuse has no prompt"):
        reg.get(name())                                        # neither has it: both said


# -- A/B -------------------------------------------------------------------------------------
@pytest.mark.parametrize("weights", [(50, 50), (90, 10)])
def test_split_ratio_over_10000_keys_and_stickiness(weights):
    reg = PromptRegistry(ROOT / "prompts", experiments={"smart-scheduling-matching": {
        "variants": {"prod-a": weights[0], "prod-b": weights[1]}}})
    picks = [reg.get("smart-scheduling-matching", sticky_key=f"user-{i}").variant
             for i in range(10_000)]
    share = Counter(picks)["prod-a"] / 10_000
    assert abs(share - weights[0] / sum(weights)) < 0.02
    assert all(reg.get("smart-scheduling-matching", sticky_key=f"user-{i}").variant == picks[i]
               for i in range(0, 10_000, 97))
    other = Experiment("another-prompt", (("prod-a", 1), ("prod-b", 1)))   # independent split
    assert sum(other.assign(f"user-{i}") != picks[i] for i in range(1000)) > 300


def test_experiment_through_the_registry(server, creds, local):
    p = name("ab")
    server.add_prompt(p, "A {{required_skills}}", labels=["production", "prod-a"])
    server.add_prompt(p, "B {{required_skills}}", labels=["prod-b"])
    reg = registry(local, creds, experiments={p: {"variants": {"prod-a": 1, "prod-b": 1},
                                                  "sticky_by": "user_id"}})
    picked = {reg.get(p, sticky_key=f"u{i}").variant for i in range(40)}
    assert picked == {"prod-a", "prod-b"}
    first = reg.get(p, sticky_key="u7")
    assert all(reg.get(p, sticky_key="u7") == first for _ in range(20))      # sticky
    assert first.version == (1 if first.variant == "prod-a" else 2)
    assert reg.get(p, version="latest", sticky_key="u7") == first           # guide's form
    assert reg.get(p, version=2).variant is None                              # bypasses
    assert reg.get(p, label="prod-a").variant is None
    with TraceScope(name="handler", user_id="u7"):                            # key from scope
        assert reg.get(p) == first
    random_picks = Counter(reg.get(p).variant for _ in range(200))            # no key: random
    assert set(random_picks) == {"prod-a", "prod-b"}


def test_experiment_config_is_validated(tmp_path):
    good = parse_experiments({"x": {"variants": {"prod-a": 90, "prod-b": 10}}})
    assert good["x"].shares == {"prod-a": 0.9, "prod-b": 0.1}
    assert good["x"].sticky_by == "user_id"
    for bad, message in [({"x": {"variants": {"prod-a": 0}}}, "positive number"),
                         ({"x": {"variants": {"prod-a": True}}}, "positive number"),
                         ({"x": {"variants": {"Prod A": 1}}}, "not a Langfuse label"),
                         ({"x": {"variants": {"a": 1}, "sticky_by": "tenant"}}, "sticky_by"),
                         ({"x": {"variant": {"a": 1}}}, "did you mean 'variants'")]:
        with pytest.raises(ConfigError, match=message):
            parse_experiments(bad)


def test_build_registry_reads_and_checks_the_prompts_section(tmp_path, local, monkeypatch):
    def config(section: str, profile: str = "{}") -> object:
        path = tmp_path / f"c-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(textwrap.dedent(f"""\
            model_list: [{{model_name: m, litellm_params: {{model: openai/gpt-4o}}}}]
            prompts: {section}
            environments: {{development: {{default_model: m, prompts: {profile}}}}}
            """))
        return load_config(path, load_dotenv=False)

    monkeypatch.delenv("LANGFUSE_PUBLIC_KEY", raising=False)
    reg = build_registry(config(f"{{dir: {local}, cache_ttl: 5}}", "{cache_ttl: 7}"),  # type: ignore[arg-type]
                         enable_langfuse=True)
    assert reg.langfuse is None and reg.cache_ttl == 7 and reg.directory == local
    for section, message in [("{cache_tll: 5}", "did you mean 'cache_ttl'"),
                             ("{fetch_timeout: 0}", "positive number"),
                             ("{prefetch: name}", "list of prompt names"),
                             ("{experiments: {x: {variants: {a: -1}}}}", "positive number")]:
        with pytest.raises(ConfigError, match=message) as caught:
            build_registry(config(section), enable_langfuse=False)  # type: ignore[arg-type]
        assert "prompts" in str(caught.value)
    repo = load_config(ROOT / "config" / "litellm_config.yaml", load_dotenv=False)
    assert build_registry(repo, enable_langfuse=False).directory == ROOT / "prompts"


def test_the_guides_prompts(local):
    reg = PromptRegistry(ROOT / "prompts", experiments={
        "smart-scheduling-matching": {"variants": {"prod-a": 50, "prod-b": 50}}})
    assert "Medicare" in reg.get("smart-scheduling-system-v1").compile()
    assert "orthopedic" in reg.get("smart-scheduling-matching-v1").compile(
        required_skills="orthopedic")
    assert "at most 4" in reg.get("therapist-replacement-orchestrator-v1").compile(
        max_appointments=4)
    variants = {reg.get("smart-scheduling-matching", sticky_key=f"s{i}").variant
                for i in range(20)}
    assert variants == {"prod-a", "prod-b"}
