"""The guide's prompts and default config ship in the package; a project's own files override
them. The search order (argument, environment variable, working directory, packaged) and an
installed wheel running the README quick start from an empty directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adapters.llm import LiteLLMAdapter, UsageError, load_config
from adapters.llm._prompts.sources import packaged_prompts_dir
from adapters.llm._prompts.registry import PromptRegistry, build_registry

ROOT = Path(__file__).resolve().parent.parent
PACKAGED = ROOT / "adapters" / "llm" / "data" / "prompts"
GUIDE = "smart-scheduling-system-v1"


def own_prompt(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        type: text
        versions:
          - version: 7
            labels: [production]
            prompt: "{text}"
        """))
    return path


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("LLM_ADAPTER_PROMPTS", raising=False)
    monkeypatch.delenv("LLM_ADAPTER_CONFIG", raising=False)
    return work


def test_packaged_prompts_are_the_repositorys_prompts() -> None:
    """One source: the repository's prompts/; the packaged copies must not drift from it."""
    assert packaged_prompts_dir() == PACKAGED
    repo = {p.name: p.read_bytes() for p in (ROOT / "prompts").glob("*.yaml")}
    packaged = {p.name: p.read_bytes() for p in PACKAGED.glob("*.yaml")}
    assert repo, "the repository has no prompts/*.yaml"
    drifted = sorted(set(repo) ^ set(packaged) | {n for n in repo if packaged.get(n) != repo[n]})
    assert not drifted, (f"adapters/llm/data/prompts/ differs from prompts/ for {drifted}: "
                         f"copy prompts/*.yaml into adapters/llm/data/prompts/")


def test_from_an_empty_directory_the_packaged_config_and_prompts_answer(empty_cwd: Path) -> None:
    config = load_config(load_dotenv=False, env={})
    assert config.packaged and config.path == ROOT / "adapters/llm/data/litellm_config.yaml"
    registry = build_registry(config, enable_langfuse=False)
    assert registry.directory == empty_cwd / "prompts"          # where pull/promote would write
    prompt = registry.get(GUIDE)
    assert prompt.source == "local" and prompt.location == str(PACKAGED / f"{GUIDE}.yaml")
    assert "Medicare" in prompt.compile()
    assert GUIDE in registry.local.names()


