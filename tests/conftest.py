"""Shared fixtures: one provider simulator per test session, configs written per test."""

from __future__ import annotations

import os
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest

from adapters.llm import LiteLLMAdapter, load_config
from adapters.llm.simulator import Simulator

from .redis_support import RUN, drop_run_keys


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


def unique(prefix: str) -> str:
    """A scenario name no other test uses (scenarios and cooldowns are per name)."""
    return f"{prefix}-{RUN}{uuid.uuid4().hex[:8]}"   # RUN: this run's Redis keys are found


@pytest.fixture
def make_adapter(tmp_path: Path, sim: Simulator):
    """Write a config (``{sim}`` is the simulator URL) and build an adapter on it."""

    def build(yaml_text: str, *, model: str | None = None, environment: str | None = None,
              **kwargs: object) -> LiteLLMAdapter:
        path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(textwrap.dedent(yaml_text).replace("{sim}", sim.url))
        config = load_config(path, environment=environment, load_dotenv=False)
        return LiteLLMAdapter(model=model, config=config, **kwargs)  # type: ignore[arg-type]

    return build
