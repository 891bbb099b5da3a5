"""The README's code runs: every Python block and shell command, in the simulation environment.

Fenced ```python blocks run as scripts, and the ``llm-adapter`` / ``python`` lines of ```bash,
```sh and ```console blocks as shell commands, each block in a fresh process with
``ENVIRONMENT=simulation``, its own ``LLM_ADAPTER_HOME``, no provider keys or Redis, the
loopback Langfuse and the repository root as working directory (the README is read there).
A block that cannot run here (real keys, an install, a fragment) is marked right before its
fence with ``<!-- readme-test: skip (the reason) -->``; a new unmarked block is simply run.
Blocks of other languages (YAML, plain ``` diagrams and synopses) are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.langfuse_server import LangfuseServer

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TIMEOUT_S = 180  # one block; a fresh process imports litellm in seconds, a loaded CI box is slower

PYTHON_LANGS = frozenset({"python", "py", "python3"})
SHELL_LANGS = frozenset({"bash", "sh", "shell", "console"})

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<lang>[^\s`]*)[^`]*$")
_MARKER = re.compile(r"^\s*<!--\s*readme-test:(?P<body>.*?)-->\s*$")  # a line of its own
_SKIP = re.compile(r"^\s*skip\s*\((?P<reason>.*)\)\s*$", re.DOTALL)
# Optional leading VAR=value assignments, then the command the README tells the reader to run.
_RUNNABLE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(?:llm-adapter|python3?)(?:\s|$)")
# The test suite itself and package installs are CI's part (.ci/run), not a README example's.
_NOT_RUN = re.compile(r"(?:^|\s)(?:python3?\s+-m\s+(?:pytest|pip)|pip3?\s+install)(?:\s|$)")

# What must not leak in from the developer's shell: real keys, shared backends, other configs.
_DROPPED_ENV = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "REDIS_URL",
                "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "LLM_ADAPTER_CONFIG",
                "LLM_ADAPTER_PROMPTS", "LLM_ADAPTER_SIMULATOR_URL", "LLM_ADAPTER_DEBUG")


@dataclass(frozen=True)
class Block:
    """One fenced block of the README."""

    lang: str
    line: int            # the opening fence's line, 1-based
    heading: str         # the section it sits in
    text: str
    skip: str | None     # the marker's reason, when marked

    @property
    def kind(self) -> str | None:
        if self.lang in PYTHON_LANGS:
            return "python"
        if self.lang in SHELL_LANGS:
            return "shell"
        return None

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-") or "top"
        return f"L{self.line}-{self.lang}-{slug}"

    def commands(self) -> list[str]:
        """The shell lines this block runs: continuations joined, prompts and output dropped."""
        lines: list[str] = []
        pending = ""
        for raw in self.text.splitlines():
            if self.lang == "console" and not pending:
                if not raw.startswith("$ "):
                    continue  # output, not a command
                raw = raw[2:]
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1].rstrip() + " "
                continue
            pending = ""
            if line and not line.startswith("#"):
                lines.append(line)
        return [c for c in lines if _RUNNABLE.match(c) and not _NOT_RUN.search(c)]


def parse(text: str) -> tuple[list[Block], list[str]]:
    """The fenced blocks of a Markdown text, and what is wrong with its readme-test markers."""
    blocks: list[Block] = []
    problems: list[str] = []
    heading = ""
    marker: tuple[int, str | None] | None = None  # (line, reason) awaiting its fence
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line, number = lines[i], i + 1
        fence = _FENCE.match(line)
        if fence:
            closing = re.compile(rf"^ {{0,3}}{re.escape(fence['fence'][0])}{{{len(fence['fence'])},}}\s*$")
            end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j])), len(lines))
            body = textwrap.dedent("\n".join(lines[i + 1:end]))  # a fence in a list is indented
            skip = marker[1] if marker else None
            blocks.append(Block(fence["lang"].lower(), number, heading, body, skip))
            marker, i = None, end + 1
            continue
        if marker is not None and line.strip():
            problems.append(f"README.md:{marker[0]}: a readme-test marker must be the line right "
                            f"before a fence (blank lines allowed); line {number} came first")
            marker = None
        found = _MARKER.match(line)
        if found:
            directive = _SKIP.match(found["body"])
            reason = directive["reason"].strip() if directive else ""
            if not reason:
                problems.append(f"README.md:{number}: {found.group(0)!r}: write "
                                "'<!-- readme-test: skip (why it cannot run in simulation) -->'")
            marker = (number, reason or None)
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
        i += 1
    if marker is not None:
        problems.append(f"README.md:{marker[0]}: a readme-test marker with no fence after it")
    return blocks, problems


BLOCKS, MARKER_PROBLEMS = parse(README.read_text(encoding="utf-8"))
RUN = [b for b in BLOCKS if b.kind and not b.skip and (b.kind == "python" or b.commands())]


# -- running ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    returncode: int | None  # None: timed out
    output: str
    public_key: str


def block_env(home: Path, langfuse: LangfuseServer, public_key: str) -> dict[str, str]:
    """A newcomer's shell in simulation: nothing real to spend or to write to."""
    env = {k: v for k, v in os.environ.items()
           if k not in _DROPPED_ENV and not k.startswith("LANGFUSE_")}
    secret = f"sk-lf-{uuid.uuid4().hex[:12]}"
    langfuse.add_key(public_key, secret)
    env.update({
        "ENVIRONMENT": "simulation",
        "LLM_ADAPTER_HOME": str(home),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        # A block that turns Langfuse on sends to the loopback one, never to a real project
        # (these also win over any .env in the working directory).
        "LANGFUSE_PUBLIC_KEY": public_key,
        "LANGFUSE_SECRET_KEY": secret,
        "LANGFUSE_BASE_URL": langfuse.url,
        "PY": sys.executable,
    })
    return env


