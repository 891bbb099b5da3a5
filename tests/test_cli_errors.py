"""The command line as a user meets it in a terminal or a pipe: an error is one line with the
fix (``--debug`` for the traceback), and a spinner on stderr only when stderr is a terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "REDIS_URL")


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KEYS}
    return {**env, "LLM_ADAPTER_HOME": str(tmp_path / "home"), "COLUMNS": "100"}


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adapters.llm", *args], capture_output=True,
                          text=True, cwd=ROOT, env=cli_env(tmp_path), timeout=120)


def error_lines(stderr: str) -> list[str]:
    """stderr without the adapter's log warnings (prompts, Langfuse keys)."""
    return [line for line in stderr.splitlines() if not line.startswith("llm-adapter: ")]


def test_a_no_keys_error_is_one_line_plus_one_per_attempt(tmp_path: Path):
    out = cli(tmp_path, "chat", "Hello", "--env", "production")
    assert out.returncode == 1 and out.stdout == ""
    lines = error_lines(out.stderr)
    assert "Traceback" not in out.stderr and "ExceptionGroup" not in out.stderr
    assert lines[0].startswith("Error: claude-sonnet: every deployment failed")
    assert "set ANTHROPIC_API_KEY, GEMINI_API_KEY, OPENAI_API_KEY" in lines[0], "the fix, whole"
    assert lines[1:] == ["  claude-sonnet-primary: authentication: ANTHROPIC_API_KEY is not set",
                         "  gpt-4-fallback-1: authentication: OPENAI_API_KEY is not set",
                         "  gemini-fallback-1: authentication: GEMINI_API_KEY is not set"]


def test_debug_shows_the_traceback(tmp_path: Path):
    out = cli(tmp_path, "--debug", "chat", "Hello", "--env", "production")
    assert out.returncode == 1
    assert "Traceback (most recent call last)" in out.stderr and "AllProvidersFailed" in out.stderr
    assert error_lines(out.stderr)[-4].startswith("Error: claude-sonnet: every deployment")


def test_a_bad_config_is_one_line_with_its_fix(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: openai/x}\n"
                   "router_settings: {routing_stratgy: least-busy}\n")
    out = cli(tmp_path, "models", "--config", str(bad))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    (line,) = error_lines(out.stderr)
    assert "routing_stratgy" in line and "did you mean 'routing_strategy'" in line


def test_no_spinner_when_stderr_is_not_a_terminal(tmp_path: Path):
    out = cli(tmp_path, "chat", "Hello", "--env", "simulation", "--json")
    assert out.returncode == 0, out.stderr
    assert "loading litellm" not in out.stderr and "waiting for" not in out.stderr
    assert out.stdout.lstrip().startswith("{")


def test_a_terminal_sees_what_the_command_waits_for(tmp_path: Path):
    """stderr on a pseudo-terminal (as in an interactive shell), stdout piped."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "adapters.llm", "chat", "Hello", "--env",
                             "simulation", "--json"], stdout=subprocess.PIPE, stderr=follower,
                            stdin=subprocess.DEVNULL, cwd=ROOT, env=cli_env(tmp_path))
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 240      # generous: litellm loads slowly on a busy machine
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:         # the terminal closed: the process is done
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        stdout, _ = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "loading litellm…" in seen.decode(errors="replace")
    assert b"loading litellm" not in stdout and stdout.lstrip().startswith(b"{")
