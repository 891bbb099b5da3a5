"""Nothing leaked: keys echoed by providers, patient data in identifiers, litellm's own logs.

Through the real litellm over real HTTP to the simulator, the real Langfuse SDK to the loopback
Langfuse, a fresh process for what depends on start-up (litellm's log level, the log filter).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import re
import secrets
import sqlite3
import string
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from adapters.llm import errors, load_config
from adapters.llm._observability.redact import MESSAGE_LIMIT, clip, config_secrets
from adapters.llm._cli.main import main
from adapters.llm.simulator import Fault, Scenario, Simulator

from .conftest import one_group, profiles, sim_deployment, traced, unique, write_config
from .langfuse_server import LangfuseServer, ReceivedSpan, use_project

ROOT = Path(__file__).resolve().parent.parent
PIECE = 8                            # no run of this many characters of a key may survive
EMAIL, SSN = "jane.roe@example.com", "123-45-6789"
PSEUDONYM = re.compile(r"(email|ssn)-[0-9a-f]{16}")


def random_key() -> str:
    """A key no pattern recognises (Azure, Gemini style): letters and digits, no prefix."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(32))


def leaks(text: str | bytes, key: str) -> list[str]:
    """Every ``PIECE``-character piece of ``key`` found in ``text``."""
    pieces = {key[i:i + PIECE] for i in range(len(key) - PIECE + 1)}
    if isinstance(text, bytes):
        return sorted(p for p in pieces if p.encode() in text)
    return sorted(p for p in pieces if p in text)


def payload(spans: list[ReceivedSpan]) -> str:
    """Everything the loopback Langfuse received for these spans, as one text."""
    return json.dumps([[s.name, s.status_message, s.attributes, s.resource_attributes]
                       for s in spans], default=str)


def store_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file())


@pytest.fixture
def keys(server, monkeypatch, tmp_path) -> tuple[str, str]:
    public, secret = use_project(server, monkeypatch, tmp_path / "home")
    return public, secret


def mine(server: LangfuseServer, public_key: str) -> list[ReceivedSpan]:
    return [s for s in server.spans() if s.scope_attributes.get("public_key") == public_key]


# -- redact, then cut -------------------------------------------------------------------------
def test_clip_redacts_before_it_cuts_at_every_offset():
    key = random_key()
    for start in range(MESSAGE_LIMIT - len(key) - 2, MESSAGE_LIMIT + 2):
        text = "x" * start + key + " was refused"
        shown = clip(text, [key])
        assert len(shown) <= MESSAGE_LIMIT and not leaks(shown, key), start
        if start + len(key) <= MESSAGE_LIMIT - 1:
            assert "***" in shown


def test_the_shapes_quick_test_passes_every_text_the_shapes_pattern_matches():
    from adapters.llm._observability.redact import _SECRET_SHAPES, _may_hold_shape

    rng = random.Random(7)
    # Pieces of the shapes and near misses: cases, separators, the Kelvin sign (a K to re.I).
    pieces = ["s", "k", "p", "r", "-", "=", " ", "\t", "_", "AIza", "AIz", "Bearer", "bEaReR",
              "beare", "key", "KEY", "\u212aey", "api", "x-goog-", "abcdefgh", "12345678901"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
             for _ in range(50_000)]
    matched = [t for t in texts if _SECRET_SHAPES.search(t)]
    assert len(matched) > 1_000                     # the sample reaches the pattern
    assert [t for t in matched if not _may_hold_shape(t)] == []
    assert not _may_hold_shape("Find a therapist for Tuesday")


def test_masking_copies_only_what_it_changes():
    from adapters.llm._observability.masking import Masker

    masker = Masker(secrets=("sk-config-key-1234",))
    clean = [{"role": "user", "content": "Find a therapist"}, {"role": "assistant", "content": "Dr A"}]
    assert masker(clean) is clean                   # nothing to mask: nothing copied
    meta = {"clinic": "north", "nested": {"ids": ["a", "b"]}}
    assert masker(meta) is meta
    leaky = [clean[0], {"role": "user", "content": "my key is sk-config-key-1234"}]
    masked = masker(leaky)
    assert masked is not leaky and masked[0] is clean[0]
    assert masked[1] == {"role": "user", "content": "my key is ***"}
    assert leaky[1]["content"] == "my key is sk-config-key-1234"    # the caller's own untouched
    assert masker(("a", "b")) == ["a", "b"]         # a tuple still becomes a list


