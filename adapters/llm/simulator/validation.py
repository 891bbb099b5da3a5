"""What the real providers refuse, refused the same way (400/404 in their shapes).

Only checks a vendor documents and enforces are here, each raising a
:class:`~.wire.RequestError` with the vendor's wording, so code that passes offline
does not fail on its first production call. A scenario with ``validate: false``
skips all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from .wire import RequestError, ranged

__all__ = ["check_anthropic", "check_gemini", "check_model", "check_ollama", "check_openai"]

_OPENAI_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_OLLAMA_ROLES = frozenset({"system", "user", "assistant", "tool"})
_GEMINI_ROLES = frozenset({"user", "model", "function"})


def check_model(provider: str, model: str, allowed: Sequence[str] | None) -> None:
    """404 in the provider's words when ``allowed`` patterns are set and none matches."""
    if allowed is None or any(fnmatchcase(model, pattern) for pattern in allowed):
        return
    if provider == "openai":
        raise RequestError(
            f"The model `{model}` does not exist or you do not have access to it.",
            status=404, code="model_not_found", param="model",
        )
    if provider == "anthropic":
        raise RequestError(f"model: {model}", status=404)
    if provider == "gemini":
        raise RequestError(
            f"models/{model} is not found for API version v1beta, or is not supported for "
            "generateContent. Call ListModels to see the list of available models and their "
            "supported methods.",
            status=404,
        )
    raise RequestError(f'model "{model}" not found, try pulling it first', status=404)


def _openai_messages(messages: list[Any]) -> None:
    pending: dict[str, int] = {}  # tool_call_id -> index of the assistant message
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            continue
        role = message.get("role")
        if role not in _OPENAI_ROLES:
            raise RequestError(
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                "'function', 'tool', and 'developer'.",
                param=f"messages[{index}].role", code="invalid_value",
            )
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                raise RequestError(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{index}].role",
                )
            del pending[call_id]
            continue
        if pending:
            at = min(pending.values())
            raise RequestError(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(sorted(pending))}",
                param=f"messages.[{at}].role",
            )
        calls = message.get("tool_calls") if role == "assistant" else None
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, Mapping) and isinstance(call.get("id"), str):
                    pending[call["id"]] = index
    if pending:
        at = min(pending.values())
        raise RequestError(
            "An assistant message with 'tool_calls' must be followed by tool messages responding "
            "to each 'tool_call_id'. The following tool_call_ids did not have response "
            f"messages: {', '.join(sorted(pending))}",
            param=f"messages.[{at}].role",
        )


def check_openai(body: Mapping[str, Any]) -> None:
    ranged(body, "temperature", 0, 2)
    ranged(body, "top_p", 0, 1)
    ranged(body, "presence_penalty", -2, 2)
    ranged(body, "frequency_penalty", -2, 2)
    ranged(body, "n", 1, 128)
    ranged(body, "top_logprobs", 0, 20)
    format_ = body.get("response_format")
    if isinstance(format_, Mapping):
        kind = format_.get("type")
        if kind not in ("text", "json_object", "json_schema"):
            raise RequestError(
                f"Invalid value: '{kind}'. Supported values are: 'json_object', 'json_schema', "
                "and 'text'.", param="response_format.type", code="invalid_value",
            )
        spec = format_.get("json_schema")
        if kind == "json_schema" and not (isinstance(spec, Mapping) and spec.get("name")):
            raise RequestError("Missing required parameter: 'response_format.json_schema.name'.",
                               param="response_format.json_schema.name",
                               code="missing_required_parameter")
    messages = body.get("messages")
    if isinstance(messages, list):
        _openai_messages(messages)


def _blocks(content: object, kind: str) -> list[Mapping[str, Any]]:
    if not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, Mapping) and b.get("type") == kind]


def check_anthropic(body: Mapping[str, Any], headers: Mapping[str, str]) -> None:
    if not headers.get("anthropic-version"):
        raise RequestError("anthropic-version: header is required")
    ranged(body, "temperature", 0, 1)
    ranged(body, "top_p", 0, 1)
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    previous_uses: set[str] = set()
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            continue
        role = message.get("role")
        if role == "system":
            raise RequestError(
                'messages: Unexpected role "system". The Messages API accepts a top-level '
                '`system` parameter, not "system" as an input message role.'
            )
        if role not in ("user", "assistant"):
            raise RequestError(f"messages.{index}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        results = {str(b.get("tool_use_id")) for b in _blocks(content, "tool_result")}
        unknown = sorted(results - previous_uses) if role == "user" else []
        if unknown:
            raise RequestError(
                f"messages.{index}.content.0: unexpected `tool_use_id` found in `tool_result` "
                f"blocks: {', '.join(unknown)}. Each `tool_result` block must have a "
                "corresponding `tool_use` block in the previous message."
            )
        missing = sorted(previous_uses - results)
        if missing:
            raise RequestError(
                f"messages.{index}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )
        previous_uses = {str(b.get("id")) for b in _blocks(content, "tool_use")} \
            if role == "assistant" else set()


def check_gemini(body: Mapping[str, Any]) -> None:
    config = body.get("generationConfig", body.get("generation_config"))
    if isinstance(config, Mapping):
        ranged(config, "temperature", 0, 2)
        ranged(config, "topP", 0, 1)
        ranged(config, "candidateCount", 1, 8)
    contents = body.get("contents")
    if not isinstance(contents, list):
        return
    for content in contents:
        role = content.get("role") if isinstance(content, Mapping) else None
        if role is not None and role not in _GEMINI_ROLES:
            raise RequestError("Please use a valid role: user, model.")


def check_ollama(body: Mapping[str, Any]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    for message in messages:
        role = message.get("role") if isinstance(message, Mapping) else None
        if role not in _OLLAMA_ROLES:
            raise RequestError(f"invalid role: {role!r}; use one of system, user, assistant, tool")
