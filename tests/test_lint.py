"""ruff (pycodestyle, pyflakes, bugbear; ``[tool.ruff]`` in pyproject.toml) finds nothing: so
the suite, which CI runs, fails on a mutable default, a swallowed exception or a loop variable
captured late, not only a reviewer."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing() -> None:
    assert importlib.util.find_spec("ruff") is not None, \
        "ruff is not installed: pip install -e '.[test]'"
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "adapters", "tests",
                          "bench"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