def test_a_record_with_nothing_to_mask_is_handed_on_as_it_is():
    from adapters.llm._observability.masking import Masker
    from adapters.llm._observability.recording import _masked
    from adapters.llm._observability.records import Attempt, CallRecord

    masker = Masker(secrets=("sk-config-key-1234",))
    record = CallRecord(call_id="c" * 32, trace_id="t" * 32, span_id="c" * 16,
                        parent_span_id=None, started_at=1.0, ended_at=2.0,
                        environment="development", model_group="main", status="ok",
                        latency_ms=1.0, user_id="admin", tags=("urgent",),
                        input=[{"role": "user", "content": "hello"}], output="hi",
                        attempts=[Attempt("d1", "main", "openai", "ok")])
    assert _masked(record, masker) is record
    leaky = dataclasses.replace(record, output="echo sk-config-key-1234",
                                attempts=[Attempt("d1", "main", "openai", "error",
                                                  message="sk-config-key-1234 refused")])
    masked = _masked(leaky, masker)
    assert masked.output == "echo ***" and masked.attempts[0].message == "*** refused"
    assert masked.input is leaky.input and leaky.output == "echo sk-config-key-1234"


def test_every_configured_secret_is_collected_by_value(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent("""
        model_list:
          - model_name: main
            litellm_params: {model: openai/gpt-4o, api_key: "${PROVIDER_KEY}"}
        router_settings:
          redis_url: "redis://:routerpass1@127.0.0.1:6390/0"
          cache: {type: redis, password: cachepass22}
        masking: {pseudonym_key: "${PSEUDO}"}
    """))
    env = {"PROVIDER_KEY": "providerkey333", "PSEUDO": "pseudonym-key-4444-4444",
           "REDIS_URL": "redis://user:env%40pass5@127.0.0.1:6391/0",
           "LANGFUSE_SECRET_KEY": "langfusesecret66"}
    config = load_config(path, env=env, load_dotenv=False)
    found = config_secrets(config, env)
    for secret in ("providerkey333", "routerpass1", "cachepass22", "pseudonym-key-4444-4444",
                   "env@pass5", "env%40pass5", "langfusesecret66"):
        assert secret in found
    assert "openai/gpt-4o" not in found and "127.0.0.1" not in found


ECHO_CHILD = """
import json, logging, sys
from pathlib import Path
config, out_path, log_path, snapshot_path, groups = sys.argv[1:6]
logging.basicConfig(filename=log_path, level=logging.DEBUG,
                    format="%(name)s %(levelname)s %(message)s")
from adapters.llm import LiteLLMAdapter, errors
import litellm, langfuse
for logger in [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]:
    logger.setLevel(logging.DEBUG)          # every logger there is, litellm's dependencies too
llm = LiteLLMAdapter(config_path=config)
out = {"failures": []}
for i in range(int(groups)):
    try:
        llm.generate(prompt="hello", model=f"g{i}", timeout=30)
        raise SystemExit(f"g{i} answered")
    except errors.ProviderError as exc:
        out["failures"].append({
            "str": str(exc), "repr": repr(exc), "args": [str(a) for a in exc.args],
            "subs": [str(e) for e in getattr(exc, "exceptions", ())],
            "attempts": [a.message for a in exc.attempts],
            "attempts_repr": repr(exc.attempts)})
# One call that answers, carrying patient data in its prompt and identifiers.
answer = llm.generate(prompt="Patient jane.roe@example.com, SSN 123-45-6789, needs a slot",
                      model="ok", metadata={"user_id": "jane.roe@example.com",
                                            "session_id": "visit-123-45-6789"})
out["answer"] = repr(answer)
assert llm.flush_langfuse(timeout=30), "Langfuse did not take the spans"
store = llm.telemetry.store
assert store.flush(10)
# The store's files while its connections are open: the WAL too.
home = Path(store.path).parent
Path(snapshot_path).write_bytes(b"".join(p.read_bytes() for p in sorted(home.iterdir())
                                         if p.is_file()))
Path(out_path).write_text(json.dumps(out))
"""