def shell_script(commands: list[str]) -> str:
    """One bash script for a block: stop at the first failing command, naming it.

    ``llm-adapter`` and ``python`` are this interpreter (``python -m adapters.llm`` is the
    same CLI), so the block runs against the code under test whatever PATH holds.
    """
    out = ["set -euo pipefail",
           'llm-adapter() { "$PY" -m adapters.llm "$@"; }',
           'python() { "$PY" "$@"; }',
           'python3() { "$PY" "$@"; }']
    for command in commands:
        out.append(f"printf '%s\\n' {_quote('$ ' + command)} >&2")
        out.append(command)
    return "\n".join(out) + "\n"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def run_block(block: Block, workdir: Path, langfuse: LangfuseServer) -> Outcome:
    workdir.mkdir(parents=True, exist_ok=True)
    public_key = f"pk-lf-{uuid.uuid4().hex[:12]}"
    env = block_env(workdir / "home", langfuse, public_key)
    if block.kind == "python":
        script = workdir / "block.py"
        script.write_text(block.text + "\n", encoding="utf-8")
        argv = [sys.executable, str(script)]
    else:
        script = workdir / "block.sh"
        script.write_text(shell_script(block.commands()), encoding="utf-8")
        argv = ["bash", str(script)]
    try:
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        partial = (exc.stdout or b"") + (exc.stderr or b"")
        text = partial.decode(errors="replace") if isinstance(partial, bytes) else str(partial)
        return Outcome(None, text, public_key)
    return Outcome(done.returncode, done.stdout + done.stderr, public_key)


@pytest.fixture(scope="module")
def langfuse() -> Iterator[LangfuseServer]:
    with LangfuseServer() as server:
        yield server


@pytest.fixture(scope="module")
def outcomes(langfuse: LangfuseServer, tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, Outcome]:
    """Every runnable block, run side by side (each is its own process with its own dirs)."""
    base = tmp_path_factory.mktemp("readme")
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 2)) as pool:
        futures = {b.id: pool.submit(run_block, b, base / b.id, langfuse) for b in RUN}
        return {name: future.result() for name, future in futures.items()}


# -- the README ---------------------------------------------------------------------------


def test_markers_are_well_formed() -> None:
    assert not MARKER_PROBLEMS, "\n".join(MARKER_PROBLEMS)


def test_every_shell_block_runs_or_says_why_not() -> None:
    """A shell block with nothing this test runs is either marked or a silent gap."""
    silent = [b.id for b in BLOCKS if b.kind == "shell" and not b.skip and not b.commands()]
    assert not silent, (f"{silent}: no llm-adapter/python line to run; mark each with "
                        "'<!-- readme-test: skip (reason) -->' or make it runnable")


