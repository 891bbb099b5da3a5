"""Shared fixtures: one provider simulator per test session, configs written per test."""

from __future__ import annotations

import os
import subprocess
import textwrap
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest
import yaml

from adapters.llm import LiteLLMAdapter, load_config
from adapters.llm.simulator import Simulator

from .langfuse_server import LangfuseServer
from .redis_support import RUN, drop_run_keys


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The loopback Langfuse's own tests drive the Langfuse SDK from a fresh process state: the
    SDK keeps process-wide OpenTelemetry state from its first client on, so they run before any
    test that makes an adapter with Langfuse on (whatever the file names sort to)."""
    items.sort(key=lambda item: item.nodeid.split("::")[0] != "tests/test_langfuse_server.py")


@pytest.fixture(scope="session", autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never write to the user's data directory nor to a real Langfuse."""
    saved = {k: os.environ.get(k) for k in ("LLM_ADAPTER_HOME", "LANGFUSE_PUBLIC_KEY",
                                            "LANGFUSE_SECRET_KEY", "LANGFUSE_BASE_URL",
                                            "LANGFUSE_HOST", "ENVIRONMENT")}
    os.environ["LLM_ADAPTER_HOME"] = str(tmp_path_factory.mktemp("llm-adapter-home"))
    for key in saved:
        if key != "LLM_ADAPTER_HOME":
            os.environ.pop(key, None)
    yield
    drop_run_keys()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


@pytest.fixture(scope="module")
def server() -> Iterator[LangfuseServer]:
    """A loopback Langfuse of the test module's own (its projects, rejections and limits)."""
    with LangfuseServer() as langfuse:
        yield langfuse


def run_together(commands: list[tuple[list[str], dict[str, str]]], timeout: float = 180
                 ) -> list[subprocess.CompletedProcess[str]]:
    """Start every (argv, env) at once; their results once all ended (killed after
    ``timeout`` seconds at most)."""
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for argv, env in commands]
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [subprocess.CompletedProcess(p.args, p.returncode, out, err)
            for p, (out, err) in zip(procs, outs)]


def unique(prefix: str) -> str:
    """A scenario name no other test uses (scenarios and cooldowns are per name)."""
    return f"{prefix}-{RUN}{uuid.uuid4().hex[:8]}"   # RUN: this run's Redis keys are found


# -- configs --------------------------------------------------------------------------------
ConfigSource = str | Mapping[str, Any]


def write_config(directory: Path, source: ConfigSource, *, sim_url: str | None = None,
                 name: str | None = None) -> Path:
    """A config file in ``directory`` from YAML text (dedented) or a dict; ``{sim}`` in it
    becomes ``sim_url``."""
    text = yaml.safe_dump(dict(source), sort_keys=False) if isinstance(source, Mapping) \
        else textwrap.dedent(source)
    if sim_url is not None:
        text = text.replace("{sim}", sim_url)
    path = directory / (name or f"config-{uuid.uuid4().hex[:6]}.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def sim_deployment(group: str, scenario: str, *, model: str = "openai/gpt-4o",
                   key: str = "sk-test-0001", with_id: bool = True, **params: Any
                   ) -> dict[str, Any]:
    """A model_list entry served by the simulator's ``scenario`` (also its deployment id,
    unless ``with_id=False`` leaves the id to LiteLLM)."""
    entry: dict[str, Any] = {"model_name": group,
                             "litellm_params": {"model": model,
                                                "api_base": f"{{sim}}/s/{scenario}",
                                                "api_key": key, **params}}
    if with_id:
        entry["model_info"] = {"id": scenario}
    return entry


def one_group(scenario: str, *, key: str = "sk-test-main-0001", model: str = "openai/gpt-4o",
              **sections: Any) -> dict[str, Any]:
    """The standard one-group config: group ``main`` on ``scenario``, plus ``sections``."""
    return {"model_list": [sim_deployment("main", scenario, key=key, model=model)], **sections}


def profiles(**environments: Mapping[str, Any]) -> dict[str, Any]:
    """An ``environments`` section: each profile on group ``main`` unless it names another
    ``default_model``."""
    return {name: {"default_model": "main", **settings} for name, settings in environments.items()}


def traced(scenario: str, key: str, **sections: Any) -> dict[str, Any]:
    """One group traced to Langfuse: profile ``production`` (tagged ``production``) and
    ``staging`` (masking off)."""
    return one_group(scenario, key=key, environments=profiles(
        production={"langfuse": {"enabled": True, "default_tags": ["production"]}},
        staging={"langfuse": {"enabled": True}, "masking": {"enabled": False}}), **sections)


def two_groups(primary: str, backup: str, *, primary_params: Mapping[str, Any] | None = None,
               backup_params: Mapping[str, Any] | None = None, **sections: Any
               ) -> dict[str, Any]:
    """The standard chain: ``primary`` falls back to ``backup`` (groups of those names);
    ``*_params`` add to or replace a deployment's ``litellm_params`` (``model``, ``timeout``)."""
    return {"model_list": [
                sim_deployment("primary", primary, **{"key": "sk-test-primary-0001",
                                                      **(primary_params or {})}),
                sim_deployment("backup", backup, **{"key": "sk-test-backup-0002",
                                                    **(backup_params or {})})],
            "fallbacks": ["primary", "backup"], **sections}


@pytest.fixture
def config_file(tmp_path: Path) -> Callable[..., Path]:
    """Write a config from YAML text or a dict into the test's directory; its path. Needs no
    simulator: pass ``sim_url=`` to fill ``{sim}``."""

    def write(source: ConfigSource, *, sim_url: str | None = None,
              name: str | None = None) -> Path:
        return write_config(tmp_path, source, sim_url=sim_url, name=name)

    return write


@pytest.fixture
def make_adapter(tmp_path: Path, sim: Simulator):
    """Write a config (YAML text or a dict; ``{sim}`` is the simulator URL) and build an
    adapter on it."""

    def build(source: ConfigSource, *, model: str | None = None,
              environment: str | None = None, **kwargs: object) -> LiteLLMAdapter:
        path = write_config(tmp_path, source, sim_url=sim.url)
        config = load_config(path, environment=environment, load_dotenv=False)
        return LiteLLMAdapter(model=model, config=config, **kwargs)  # type: ignore[arg-type]

    return build

