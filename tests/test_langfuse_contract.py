"""Contract tests: the Langfuse SDK internals the adapter relies on, against the installed SDK
and the loopback Langfuse. Each is reached only through ``_observability/langfuse_sdk.py``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from adapters.llm._observability import langfuse_sdk
from adapters.llm._observability.credentials import Credentials

from .langfuse_server import LangfuseServer


@pytest.fixture(scope="module")
def creds() -> Iterator[Credentials]:
    with LangfuseServer() as server:
        public, secret = f"pk-lf-{uuid.uuid4().hex[:12]}", f"sk-lf-{uuid.uuid4().hex[:12]}"
        server.add_key(public, secret)
        yield Credentials(public, secret, server.url)


def test_the_sdk_version_is_the_installed_one() -> None:
    from importlib.metadata import version

    assert langfuse_sdk.sdk_version() == version("langfuse")


def test_the_generated_client_creates_reads_and_relabels_prompts(creds: Credentials) -> None:
    api = langfuse_sdk.api_client(creds, timeout=5)
    name = f"contract-{uuid.uuid4().hex[:8]}"
    options = {"timeout_in_seconds": 5, "max_retries": 0}
    created = api.prompts.create(request=langfuse_sdk.prompt_request(
        "chat", [{"role": "system", "content": "You schedule therapists."}], name=name,
        labels=["staging"], tags=None, config={}, commit_message=None), request_options=options)
    assert (created.name, created.version, created.labels) == (name, 1, ["staging", "latest"])
    text = api.prompts.create(request=langfuse_sdk.prompt_request(
        "text", "Hello {{name}}", name=name + "-t", labels=[], tags=None, config={},
        commit_message=None), request_options=options)
    assert text.prompt == "Hello {{name}}"
    fetched = api.prompts.get(name, version=1, request_options=options)
    assert fetched.prompt[0].content == "You schedule therapists."
    moved = api.prompt_version.update(name, 1, new_labels=["production"],
                                      request_options=options)
    assert "production" in moved.labels


def test_an_http_error_is_raised_as_the_api_error_class_with_status_and_body(
        creds: Credentials) -> None:
    api = langfuse_sdk.api_client(creds, timeout=5)
    with pytest.raises(langfuse_sdk.api_error()) as caught:
        api.prompts.get(f"missing-{uuid.uuid4().hex[:8]}",
                        request_options={"timeout_in_seconds": 5, "max_retries": 0})
    assert caught.value.status_code == 404
    assert caught.value.body is not None
    wrong = langfuse_sdk.api_client(Credentials("pk-lf-wrong", "sk-lf-wrong", creds.base_url),
                                    timeout=5)
    with pytest.raises(langfuse_sdk.api_error()) as refused:
        wrong.prompts.get("anything", request_options={"timeout_in_seconds": 5,
                                                       "max_retries": 0})
    assert refused.value.status_code == 401


def test_the_span_internals_the_builder_borrows_are_there() -> None:
    # The generation spans are built with the SDK's own attribute logic (and checked byte for
    # byte against the SDK's span path in test_tracing_delivery): these are what it reaches.
    sdk = langfuse_sdk.internals()
    attrs = sdk.attributes.create_generation_attributes(
        name="g", model="gpt-4o", usage_details={"input": 1}, cost_details={"total": 0.1})
    assert attrs[sdk.attributes.LangfuseOtelSpanAttributes.OBSERVATION_MODEL] == "gpt-4o"
    assert sdk.attributes._serialize({"a": 1}) == '{"a": 1}'
    assert callable(sdk.attributes._serialize_metadata_value)
    for name in ("on_start", "on_end"):
        assert callable(getattr(sdk.span_processor, name))
    assert sdk.tracer_name == "langfuse-sdk" and len(sdk.reserved_observation_keys) > 0
    assert callable(sdk.is_default_export_span)