def test_search_order_argument_env_cwd_packaged(empty_cwd: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(load_dotenv=False, env={})

    def text(**kwargs: object) -> tuple[str, str | None]:
        prompt = build_registry(config, enable_langfuse=False, **kwargs).get(GUIDE)  # type: ignore[arg-type]
        return str(prompt.compile()), prompt.location

    assert "Medicare" in text()[0]
    cwd_file = own_prompt(empty_cwd / "prompts", GUIDE, "from the working directory")
    assert text() == ("from the working directory", str(cwd_file))
    env_file = own_prompt(tmp_path / "env-prompts", GUIDE, "from the variable")
    monkeypatch.setenv("LLM_ADAPTER_PROMPTS", str(env_file.parent))
    assert text() == ("from the variable", str(env_file))
    arg_file = own_prompt(tmp_path / "arg-prompts", GUIDE, "from the argument")
    assert text(local_dir=arg_file.parent) == ("from the argument", str(arg_file))

    llm = LiteLLMAdapter(environment="simulation", prompts_dir=arg_file.parent)
    assert llm.get_prompt(GUIDE) == "from the argument"
    monkeypatch.delenv("LLM_ADAPTER_PROMPTS")
    assert LiteLLMAdapter(environment="simulation").get_prompt(GUIDE) == \
        "from the working directory"


def test_a_prompt_the_project_lacks_comes_from_the_package(empty_cwd: Path) -> None:
    own = own_prompt(empty_cwd / "prompts", "our-own", "ours")
    registry = PromptRegistry(empty_cwd / "prompts")
    assert registry.get("our-own").location == str(own)
    guide = registry.get(GUIDE)
    assert guide.location == str(PACKAGED / f"{GUIDE}.yaml") and "Medicare" in guide.compile()
    assert {"our-own", GUIDE} <= set(registry.local.names())
    with pytest.raises(UsageError) as missing:
        registry.get("nowhere-to-be-found")
    message = str(missing.value)
    assert str(empty_cwd / "prompts") in message and str(PACKAGED) in message
    assert "LLM_ADAPTER_PROMPTS" in message
    assert PromptRegistry(empty_cwd / "prompts", packaged=False).local.names() == ["our-own"]


def test_the_config_beside_a_project_finds_that_projects_prompts(empty_cwd: Path,
                                                                 tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "litellm_config.yaml", project / "config")
    own = own_prompt(project / "prompts", GUIDE, "the project's")
    config = load_config(project / "config" / "litellm_config.yaml", load_dotenv=False)
    assert not config.packaged
    assert build_registry(config, enable_langfuse=False).get(GUIDE).location == str(own)


# -- a real wheel, installed, run from an empty directory ---------------------------------------
QUICK_START = """\
import adapters.llm
from adapters.llm import LiteLLMAdapter

llm = LiteLLMAdapter(model="claude-sonnet", enable_langfuse=True)
response = llm.generate(prompt="Hello", system=llm.get_prompt("smart-scheduling-system-v1"),
                        metadata={"session_id": "S1", "user_id": "admin", "agent": "matching",
                                  "tags": ["urgent"]})
print(response.content); llm.flush_langfuse()
prompt = llm.prompt("smart-scheduling-system-v1")
print("MODULE", adapters.llm.__file__)
print("CONFIG", llm.config.path)
print("PROMPT", prompt.source, prompt.location)
print("ANSWERED", response.deployment, response.cost is not None)
"""


def _copy_sources(target: Path) -> None:
    """The files a wheel is built from, without build/ leftovers of an earlier build."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "adapters", target / "adapters", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, target / name)


def test_installed_wheel_runs_the_quick_start_from_an_empty_directory(tmp_path: Path) -> None:
    source, wheels, venv, work = (tmp_path / n for n in ("src", "wheels", "venv", "work"))
    _copy_sources(source)
    work.mkdir()
    run = {"capture_output": True, "text": True, "timeout": 420}   # generous: a loaded machine
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                            "-q", "-w", str(wheels)], **run)  # type: ignore[call-overload]
    assert built.returncode == 0, built.stderr
    wheel = next(wheels.glob("llm_adapter-*.whl"))
    made = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages",
                           "--without-pip", str(venv)], **run)  # type: ignore[call-overload]
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "LLM_ADAPTER_CONFIG", "LLM_ADAPTER_PROMPTS")}
    installed = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q",
                                "--no-index", str(wheel)], env=env, **run)  # type: ignore[call-overload]
    assert installed.returncode == 0, installed.stderr
    env.update(ENVIRONMENT="simulation", LLM_ADAPTER_HOME=str(tmp_path / "home"))
    done = subprocess.run([str(python), "-c", QUICK_START], cwd=work, env=env,
                          **run)  # type: ignore[call-overload]
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines()
                 if line.split(" ", 1)[0] in ("MODULE", "CONFIG", "PROMPT", "ANSWERED"))
    site = str(venv / "lib")
    assert lines["MODULE"].startswith(site), lines["MODULE"]      # the wheel, not the sources
    assert lines["CONFIG"].startswith(site) and lines["CONFIG"].endswith(
        "adapters/llm/data/litellm_config.yaml")
    source_kind, location = lines["PROMPT"].split(" ", 1)
    assert source_kind == "local" and location.startswith(site) and \
        location.endswith("data/prompts/smart-scheduling-system-v1.yaml")
    assert lines["ANSWERED"].split()[0] not in ("", "None")
    assert done.stdout.split("\nMODULE", 1)[0].strip(), "the quick start printed no answer"
    assert not list(work.iterdir()), "the quick start wrote into the working directory"


def test_the_prompts_variable_may_come_from_dotenv(empty_cwd: Path, tmp_path: Path) -> None:
    own = own_prompt(tmp_path / "dotenv-prompts", GUIDE, "from .env")
    (empty_cwd / ".env").write_text(f"LLM_ADAPTER_PROMPTS={own.parent}\n")
    config = load_config()
    assert config.prompts_dir == own.parent
    assert build_registry(config, enable_langfuse=False).get(GUIDE).location == str(own)


def test_prompts_show_and_list_say_where_each_prompt_is_read_from(empty_cwd: Path) -> None:
    from click.testing import CliRunner

    from adapters.llm._cli.main import main

    own = own_prompt(empty_cwd / "prompts", "our-own", "ours")
    runner = CliRunner()
    shown = runner.invoke(main, ["prompts", "show", GUIDE, "--json", "--local"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["location"] == str(PACKAGED / f"{GUIDE}.yaml")
    listed = runner.invoke(main, ["prompts", "list", "--json", "--local"])
    assert listed.exit_code == 0, listed.output
    where = {row["name"]: row.get("location") for row in json.loads(listed.stdout)}
    assert where["our-own"] == str(own) and where[GUIDE] == str(PACKAGED / f"{GUIDE}.yaml")
    table = runner.invoke(main, ["prompts", "show", "our-own", "--local"], env={"COLUMNS": "200"})
    assert f"read from {own}" in table.stdout
