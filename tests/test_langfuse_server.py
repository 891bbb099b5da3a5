"""The Langfuse stand-in against the real langfuse 5.0.4 SDK, over real loopback HTTP."""

from __future__ import annotations

import base64
import gzip
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from langfuse import Langfuse, propagate_attributes
from langfuse.api import Error, NotFoundError

from tests.langfuse_server import LangfuseServer, ReceivedSpan, RequestRejected

OTLP_PATH = "/api/public/otel/v1/traces"
SCORES_PATH = "/api/public/scores"

MakeClient = Callable[..., tuple[Langfuse, str, str]]


@pytest.fixture(autouse=True)
def fresh(server: LangfuseServer) -> Iterator[None]:
    """Each test sees only its own traffic, and leaves no fault behind."""
    server.clear()
    yield
    server.set_status(None)
    server.set_down(False)


@pytest.fixture
def make_client(server: LangfuseServer) -> Iterator[MakeClient]:
    """Langfuse clients with fresh keys: the SDK keeps one client per public key."""
    clients: list[Langfuse] = []

    def make(*, register: bool = True, secret_key: str | None = None, **kwargs: Any) -> tuple[Langfuse, str, str]:
        public_key, real_secret = f"pk-lf-{uuid.uuid4().hex}", f"sk-lf-{uuid.uuid4().hex}"
        if register:
            server.add_key(public_key, real_secret)
        kwargs.setdefault("flush_interval", 0.1)
        client = Langfuse(public_key=public_key, secret_key=secret_key or real_secret, base_url=server.url, **kwargs)
        clients.append(client)
        return client, public_key, real_secret

    yield make
    for client in clients:
        client.shutdown()


def spans_of(server: LangfuseServer, public_key: str) -> dict[str, ReceivedSpan]:
    """This client's spans by name (the SDK stamps its public key on the scope)."""
    return {s.name: s for s in server.spans() if s.scope_attributes.get("public_key") == public_key}


def basic(public_key: str, secret_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()}


# -- tracing ----------------------------------------------------------------------------


def test_generation_attributes_and_nesting(server: LangfuseServer, make_client: MakeClient) -> None:
    client, public_key, _ = make_client(environment="staging", release="rel-1")
    with client.start_as_current_observation(as_type="span", name="request") as root:
        with propagate_attributes(user_id="user-1", session_id="sess-1", tags=["chat", "beta"],
                                  trace_name="chat-request", metadata={"tenant": "acme"}):
            with client.start_as_current_observation(
                as_type="generation", name="llm", model="gpt-4o-mini",
                input=[{"role": "user", "content": "Hi"}], metadata={"provider": "openai"},
            ) as generation:
                generation.update(
                    output={"role": "assistant", "content": "Hello"},
                    usage_details={"input": 10, "output": 5, "total": 15},
                    cost_details={"input": 0.0001, "output": 0.0002, "total": 0.0003},
                    level="ERROR", status_message="upstream failed",
                )
    client.flush()

    spans = spans_of(server, public_key)
    assert set(spans) == {"request", "llm"}
    parent, child = spans["request"], spans["llm"]
    assert (parent.span_id, parent.trace_id) == (root.id, root.trace_id)
    assert (child.span_id, child.parent_span_id, child.trace_id) == (generation.id, root.id, root.trace_id)
    assert parent.parent_span_id is None and parent.attr("langfuse.internal.is_app_root") is True
    assert len(child.trace_id) == 32 and len(child.span_id) == 16
    assert child.start_time_ns <= child.end_time_ns

    assert child.attr("langfuse.observation.type") == "generation"
    assert parent.attr("langfuse.observation.type") == "span"
    assert child.attr("langfuse.observation.model.name") == "gpt-4o-mini"
    assert child.json_attr("langfuse.observation.input") == [{"role": "user", "content": "Hi"}]
    assert child.json_attr("langfuse.observation.output") == {"role": "assistant", "content": "Hello"}
    assert child.json_attr("langfuse.observation.usage_details") == {"input": 10, "output": 5, "total": 15}
    assert child.json_attr("langfuse.observation.cost_details")["total"] == pytest.approx(0.0003)
    assert child.attr("langfuse.observation.metadata.provider") == '"openai"'  # values are JSON-encoded
    assert child.attr("langfuse.observation.level") == "ERROR"
    assert child.attr("langfuse.observation.status_message") == "upstream failed"
    assert (child.status_code, child.status_message) == (2, "upstream failed")  # ERROR sets the OTel status
    assert child.json_attr("langfuse.observation.completion_start_time") is None

    for span in (parent, child):  # propagate_attributes stamps the current span and new ones
        assert span.attr("user.id") == "user-1"
        assert span.attr("session.id") == "sess-1"
        assert span.attr("langfuse.trace.tags") == ["chat", "beta"]
        assert span.attr("langfuse.trace.name") == "chat-request"
        assert span.json_attr("langfuse.trace.metadata.tenant") == "acme"
        assert span.attr("langfuse.environment") == "staging"
        assert span.attr("langfuse.release") == "rel-1"
        assert span.resource_attributes["langfuse.environment"] == "staging"
        assert span.scope_name == "langfuse-sdk"

    (export,) = server.export_log()
    assert (export.content_type, export.content_encoding, export.span_count) == ("application/x-protobuf", "gzip", 2)
    assert export.headers["x-langfuse-ingestion-version"] == "4"
    assert export.headers["x-langfuse-public-key"] == public_key
    assert export.headers["x-langfuse-sdk-name"] == "python"
    assert server.exports() == 1
    assert server.requests() == [("POST", OTLP_PATH, 200)]