def test_the_readme_has_runnable_blocks() -> None:
    """Guards the parser: the quick start is a Python block, and it is run."""
    assert any(b.kind == "python" for b in RUN) and any(b.kind == "shell" for b in RUN)


@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_block_runs(block: Block, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[block.id]
    where = f"README.md:{block.line} ({block.heading or 'top'})"
    assert outcome.returncode is not None, f"{where} timed out after {TIMEOUT_S} s:\n{outcome.output}"
    assert outcome.returncode == 0, f"{where} exited {outcome.returncode}:\n{outcome.output}"


def test_blocks_that_enable_langfuse_deliver_to_it(outcomes: dict[str, Outcome],
                                                   langfuse: LangfuseServer) -> None:
    """A block with ``enable_langfuse=True`` really sends its calls (to the loopback Langfuse)."""
    traced = [b for b in RUN if b.kind == "python" and "enable_langfuse=True" in b.text]
    for block in traced:
        key = outcomes[block.id].public_key
        generations = [s for s in langfuse.spans()
                       if s.scope_attributes.get("public_key") == key
                       and s.attr("langfuse.observation.type") == "generation"]
        assert generations, f"README.md:{block.line}: no generation reached Langfuse"


# -- the machinery itself -----------------------------------------------------------------

_SAMPLE = """# T
<!-- readme-test: skip (needs real provider keys) -->

```bash
llm-adapter doctor --ping
```

## Run
```console
$ ENVIRONMENT=simulation llm-adapter chat \\
    "Hello"
answer
$ pip install x
```

```sh
pip install . && llm-adapter demo
python -m pytest
python -c 'print(1)'
```

```yaml
a: 1
```
"""


def test_parse_reads_fences_markers_and_commands() -> None:
    blocks, problems = parse(_SAMPLE)
    assert problems == []
    assert [(b.lang, b.line, b.heading, b.skip) for b in blocks] == [
        ("bash", 4, "T", "needs real provider keys"), ("console", 9, "Run", None),
        ("sh", 16, "Run", None), ("yaml", 22, "Run", None)]
    assert blocks[1].commands() == ['ENVIRONMENT=simulation llm-adapter chat "Hello"']
    assert blocks[2].commands() == ["python -c 'print(1)'"]
    assert blocks[3].kind is None


@pytest.mark.parametrize("marker", ["<!-- readme-test: skip -->", "<!-- readme-test: skip () -->",
                                    "<!-- readme-test: skip-it (x) -->"])
def test_a_marker_without_a_reason_is_refused(marker: str) -> None:
    _, problems = parse(f"{marker}\n```python\nx = 1\n```\n")
    assert len(problems) == 1 and "why it cannot run" in problems[0]


def test_a_marker_quoted_in_prose_is_no_marker() -> None:
    blocks, problems = parse("Mark it `<!-- readme-test: skip (why) -->`.\n```python\nx = 1\n```\n")
    assert problems == [] and blocks[0].skip is None


def test_a_marker_away_from_its_fence_is_refused() -> None:
    _, problems = parse("<!-- readme-test: skip (x) -->\ntext\n```python\nx = 1\n```\n"
                        "<!-- readme-test: skip (y) -->\n")
    assert len(problems) == 2 and "line 2 came first" in problems[0] and "no fence" in problems[1]


def test_a_broken_block_fails(tmp_path: Path, langfuse: LangfuseServer) -> None:
    """What test_block_runs sees when a README block breaks: the exit status and the error."""
    broken = Block("python", 1, "", "from adapters.llm import NoSuchThing", None)
    outcome = run_block(broken, tmp_path / "py", langfuse)
    assert outcome.returncode == 1 and "NoSuchThing" in outcome.output
    shell = Block("bash", 1, "", "python -c 'raise SystemExit(3)'\npython -c 'print(\"after\")'",
                  None)
    outcome = run_block(shell, tmp_path / "sh", langfuse)
    assert outcome.returncode == 3 and "after" not in outcome.output
    assert "$ python -c 'raise SystemExit(3)'" in outcome.output