OFFSETS = range(-34, 6, 2)          # where the key starts, against the cut: 20 offsets


@pytest.fixture(scope="module")
def echoed(tmp_path_factory, sim: Simulator, server: LangfuseServer) -> dict[str, Any]:
    """A fresh process (litellm at DEBUG, a root handler taking every logger at DEBUG) whose
    20 deployments answer with error text echoing their key at 20 offsets around the cut."""
    tmp = tmp_path_factory.mktemp("echo")
    key, name = random_key(), unique("echo")
    public, secret = f"pk-lf-{uuid.uuid4().hex[:12]}", f"sk-lf-{uuid.uuid4().hex[:12]}"
    server.add_key(public, secret)
    prefix = _message_prefix(tmp, sim, key)
    entries, start_at = [], {}
    for i, offset in enumerate(OFFSETS):
        start = MESSAGE_LIMIT + offset
        start_at[i] = start
        text = "x" * (start - prefix) + key + " is not valid for this resource"
        sim.set_scenario(f"{name}-{i}", Scenario(faults=[Fault("status", status=500,
                                                               message=text)]))
        entries.append(sim_deployment(f"g{i}", f"{name}-{i}", key="${ECHO_KEY}"))
    entries.append(sim_deployment("ok", f"{name}-ok", key="${ECHO_KEY}"))
    config = write_config(tmp, {
        "model_list": entries, "router_settings": {"num_retries": 0},
        "environments": profiles(production={"default_model": "ok",
                                             "langfuse": {"enabled": True}})},
        sim_url=sim.url, name="config.yaml")
    home = tmp / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ECHO_KEY": key, "LITELLM_LOG": "DEBUG",
           "ENVIRONMENT": "production", "LLM_ADAPTER_HOME": str(home),
           "LANGFUSE_PUBLIC_KEY": public, "LANGFUSE_SECRET_KEY": secret,
           "LANGFUSE_BASE_URL": server.url}
    files = {n: tmp / f"{n}.txt" for n in ("out", "log", "snapshot")}
    proc = subprocess.run([sys.executable, "-c", ECHO_CHILD, str(config), str(files["out"]),
                           str(files["log"]), str(files["snapshot"]), str(len(OFFSETS))],
                          env=env, capture_output=True, text=True, timeout=240, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"key": key, "home": home, "public": public, "start_at": start_at,
            "out": json.loads(files["out"].read_text()), "log": files["log"].read_text(),
            "snapshot": files["snapshot"].read_bytes(), "stdout": proc.stdout,
            "stderr": proc.stderr}


def _message_prefix(tmp: Path, sim: Simulator, key: str) -> int:
    """Where the provider's own text starts in an attempt's message (litellm prefixes it)."""
    from adapters.llm import LiteLLMAdapter

    name = unique("probe")
    sim.set_scenario(name, Scenario(faults=[Fault("status", status=500, message="PROBE")]))
    path = write_config(tmp, one_group(name, key=key, router_settings={"num_retries": 0},
                                       environments=profiles(
                                           development={"langfuse": {"enabled": False}})),
                        sim_url=sim.url, name="probe.yaml")
    llm = LiteLLMAdapter(config=load_config(path, environment="development", load_dotenv=False))
    with pytest.raises(errors.ProviderError) as caught:
        llm.generate(prompt="probe", timeout=30)
    message = caught.value.attempts[0].message or ""
    assert "PROBE" in message, message
    return message.index("PROBE")