def test_hundreds_of_spans_in_one_uncompressed_export(server: LangfuseServer, make_client: MakeClient) -> None:
    client, public_key, _ = make_client(otel_compression="none", flush_interval=60)
    with client.start_as_current_observation(name="batch"):
        for index in range(300):
            client.start_observation(name=f"step-{index}").end()
    client.flush()

    assert len(spans_of(server, public_key)) == 301
    (export,) = server.export_log()
    assert (export.content_encoding, export.span_count) == ("", 301)
    assert "content-encoding" not in export.headers


def test_otlp_json_and_bad_bodies(server: LangfuseServer) -> None:
    trace_id, span_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "00f067aa0ba902b7"
    body = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{"scope": {"name": "manual"}, "spans": [{
            "traceId": trace_id, "spanId": span_id, "parentSpanId": parent_id, "name": "json-span",
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
            "status": {"code": 1},
            "attributes": [
                {"key": "n", "value": {"intValue": "42"}},
                {"key": "f", "value": {"doubleValue": 0.5}},
                {"key": "b", "value": {"boolValue": True}},
                {"key": "l", "value": {"arrayValue": {"values": [{"stringValue": "x"}, {"intValue": 2}]}}},
                {"key": "j", "value": {"stringValue": "{\"a\": 1}"}},
            ],
        }]}],
    }]}
    auth = basic("pk-lf-test", "sk-lf-test")
    with httpx.Client(base_url=server.url, headers=auth) as http:
        plain = http.post(OTLP_PATH, json=body)
        zipped = http.post(OTLP_PATH, content=gzip.compress(json.dumps(body).encode()),
                           headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        lying = http.post(OTLP_PATH, content=b"not gzip",
                          headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
        garbage = http.post(OTLP_PATH, content=b"\xff\xff\xff", headers={"Content-Type": "application/x-protobuf"})
        text = http.post(OTLP_PATH, content=b"hi", headers={"Content-Type": "text/plain"})

    assert (plain.status_code, plain.json(), zipped.status_code) == (200, {}, 200)
    assert (lying.status_code, garbage.status_code, text.status_code) == (400, 400, 415)
    first, second = server.spans()
    assert first == second
    assert (first.trace_id, first.span_id, first.parent_span_id, first.name) == (trace_id, span_id, parent_id, "json-span")
    assert (first.start_time_ns, first.end_time_ns, first.status_code) == (1700000000000000000, 1700000001000000000, 1)
    assert first.attributes == {"n": 42, "f": 0.5, "b": True, "l": ["x", 2], "j": '{"a": 1}'}
    assert first.json_attr("j") == {"a": 1} and first.json_attr("missing") is None
    assert (first.resource_attributes, first.scope_name) == ({"service.name": "svc"}, "manual")
    assert server.exports() == 2


# -- auth and faults --------------------------------------------------------------------


def test_wrong_secret_is_401_and_the_sdk_drops(server: LangfuseServer, make_client: MakeClient) -> None:
    client, _, _ = make_client(secret_key="sk-lf-wrong")
    with client.start_as_current_observation(name="rejected") as span:
        pass
    client.create_score(name="quality", value=1.0, trace_id=span.trace_id)
    started = time.monotonic()
    client.flush()

    assert time.monotonic() - started < 1.0  # 401 is not retried
    assert server.spans() == [] and server.scores() == [] and server.exports() == 0
    assert sorted(server.requests()) == [("POST", OTLP_PATH, 401), ("POST", SCORES_PATH, 401)]

    with httpx.Client(base_url=server.url) as http:
        missing = http.get("/api/public/projects")
        unknown = http.get("/api/public/projects", headers=basic("pk-lf-nobody", "sk-lf-test"))
        health = http.get("/api/public/health")
    assert missing.status_code == unknown.status_code == 401
    assert unknown.json()["error"] == "UnauthorizedError" and unknown.json()["message"]
    assert (health.status_code, health.json()) == (200, {"version": "4.59.0", "status": "OK"})


def test_down_drops_without_raising_then_recovers(server: LangfuseServer, make_client: MakeClient) -> None:
    client, public_key, _ = make_client(timeout=2)
    with client.start_as_current_observation(name="before"):
        pass
    client.flush()  # leaves a pooled keep-alive connection behind, which set_down must also cut

    server.set_down(True)
    port = server.port
    with client.start_as_current_observation(name="lost") as lost:
        pass
    client.create_score(name="lost-score", value=1.0, trace_id=lost.trace_id)
    started = time.monotonic()
    client.flush()  # never raises; spans give up at the 2 s export deadline, scores after 3 tries (<= 3 s)
    assert time.monotonic() - started < 5.0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/api/public/health")

    server.set_down(False)
    assert server.port == port
    with client.start_as_current_observation(name="after"):
        pass
    client.flush()
    assert set(spans_of(server, public_key)) == {"before", "after"}
    assert server.scores() == [] and server.exports() == 2
    assert server.requests() == [("POST", OTLP_PATH, 200)] * 2


def test_forced_status_on_ingestion_only(server: LangfuseServer, make_client: MakeClient) -> None:
    client, public_key, _ = make_client(timeout=1)
    server.add_prompt("still-served", "ok", labels=["production"])
    server.set_status(503)
    with client.start_as_current_observation(name="unlucky"):
        pass
    client.flush()
    assert client.get_prompt("still-served", cache_ttl_seconds=0).prompt == "ok"
    assert server.spans() == [] and server.exports() == 0
    assert server.request_count(OTLP_PATH, status=503) >= 1

    server.set_status(None)
    with client.start_as_current_observation(name="lucky"):
        pass
    client.flush()
    assert set(spans_of(server, public_key)) == {"lucky"}
    with pytest.raises(ValueError):
        server.set_status(42)


# -- scores -----------------------------------------------------------------------------


def test_scores_arrive_as_a_list(server: LangfuseServer, make_client: MakeClient) -> None:
    # Only the flush below sends: with the fixture's 0.1 s interval, a slow machine's two
    # create_score calls can fall into two of the SDK's own batches.
    client, public_key, secret = make_client(flush_at=10, flush_interval=60)
    with client.start_as_current_observation(name="scored") as span:
        pass
    client.create_score(name="accuracy", value=0.92, trace_id=span.trace_id, observation_id=span.id,
                        data_type="NUMERIC", comment="good", metadata={"by": "test"})
    client.create_score(name="verdict", value="pass", trace_id=span.trace_id, data_type="CATEGORICAL")
    client.flush()

    scores = {score["name"]: score for score in server.scores()}
    assert scores["accuracy"]["value"] == 0.92 and scores["accuracy"]["observationId"] == span.id
    assert scores["accuracy"]["traceId"] == span.trace_id and scores["accuracy"]["metadata"] == {"by": "test"}
    assert scores["verdict"]["value"] == "pass" and scores["verdict"]["dataType"] == "CATEGORICAL"
    assert server.request_count(SCORES_PATH, method="POST", status=202) == 1  # one batch of two

    server.clear()
    good = {"name": "raw", "value": 1, "traceId": span.trace_id}
    with httpx.Client(base_url=server.url, headers=basic(public_key, secret)) as http:
        partial = http.post(SCORES_PATH, json=[good, {"name": "bad", "value": "x", "dataType": "NUMERIC",
                                                      "traceId": span.trace_id}])
        single = http.post(SCORES_PATH, json=good)
        invalid = http.post(SCORES_PATH, json={"name": "orphan", "value": 1})
    assert partial.status_code == 207 and partial.json()["accepted"] == 1 and partial.json()["rejected"] == 1
    assert single.status_code == 200 and single.json()["id"]
    assert invalid.status_code == 400
    assert [score["name"] for score in server.scores()] == ["raw", "raw"]


# -- prompts ----------------------------------------------------------------------------


def test_prompt_versions_labels_and_fetching(server: LangfuseServer, make_client: MakeClient) -> None:
    client, _, _ = make_client()
    name = f"team/critic-{uuid.uuid4().hex[:6]}"  # folders need URL-encoding
    first = client.create_prompt(name=name, prompt="Rate {{movie}}", labels=["production"],
                                 tags=["movies"], config={"model": "gpt-4o-mini"}, commit_message="v1")
    second = client.create_prompt(name=name, prompt="Review {{movie}}", labels=["staging"])
    assert (first.version, set(first.labels)) == (1, {"production", "latest"})
    assert (second.version, set(second.labels), second.tags, second.config) == (2, {"staging", "latest"}, ["movies"], {})

    assert client.get_prompt(name, cache_ttl_seconds=0).version == 1  # default label: production
    assert client.get_prompt(name, label="latest", cache_ttl_seconds=0).version == 2
    assert client.get_prompt(name, label="staging", cache_ttl_seconds=0).compile(movie="Dune") == "Review Dune"
    fetched = client.get_prompt(name, version=1, cache_ttl_seconds=0)
    assert (fetched.prompt, fetched.config, fetched.commit_message) == ("Rate {{movie}}", {"model": "gpt-4o-mini"}, "v1")
    assert ("GET", f"/api/public/v2/prompts/team%2F{name[5:]}", 200) in server.requests()

    client.update_prompt(name=name, version=2, new_labels=["production"])
    moved = client.get_prompt(name, cache_ttl_seconds=0)
    assert moved.version == 2 and set(moved.labels) == {"production", "staging", "latest"}
    assert server.prompt_versions(name)[0]["labels"] == []
    assert server.prompt_versions(name)[1]["isActive"] is True
    with pytest.raises(Error) as latest:
        client.update_prompt(name=name, version=1, new_labels=["latest"])
    assert latest.value.status_code == 400

    with pytest.raises(NotFoundError):
        client.get_prompt(f"missing-{uuid.uuid4().hex}", max_retries=0, cache_ttl_seconds=0)
    fallback = client.get_prompt(f"missing-{uuid.uuid4().hex}", max_retries=0, fallback="fallback text")
    assert fallback.is_fallback and fallback.prompt == "fallback text"


def test_chat_prompts_type_change_and_listing(server: LangfuseServer, make_client: MakeClient) -> None:
    client, _, _ = make_client()
    chat, text = f"chat-{uuid.uuid4().hex[:6]}", f"text-{uuid.uuid4().hex[:6]}"
    messages: list[Any] = [{"role": "system", "content": "You are {{persona}}"},
                           {"type": "placeholder", "name": "history"}]
    client.create_prompt(name=chat, type="chat", prompt=messages, labels=["production"], tags=["shared"])
    compiled = client.get_prompt(chat, type="chat", cache_ttl_seconds=0).compile(
        persona="terse", history=[{"role": "user", "content": "hi"}])
    assert compiled == [{"role": "system", "content": "You are terse"}, {"role": "user", "content": "hi"}]

    with pytest.raises(Error) as changed:
        client.create_prompt(name=chat, prompt="now text")
    assert changed.value.status_code == 400
    assert "different prompt type" in changed.value.body["message"]

    server.add_prompt(text, "one", labels=["production"], tags=["shared"])
    server.add_prompt(text, "two", config={"temperature": 0})
    listed = client.api.prompts.list(tag="shared", limit=1)
    assert [p.name for p in listed.data] == [chat] and listed.meta.total_items == 2 and listed.meta.total_pages == 2
    page_two = client.api.prompts.list(tag="shared", limit=1, page=2).data[0]
    assert (page_two.name, page_two.type, page_two.versions) == (text, "text", [1, 2])
    assert set(page_two.labels) == {"production", "latest"} and page_two.last_config == {"temperature": 0}
    assert [p.versions for p in client.api.prompts.list(name=text, label="production").data] == [[1]]

    client.api.prompts.delete(text, version=2)
    assert server.prompt_versions(text)[-1]["labels"] == ["production", "latest"]  # latest moved back
    client.api.prompts.delete(text)
    assert server.prompt_versions(text) == []


def test_prompt_validation_and_unknown_routes(server: LangfuseServer) -> None:
    for bad_labels in (["Prod"], ["x" * 37]):
        with pytest.raises(RequestRejected) as rejected:
            server.add_prompt("valid-name", "x", labels=bad_labels)
        assert rejected.value.status == 400
    for bad_name in ("a|b", "/lead", "trail/", "a//b", "new", ""):
        with pytest.raises(RequestRejected):
            server.add_prompt(bad_name, "x")
    with pytest.raises(RequestRejected):
        server.add_prompt("chat-bad", [{"role": "user"}], type="chat")

    with httpx.Client(base_url=server.url, headers=basic("pk-lf-test", "sk-lf-test")) as http:
        missing = http.get("/api/public/v2/prompts/nope", params={"label": "staging"})
        by_version = http.get("/api/public/v2/prompts/nope", params={"version": 3})
        route = http.get("/api/public/nowhere")
        method = http.put("/api/public/scores")
        both = http.delete("/api/public/v2/prompts/nope", params={"version": 1, "label": "x"})
        created = http.post("/api/public/v2/prompts", json={"name": "raw", "prompt": "p"})
    assert (missing.status_code, missing.json()) == (
        404, {"message": "Prompt not found: 'nope' with label 'staging'", "error": "LangfuseNotFoundError"})
    assert by_version.json()["message"] == "Prompt not found: 'nope' with version 3"
    assert (route.status_code, method.status_code, both.status_code) == (404, 405, 400)
    assert created.status_code == 201
    assert {"id", "createdAt", "updatedAt", "projectId", "createdBy", "isActive", "resolutionGraph"} <= set(created.json())
    assert created.json()["labels"] == ["latest"] and created.json()["tags"] == []
    assert server.request_count("/api/public/v2/prompts/nope") == 3
