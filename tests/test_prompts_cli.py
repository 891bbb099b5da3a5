"""``llm-adapter prompts ...`` against a loopback Langfuse (real SDK REST client, real HTTP),
and the A/B statistics over a real local store."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from adapters.llm._cli.main import main
from adapters.llm._reports.prompt_stats import (compare, two_proportion_z_test, variant_stats,
                                       welch_t_test, winner)
from adapters.llm._observability.records import CallRecord
from adapters.llm._observability.store import LocalStore

from .langfuse_server import LangfuseServer
from .pg_support import pg_url  # noqa: F401  (a fixture)


@pytest.fixture
def project(server: LangfuseServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A config whose prompts/ is a fresh directory, and fresh Langfuse keys in the env."""
    public, secret = f"pk-lf-{uuid.uuid4().hex[:12]}", f"sk-lf-{uuid.uuid4().hex[:12]}"
    server.add_key(public, secret)
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", public)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", secret)
    monkeypatch.setenv("LANGFUSE_BASE_URL", server.url)
    (tmp_path / "prompts").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent(f"""\
        model_list: [{{model_name: m, litellm_params: {{model: openai/gpt-4o}}}}]
        prompts:
          dir: {tmp_path / "prompts"}
          experiments: {{ab: {{variants: {{prod-a: 50, prod-b: 50}}}}}}
        """))
    return config


def run(config: Path, *args: str) -> Result:
    result = CliRunner().invoke(main, ["prompts", *args, "--config", str(config)])
    assert result.exit_code == 0, result.output
    return result


def write(config: Path, prompt: str, body: str) -> None:
    (config.parent / "prompts" / f"{prompt}.yaml").write_text(textwrap.dedent(body))


def two_versions(prompt: str) -> str:
    return f"""\
        name: {prompt}
        type: text
        description: two variants
        versions:
          - version: 1
            labels: [production, prod-a]
            prompt: "A {{{{skills}}}}"
            config: {{temperature: 0.1}}
          - version: 2
            labels: [prod-b]
            prompt: "B {{{{skills}}}}"
        """


def test_push_is_idempotent_and_promote_rolls_back(server, project):
    p = f"push-{uuid.uuid4().hex[:6]}"
    write(project, p, two_versions(p))
    first = json.loads(run(project, "push", p, "--json").output)
    assert [(r["result"], r["langfuse_version"]) for r in first] == [("created", 1),
                                                                    ("created", 2)]
    labels = {v["version"]: v["labels"] for v in server.prompt_versions(p)}
    assert labels == {1: ["production", "prod-a"], 2: ["prod-b", "latest"]}
    again = json.loads(run(project, "push", p, "--json").output)
    assert [r["result"] for r in again] == ["unchanged", "unchanged"]
    assert len(server.prompt_versions(p)) == 2                     # no new version

    text = (project.parent / "prompts" / f"{p}.yaml").read_text()
    write(project, p, text.replace('"B {{skills}}"', '"B2 {{skills}}"')
          .replace("[prod-b]", "[prod-b, production]").replace("[production, prod-a]",
                                                                  "[prod-a]"))
    third = json.loads(run(project, "push", p, "--json").output)
    assert [r["result"] for r in third] == ["unchanged", "created"]
    assert server.prompts.get(p)["version"] == 3                   # production moved to v3

    out = run(project, "promote", p, "1", "--label", "production").output
    assert "production → v1 (was v3)" in out
    assert server.prompts.get(p)["version"] == 1                   # rolled back
    shown = json.loads(run(project, "show", p, "--json").output)
    assert (shown["version"], shown["source"]) == (1, "langfuse")
    listed = {r["name"]: r for r in json.loads(run(project, "list", "--json").output)}
    assert listed[p]["langfuse_versions"] == [1, 2, 3]
    assert listed[p]["local_versions"] == [1, 2]
    assert listed["ab"]["experiment"] == {"prod-a": 0.5, "prod-b": 0.5}


def test_pull_appends_what_is_missing_and_takes_labels(server, project):
    p = f"pull-{uuid.uuid4().hex[:6]}"
    server.add_prompt(p, [{"role": "system", "content": "Be {{tone}}"},
                          {"type": "placeholder", "name": "history"}],
                      type="chat", labels=["production"], config={"temperature": 0.3})
    server.add_prompt(p, [{"role": "system", "content": "Be very {{tone}}"}], type="chat",
                      labels=["staging"])
    first = json.loads(run(project, "pull", p, "--json").output)
    assert first[0]["result"] == "updated"
    assert json.loads(run(project, "pull", p, "--json").output)[0]["result"] == "unchanged"

    server.prompts.set_labels(p, 2, ["production"])               # promoted in Langfuse
    moved = json.loads(run(project, "pull", p, "--json").output)[0]
    assert "label production → v2" in moved["detail"]
    shown = json.loads(run(project, "show", p, "--local", "--json").output)
    assert (shown["version"], shown["source"], shown["type"]) == (2, "local", "chat")
    v1 = json.loads(run(project, "show", p, "--version", "1", "--local", "--json").output)
    assert v1["placeholders"] == ["history"] and v1["config"] == {"temperature": 0.3}