def test_a_key_echoed_at_any_offset_around_the_cut_leaks_nowhere(echoed):
    key, out = echoed["key"], echoed["out"]
    failures = out["failures"]
    assert len(failures) == len(OFFSETS)
    for i, failure in enumerate(failures):
        # The provider's text did reach the caller (cut where it is long), the key never.
        [message] = failure["attempts"]
        assert message.count("x") > 100 and len(message) <= MESSAGE_LIMIT
        if echoed["start_at"][i] + len(key) < MESSAGE_LIMIT:
            assert "***" in message
        seen = json.dumps(failure)
        assert not leaks(seen, key), f"offset {OFFSETS[i]}: {leaks(seen, key)} in the error"
    assert not leaks(out["answer"], key)
    # The store: every table, the whole files (WAL included) while open, and after exit.
    assert not leaks(echoed["snapshot"], key)
    assert not leaks(store_bytes(echoed["home"]), key)
    db = echoed["home"] / "calls.sqlite3"
    with sqlite3.connect(db) as conn:
        messages = [m for (m,) in conn.execute("SELECT message FROM attempts") if m]
        call_ids = [c for (c,) in conn.execute("SELECT call_id FROM calls WHERE status='error'")]
    assert len(messages) == len(OFFSETS) and sum("***" in m for m in messages) >= 2
    assert len(call_ids) == len(OFFSETS)
    # `traces show` for each failed call.
    for call_id in call_ids:
        result = CliRunner(env={"COLUMNS": "300"}).invoke(
            main, ["traces", "show", call_id, "--db", str(db)])
        assert result.exit_code == 0, result.output
        assert "xxxx" in result.output and not leaks(result.output, key), result.output
    # Every log line of every logger at DEBUG, and what litellm printed itself.
    assert "LiteLLM" in echoed["log"] and "OpenAIException" in echoed["log"]
    for text in (echoed["log"], echoed["stdout"], echoed["stderr"]):
        assert not leaks(text, key)


def test_the_key_reaches_langfuse_in_no_payload(echoed, server):
    spans = mine(server, echoed["public"])
    errored = [s for s in spans if s.attr("langfuse.observation.level") == "ERROR"]
    assert len(errored) == len(OFFSETS)
    assert not leaks(payload(spans), echoed["key"])


def test_litellm_debug_logs_carry_no_patient_data_nor_key(echoed):
    log = echoed["log"]
    # litellm did log the request it sent (its curl line), masked.
    assert "POST Request Sent from LiteLLM" in log and "[EMAIL]" in log and "[SSN]" in log
    for text in (log, echoed["stdout"], echoed["stderr"]):
        assert EMAIL not in text and SSN not in text
        assert not leaks(text, echoed["key"])


# -- identifiers ------------------------------------------------------------------------------
PATIENT_IDS = {"user_id": EMAIL, "session_id": "visit-123-45-6789",
               "tags": [f"ssn {SSN}", "urgent"], "agent": "matching", "stage": "rank"}


