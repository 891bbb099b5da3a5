"""The package is typed (``py.typed``): mypy must stay clean on it, and a user's code checked
with ``mypy --strict`` sees the public API's real types (``generate`` is no ``Any``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A user's script: every reveal_type line ends with the type mypy must reveal there.
USER_SCRIPT = '''
from __future__ import annotations

from adapters.llm import (LiteLLMAdapter, LLMAdapterError, LLMResponse, ResponseStream,
                          load_config)


def main(flag: bool) -> None:
    llm = LiteLLMAdapter(model="claude-sonnet", config=load_config("config.yaml"))
    answer = llm.generate(prompt="Hello")
    reveal_type(answer)                                     # LLMResponse
    reveal_type(answer.content)                             # str
    reveal_type(llm.generate(prompt="Hi", stream=False, max_tokens=10))   # LLMResponse
    streamed = llm.generate(prompt="Hello", stream=True)
    reveal_type(streamed)                                   # ResponseStream
    for chunk in streamed:
        reveal_type(chunk)                                  # str
    reveal_type(llm.stream("Hello"))                        # ResponseStream
    reveal_type(llm.generate(prompt="Hello", stream=flag))  # LLMResponse | ResponseStream
    try:
        llm.generate(messages=[{"role": "user", "content": "hi"}], metadata={"user_id": "u"})
    except LLMAdapterError as exc:
        reveal_type(exc)                                    # LLMAdapterError


async def amain() -> None:
    llm = LiteLLMAdapter()
    answer = await llm.agenerate(prompt="Hello")
    reveal_type(answer)                                     # LLMResponse
    streamed = await llm.agenerate(prompt="Hello", stream=True)
    reveal_type(streamed)                                   # ResponseStream
    async for chunk in streamed:
        reveal_type(chunk)                                  # str
    kept: tuple[LLMResponse, ResponseStream] = (answer, streamed)
    del kept
'''

# Third-party packages are skipped (their types become Any): the check is of our surface, and
# following litellm would take minutes.
MYPY_INI = '''
[mypy]
strict = True
python_version = 3.11
warn_unused_ignores = False
[mypy-adapters.llm.*]
follow_imports = silent
[mypy-litellm.*,langfuse.*,opentelemetry.*,httpx.*,aiohttp.*,click.*,rich.*,yaml.*,dotenv.*,platformdirs.*,redis.*,pydantic.*,google.*,openai.*,anthropic.*,cachetools.*]
follow_imports = skip
follow_imports_for_stubs = True
ignore_missing_imports = True
'''

_SHORT = {"adapters.llm._observability.records.": "", "adapters.llm._routing.streaming.": "", "adapters.llm.errors.": "",
          "builtins.": ""}


def test_mypy_is_clean():
    out = subprocess.run([sys.executable, "-m", "mypy"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:]
    assert (ROOT / "adapters" / "llm" / "py.typed").is_file()


def test_a_strict_users_script_sees_the_public_types(tmp_path: Path):
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(USER_SCRIPT))
    (tmp_path / "mypy.ini").write_text(MYPY_INI)
    out = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "mypy.ini",
                          "--cache-dir", str(tmp_path / ".mypy_cache"), "user_script.py"],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    revealed = {}
    for line in out.stdout.splitlines():
        found = re.match(r'user_script\.py:(\d+): note: Revealed type is "(.*)"', line)
        if found:
            shown = found[2]
            for prefix, short in _SHORT.items():
                shown = shown.replace(prefix, short)
            revealed[int(found[1])] = shown
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert not errors, "\n".join(errors)
    lines = script.read_text().splitlines()
    expected = {n: line.rsplit("# ", 1)[1].strip() for n, line in enumerate(lines, 1)
                if "reveal_type(" in line}
    assert revealed == expected, out.stdout