def test_diff_and_local_promote(project):
    p = f"local-{uuid.uuid4().hex[:6]}"
    write(project, p, two_versions(p))
    out = run(project, "diff", p, "1", "prod-b", "--local").output
    assert "-A {{skills}}" in out and "+B {{skills}}" in out and '-  "temperature": 0.1' in out
    assert "are the same" in run(project, "diff", p, "production", "1", "--local").output
    assert "production → v2 (was v1)" in run(project, "promote", p, "2", "--local").output
    shown = json.loads(run(project, "show", p, "--local", "--json").output)
    assert shown["version"] == 2 and "production" in shown["labels"]
    result = CliRunner().invoke(main, ["prompts", "promote", p, "9", "--local",
                                       "--config", str(project)])
    assert result.exit_code == 1 and "has no version 9" in result.output


def test_push_without_langfuse_says_what_to_set(project, monkeypatch):
    monkeypatch.delenv("LANGFUSE_PUBLIC_KEY")
    result = CliRunner().invoke(main, ["prompts", "push", "--all", "--config", str(project)])
    assert result.exit_code == 1 and "set LANGFUSE_PUBLIC_KEY" in result.output


# -- stats -----------------------------------------------------------------------------------
def record(variant: str, i: int, *, ok: bool, latency: float) -> CallRecord:
    return CallRecord(call_id=uuid.uuid4().hex, trace_id=uuid.uuid4().hex,
                      span_id=uuid.uuid4().hex[:16], parent_span_id=None, started_at=1.8e9 + i,
                      ended_at=1.8e9 + i + latency / 1000, environment="test",
                      model_group="m", status="ok" if ok else "error", latency_ms=latency,
                      cost=0.001 if ok else None, prompt_name="ab",
                      prompt_version=1 if variant == "prod-a" else 2, prompt_variant=variant)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_stats_compares_the_variants(project, tmp_path, backend, request):
    store = LocalStore(tmp_path / "calls.sqlite3") if backend == "sqlite" else \
        LocalStore(tmp_path / "buffer.sqlite3", url=request.getfixturevalue("pg_url"))
    for i in range(200):
        for variant in ("prod-a", "prod-b"):
            rec = record(variant, i, ok=i % (5 if variant == "prod-a" else 50) != 0,
                         latency=100 + (i % 7) + (20 if variant == "prod-a" else 0))
            store.write(rec)
            score = (0.6 if variant == "prod-a" else 0.8) + (i % 5) / 50
            store.add_score(name="accuracy", value=score, trace_id=rec.trace_id)
    assert store.flush(10)
    db = str(store.path) if backend == "sqlite" else store.target.url
    out = json.loads(run(project, "stats", "ab", "--db", db, "--json").output)
    by_variant = {v["variant"]: v for v in out["variants"]}
    assert by_variant["prod-a"]["calls"] == 200 and by_variant["prod-a"]["errors"] == 40
    assert by_variant["prod-b"]["versions"] == [2] and by_variant["prod-b"]["scores"] == 200
    assert out["best"] == "prod-b" and "likely real (p<0.05)" in out["why"]
    assert out["configured_shares"] == {"prod-a": 0.5, "prod-b": 0.5}
    metrics = {c["metric"]: c for c in out["comparisons"]}
    assert metrics["error rate"]["best"] == "prod-b" and metrics["latency"]["best"] == "prod-b"
    table = run(project, "stats", "ab", "--db", db).output
    assert "best: prod-b" in table and "prod-a" in table
    store.close()


def test_significance_tests_match_known_values():
    assert welch_t_test([1, 2, 3, 4, 5], [2, 3, 4, 5, 9]) == pytest.approx(0.2937, abs=1e-3)
    assert two_proportion_z_test(10, 100, 20, 100) == pytest.approx(0.0477, abs=1e-3)
    assert welch_t_test([1.0], [2.0, 3.0]) is None
    assert two_proportion_z_test(0, 10, 0, 10) is None


def test_stats_with_little_data_says_so(tmp_path):
    store = LocalStore(tmp_path / "few.sqlite3")
    store.write(record("prod-a", 1, ok=True, latency=100))
    store.write(record("prod-b", 2, ok=True, latency=90))
    assert store.flush(10)
    with store.connect() as conn:
        rows = variant_stats(conn, "ab")
    comparisons = compare(rows)
    assert {c.verdict for c in comparisons} == {"not enough data to tell"}
    assert winner(comparisons)[0] == "prod-b"                     # by latency, flagged as such
    store.close()