def test_pii_identifiers_become_stable_pseudonyms_in_store_and_langfuse(make_adapter, server,
                                                                       keys, monkeypatch):
    monkeypatch.setenv("LLM_ADAPTER_PSEUDONYM_KEY", "a-shared-secret-of-every-host-42")
    llm = make_adapter(traced(unique("ids"), random_key()),
                       environment="production")
    llm.generate(prompt="first", metadata=PATIENT_IDS)
    llm.generate(prompt="second", metadata=PATIENT_IDS)
    llm.generate(prompt="third", metadata={"user_id": "admin", "session_id": "S1",
                                           "tags": ["urgent"], "agent": "matching"})
    with llm.trace(f"Intake {EMAIL}", user_id=EMAIL, session_id="visit-123-45-6789",
                   tags=[SSN, "intake"], metadata={"note": f"for {EMAIL}"}):
        llm.generate(prompt="inside")
    assert llm.flush_langfuse(timeout=15)
    store = llm.telemetry.store
    assert store.flush(5)
    with sqlite3.connect(store.path) as conn:
        rows = conn.execute("SELECT user_id, session_id, tags, agent, stage, trace_name "
                            "FROM calls ORDER BY started_at").fetchall()
    assert len(rows) == 4
    user, session = rows[0][0], rows[0][1]
    assert PSEUDONYM.fullmatch(user) and user.startswith("email-")
    assert PSEUDONYM.fullmatch(session) and session.startswith("ssn-")
    assert rows[1][:2] == (user, session) and rows[3][:2] == (user, session)
    tags = json.loads(rows[0][2])
    assert "urgent" in tags and any(PSEUDONYM.fullmatch(t) for t in tags)
    assert rows[0][3:5] == ("matching", "rank")
    assert rows[2][:2] == ("admin", "S1") and "urgent" in json.loads(rows[2][2])
    assert PSEUDONYM.fullmatch(rows[3][5]) and rows[3][5].startswith("email-")
    raw = store_bytes(Path(store.path).parent)
    assert EMAIL.encode() not in raw and SSN.encode() not in raw

    spans = mine(server, keys[0])
    sent = payload(spans)
    assert EMAIL not in sent and SSN not in sent
    gens = [s for s in spans if s.attr("langfuse.observation.type") == "generation"]
    assert len(gens) == 4
    assert sorted(g.attr("user.id") for g in gens) == sorted([user, user, "admin", user])
    assert {g.attr("session.id") for g in gens} == {session, "S1"}
    [root] = [s for s in spans if s.attr("langfuse.observation.type") == "span"]
    assert root.name.startswith("email-")
    assert (root.attr("user.id"), root.attr("session.id")) == (user, session)
    assert "intake" in root.attr("langfuse.trace.tags")
    # Costs by user: the two calls (and the traced one) of one user are one row.
    proc = subprocess.run([sys.executable, "-m", "adapters.llm", "costs", "--by", "user",
                           "--json", "--db", str(store.path)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    by_user = {r["key"]: r["calls"] for r in json.loads(proc.stdout)["rows"]}
    assert by_user == {user: 3, "admin": 1}


def test_the_spool_holds_pseudonyms_while_langfuse_is_down(make_adapter, server, keys):
    llm = make_adapter(traced(unique("spooled"), random_key()),
                       environment="production")
    server.set_down(True)
    try:
        with llm.trace("intake", user_id=EMAIL, session_id="visit-123-45-6789"):
            llm.generate(prompt="while down", metadata=PATIENT_IDS)
        assert not llm.flush_langfuse(timeout=15)
        store = llm.telemetry.store
        assert store.spool.count() >= 1
        raw = store_bytes(Path(store.path).parent)
        assert EMAIL.encode() not in raw and SSN.encode() not in raw
    finally:
        server.set_down(False)
    assert llm.flush_langfuse(timeout=15)
    [gen] = [s for s in mine(server, keys[0])
             if s.attr("langfuse.observation.type") == "generation"]
    assert gen.attr("user.id").startswith("email-")


def test_pseudonyms_agree_across_hosts_sharing_a_key_and_persist_per_install(
        make_adapter, tmp_path, monkeypatch):
    from adapters.llm._observability.telemetry import TelemetryPool

    config = traced(unique("hosts"), random_key())

    def pseudonym_on(home: Path) -> str:
        monkeypatch.setenv("LLM_ADAPTER_HOME", str(home))
        llm = make_adapter(config, environment="production", enable_langfuse=False,
                           telemetry=TelemetryPool())
        return str(llm.telemetry.masker.identifier(EMAIL))

    monkeypatch.delenv("LLM_ADAPTER_PSEUDONYM_KEY", raising=False)
    first = pseudonym_on(tmp_path / "a")
    key_file = tmp_path / "a" / "pseudonym.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert pseudonym_on(tmp_path / "a") == first            # the same install, later
    assert pseudonym_on(tmp_path / "b") != first            # another install, its own key
    monkeypatch.setenv("LLM_ADAPTER_PSEUDONYM_KEY", "a-shared-secret-of-every-host-42")
    shared = pseudonym_on(tmp_path / "c")
    assert shared == pseudonym_on(tmp_path / "d") != first
    assert not (tmp_path / "c" / "pseudonym.key").exists()


def test_masking_off_keeps_identifiers_but_not_keys(make_adapter, server, keys):
    key = random_key()
    llm = make_adapter(traced(unique("staging"), key), environment="staging")
    llm.generate(prompt="hello", metadata={"user_id": EMAIL, "tags": [f"k {key}"]})
    assert llm.flush_langfuse(timeout=15)
    [gen] = [s for s in mine(server, keys[0])
             if s.attr("langfuse.observation.type") == "generation"]
    assert gen.attr("user.id") == EMAIL
    assert list(gen.attr("langfuse.trace.tags")) == ["k ***"]


def test_a_short_or_unknown_masking_key_is_a_config_error(make_adapter):
    for masking, words in (({"pseudonym_key": "short"}, "at least 16 characters"),
                           ({"pseudonym": "a-long-enough-secret-42"},
                            "masking.pseudonym: unknown key 'pseudonym'")):
        with pytest.raises(errors.ConfigError, match=re.escape(words)):    # at construction
            make_adapter(traced(unique("bad"), random_key(), masking=masking),
                         environment="production")


# -- the log filter ---------------------------------------------------------------------------
def test_log_filter_is_attached_once_on_first_telemetry_never_at_import():
    code = textwrap.dedent("""
        import logging, os
        os.environ["LLM_ADAPTER_HOME"] = os.environ["HOME_FOR_TEST"]
        import adapters.llm
        from adapters.llm import LiteLLMAdapter
        from adapters.llm._observability.log_masking import LOGGERS, LogMasking
        def count():
            return [sum(isinstance(f, LogMasking) for f in logging.getLogger(n).filters)
                    for n in LOGGERS]
        print(count())
        for _ in range(2):
            LiteLLMAdapter(environment="simulation", enable_langfuse=False).telemetry
        print(count())
        logging.getLogger("LiteLLM").error("jane.roe@example.com sk-ant-api03-abcdefghijkl")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT),
                               "HOME_FOR_TEST": str(Path(os.environ["LLM_ADAPTER_HOME"]))})
    assert proc.returncode == 0, proc.stderr
    before, after = proc.stdout.strip().splitlines()
    assert before == str([0] * 5) and after == str([1] * 5)
    # simulation has masking off: keys still go, patient data stays.
    assert "sk-ant-api03" not in proc.stderr and EMAIL in proc.stderr


def test_log_filter_masks_messages_arguments_and_tracebacks(make_adapter, caplog):
    key = random_key()
    llm = make_adapter(traced(unique("logs"), key), environment="production",
                       enable_langfuse=False)
    llm.telemetry                                            # noqa: B018
    router_log = logging.getLogger("LiteLLM Router")
    with caplog.at_level(logging.DEBUG, logger="LiteLLM Router"):
        router_log.info("sent %s for %s", key, EMAIL)
        try:
            raise RuntimeError(f"refused {key} of {SSN}")
        except RuntimeError:
            router_log.exception("failed")
    assert "[EMAIL]" in caplog.text and "[SSN]" in caplog.text
    assert not leaks(caplog.text, key) and EMAIL not in caplog.text and SSN not in caplog.text


def test_doctor_production_fails_without_a_shared_pseudonym_key(tmp_path, monkeypatch):
    from adapters.llm._cli.production_checks import _pseudonym_key

    path = write_config(tmp_path, traced("doctor", random_key()), sim_url="http://x",
                        name="config.yaml")
    config = load_config(path, environment="production", load_dotenv=False)
    monkeypatch.delenv("LLM_ADAPTER_PSEUDONYM_KEY", raising=False)
    check = _pseudonym_key(config)
    assert not check["ok"] and "LLM_ADAPTER_PSEUDONYM_KEY" in check["fix"]
    monkeypatch.setenv("LLM_ADAPTER_PSEUDONYM_KEY", "short")
    assert "at least 16" in _pseudonym_key(config)["detail"]
    monkeypatch.setenv("LLM_ADAPTER_PSEUDONYM_KEY", "a-shared-secret-of-every-host-42")
    assert _pseudonym_key(config)["ok"]


def test_a_score_comment_is_masked_like_the_call_it_scores(make_adapter, server, keys):
    key = random_key()
    llm = make_adapter(traced(unique("score"), key), environment="production")
    llm.generate(prompt="hello")
    llm.score("helpful", True, comment=f"reach me at {EMAIL} with {key}")
    assert llm.flush_langfuse(timeout=15)
    [score] = [s for s in server.scores() if s.get("name") == "helpful"]
    assert "[EMAIL]" in score["comment"] and EMAIL not in score["comment"]
    assert not leaks(score["comment"], key)
    with sqlite3.connect(llm.telemetry.store.path) as conn:
        [(stored,)] = conn.execute("SELECT comment FROM scores").fetchall()
    assert "[EMAIL]" in stored and not leaks(stored, key)
