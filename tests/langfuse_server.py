"""A loopback server that plays a self-hosted Langfuse (>= v4.59) for the real SDK.

Tests of tracing and prompt management point ``Langfuse(base_url=server.url)`` at it
and talk real HTTP: OTLP span export (protobuf or JSON, gzip or not), score batches,
and the v2 prompts API with the server's label/version rules. Faults (unreachable,
forced status) are switched from the test thread. The server runs on its own event
loop in a daemon thread, like ``adapters.llm.simulator.Simulator``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import gzip
import json
import logging
import re
import threading
import uuid
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, NamedTuple, TypeVar
from urllib.parse import unquote

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from adapters.llm.simulator.runner import serve_in_thread

__all__ = ["LangfuseServer", "PromptStore", "ReceivedExport", "ReceivedSpan", "RequestRejected",
           "use_project"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

PROJECT_ID = "proj-test"
SERVER_VERSION = "4.59.0"
_MAX_BODY_BYTES = 64 * 1024 * 1024  # the SDK's default OTLP request limit
_SHUTDOWN_TIMEOUT_S = 1.0
_LATEST = "latest"
_PRODUCTION = "production"
_LABEL_RE = re.compile(r"^[a-z0-9_\-.]+$")
_HTML_RE = re.compile(r"<[^>]*>")
_RESERVED_NAMES = frozenset({"new", "metrics", "prompt-detail"})
_SCORE_TYPES = frozenset({"NUMERIC", "BOOLEAN", "CATEGORICAL", "TEXT", "CORRECTION"})
_OTLP_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


# -- what was received ------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the server decoded it from an OTLP export."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_time_ns: int
    end_time_ns: int
    attributes: dict[str, Any]
    resource_attributes: dict[str, Any]
    scope_name: str
    status_code: int
    status_message: str
    scope_attributes: dict[str, Any] = field(default_factory=dict)

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attributes.get(key, default)

    def json_attr(self, key: str) -> Any:
        """The SDK JSON-encodes input, output, usage, cost and metadata values."""
        raw = self.attributes.get(key)
        return None if raw is None else json.loads(raw)


@dataclass(frozen=True)
class ReceivedExport:
    """How one successful OTLP POST arrived (to assert on encoding and SDK headers)."""

    content_type: str
    content_encoding: str  # "" when the body was not compressed
    span_count: int
    headers: dict[str, str]  # lower-cased names


class RequestRejected(ValueError):
    """An API error answered as Langfuse does: ``{"message": ..., "error": ...}``."""

    def __init__(self, status: int, message: str, error: Any = "InvalidRequestError") -> None:
        super().__init__(message)
        self.status, self.message, self.error = status, message, error

    @classmethod
    def invalid(cls, path: str, message: str) -> RequestRejected:
        """A request-schema violation, shaped like the server's Zod error."""
        return cls(400, "Invalid request data", [{"code": "custom", "path": [path], "message": message}])

    @classmethod
    def not_found(cls, message: str) -> RequestRejected:
        return cls(404, message, "LangfuseNotFoundError")

    def response(self) -> web.Response:
        return web.json_response({"message": self.message, "error": self.error}, status=self.status)


# -- prompt store -----------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _labels(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(label, str) for label in value):
        raise RequestRejected.invalid(path, "Expected an array of strings")
    for label in value:
        if not _LABEL_RE.match(label) or len(label) > 36:
            raise RequestRejected.invalid(
                path, "Label must be lowercase alphanumeric with optional underscores, hyphens, or periods"
            )
    return list(dict.fromkeys(value))


def _prompt_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestRejected.invalid("name", "Enter a name")
    for bad, message in (
        ("|" in value, "Prompt name cannot contain '|' character"),
        (value.startswith("/"), "Name cannot start with a slash"),
        ("//" in value, "Name cannot contain consecutive slashes"),
        (value.endswith("/"), "Name cannot end with a slash"),
        (bool(_HTML_RE.search(value)), "Text cannot contain HTML tags"),
        (len(value) > 255, "Name is too long"),
        (value.strip() in _RESERVED_NAMES, f"Prompt name cannot be '{value.strip()}'"),
    ):
        if bad:
            raise RequestRejected.invalid("name", message)
    return value.strip()


def _chat_messages(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise RequestRejected.invalid("prompt", "Expected an array of chat messages")
    for message in value:
        if not isinstance(message, dict):
            raise RequestRejected.invalid("prompt", "Expected a chat message object")
        if message.get("type") == "placeholder":
            if not isinstance(message.get("name"), str) or not message["name"]:
                raise RequestRejected.invalid("prompt", "A placeholder needs a name")
        elif not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
            raise RequestRejected.invalid("prompt", "A chat message needs string role and content")
    return value


class PromptStore:
    """Prompt versions by name, with the server's label, tag and type rules; thread-safe."""

    def __init__(self, project_id: str = PROJECT_ID) -> None:
        self._project_id = project_id
        self._lock = threading.Lock()
        self._prompts: dict[str, list[dict[str, Any]]] = {}  # name -> versions, ascending

    @staticmethod
    def _public(version: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(version)
        out["isActive"] = _PRODUCTION in out["labels"]
        return out

    def create(self, body: Any) -> dict[str, Any]:
        """POST /api/public/v2/prompts: the next version, which takes ``latest`` and its labels."""
        if not isinstance(body, dict):
            raise RequestRejected.invalid("", "Expected an object")
        name = _prompt_name(body.get("name"))
        kind = body.get("type") or "text"
        if kind == "text":
            if not isinstance(body.get("prompt"), str):
                raise RequestRejected.invalid("prompt", "Expected a string")
        elif kind == "chat":
            _chat_messages(body.get("prompt"))
        else:
            raise RequestRejected.invalid("type", "Expected 'text' or 'chat'")
        labels = _labels(body.get("labels") or [], "labels")
        tags = body.get("tags")
        if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
            raise RequestRejected.invalid("tags", "Expected an array of strings")
        message = body.get("commitMessage")
        if message is not None and (not isinstance(message, str) or len(message) > 500):
            raise RequestRejected.invalid("commitMessage", "Expected a string of at most 500 characters")
        config = body.get("config")
        with self._lock:
            versions = self._prompts.setdefault(name, [])
            latest = versions[-1] if versions else None
            if latest is not None and latest["type"] != kind:
                raise RequestRejected(
                    400, "Previous versions have different prompt type. Create a new prompt with a different name."
                )
            final_labels = list(dict.fromkeys([*labels, _LATEST]))
            final_tags = list(dict.fromkeys(tags if tags is not None else (latest["tags"] if latest else [])))
            now = _now()
            for older in versions:
                kept = [label for label in older["labels"] if label not in final_labels]
                if kept != older["labels"] or older["tags"] != final_tags:
                    older.update(labels=kept, tags=list(final_tags), updatedAt=now)
            created = {
                "id": str(uuid.uuid4()),
                "createdAt": now,
                "updatedAt": now,
                "projectId": self._project_id,
                "createdBy": "API",
                "name": name,
                "version": latest["version"] + 1 if latest else 1,
                "type": kind,
                "prompt": copy.deepcopy(body["prompt"]),
                "config": {} if config is None else copy.deepcopy(config),
                "labels": final_labels,
                "tags": final_tags,
                "commitMessage": message,
                "resolutionGraph": None,
            }
            versions.append(created)
            return self._public(created)

    def get(self, name: str, *, version: int | None = None, label: str | None = None) -> dict[str, Any]:
        """A version by number, else by label (default ``production``); 404 otherwise."""
        with self._lock:
            for candidate in self._prompts.get(name, []):
                if version is not None:
                    found = candidate["version"] == version
                else:
                    found = (label or _PRODUCTION) in candidate["labels"]
                if found:
                    return self._public(candidate)
        where = f"with version {version}" if version is not None else f"with label '{label or _PRODUCTION}'"
        raise RequestRejected.not_found(f"Prompt not found: '{name}' {where}")

    def versions(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [self._public(version) for version in self._prompts.get(name, [])]

    def set_labels(self, name: str, version: int, new_labels: Any) -> dict[str, Any]:
        """PATCH .../versions/{version}: add labels to a version, taking them from the others."""
        labels = _labels(new_labels, "newLabels")
        if _LATEST in labels:
            raise RequestRejected(400, "The 'latest' label is reserved and managed by Langfuse")
        with self._lock:
            versions = self._prompts.get(name, [])
            target = next((v for v in versions if v["version"] == version), None)
            if target is None:
                raise RequestRejected.not_found(f"Prompt not found: {name}")
            now = _now()
            for other in versions:
                kept = [label for label in other["labels"] if label not in labels]
                if other is not target and kept != other["labels"]:
                    other.update(labels=kept, updatedAt=now)
            target.update(labels=list(dict.fromkeys([*labels, *target["labels"]])), updatedAt=now)
            return self._public(target)

    def delete(self, name: str, *, version: int | None = None, label: str | None = None) -> None:
        """DELETE: every version, or the one with ``version``/``label``; ``latest`` moves down."""
        if version is not None and label is not None:
            raise RequestRejected(400, "Cannot specify both version and label")
        with self._lock:
            versions = self._prompts.get(name, [])
            doomed = [
                v for v in versions
                if (version is None or v["version"] == version) and (label is None or label in v["labels"])
            ]
            if not doomed:
                raise RequestRejected.not_found("Prompt not found")
            remaining = [v for v in versions if all(v is not d for d in doomed)]
            if remaining and not any(_LATEST in v["labels"] for v in remaining):
                remaining[-1]["labels"].append(_LATEST)
            if remaining:
                self._prompts[name] = remaining
            else:
                del self._prompts[name]

    def meta(self, query: Mapping[str, str]) -> dict[str, Any]:
        """GET /api/public/v2/prompts: one entry per name over the matching versions, by name."""
        page, limit = _int_param(query, "page", 1), _int_param(query, "limit", 10)
        if page < 1 or not 1 <= limit <= 100:
            raise RequestRejected.invalid("page" if page < 1 else "limit", "Out of range")
        wanted_version = _int_param(query, "version", None)
        since, until = _time_param(query, "fromUpdatedAt"), _time_param(query, "toUpdatedAt")

        def matches(version: dict[str, Any]) -> bool:
            updated = datetime.fromisoformat(version["updatedAt"])
            return (
                (wanted_version is None or version["version"] == wanted_version)
                and ("label" not in query or query["label"] in version["labels"])
                and ("tag" not in query or query["tag"] in version["tags"])
                and (since is None or updated >= since)
                and (until is None or updated < until)
            )

        with self._lock:
            entries = []
            for name in sorted(self._prompts):
                if "name" in query and query["name"] != name:
                    continue
                hits = [v for v in self._prompts[name] if matches(v)]
                if hits:
                    entries.append({
                        "name": name,
                        "type": hits[-1]["type"],
                        "versions": [v["version"] for v in hits],
                        "labels": sorted({label for v in hits for label in v["labels"]}),
                        "tags": list(hits[-1]["tags"]),
                        "lastUpdatedAt": max(v["updatedAt"] for v in hits),
                        "lastConfig": copy.deepcopy(hits[-1]["config"]),
                    })
        total = len(entries)
        return {
            "data": entries[(page - 1) * limit : page * limit],
            "meta": {"page": page, "limit": limit, "totalItems": total, "totalPages": -(-total // limit)},
        }


def _int_param(query: Mapping[str, str], key: str, default: _T) -> int | _T:
    if key not in query:
        return default
    try:
        return int(query[key])
    except ValueError:
        raise RequestRejected.invalid(key, "Expected an integer") from None


def _time_param(query: Mapping[str, str], key: str) -> datetime | None:
    if key not in query:
        return None
    try:
        parsed = datetime.fromisoformat(query[key])
    except ValueError:
        raise RequestRejected.invalid(key, "Expected an ISO 8601 datetime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# -- OTLP decoding ----------------------------------------------------------------------


def _any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _key_values(value.kvlist_value.values)
    return getattr(value, kind)


def _key_values(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: _any_value(pair.value) for pair in pairs}


def _decode_spans(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = _key_values(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = _key_values(scope_spans.scope.attributes)
            for span in scope_spans.spans:
                spans.append(ReceivedSpan(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex() or None,
                    name=span.name,
                    start_time_ns=span.start_time_unix_nano,
                    end_time_ns=span.end_time_unix_nano,
                    attributes=_key_values(span.attributes),
                    resource_attributes=dict(resource),
                    scope_name=scope_spans.scope.name,
                    status_code=int(span.status.code),
                    status_message=span.status.message,
                    scope_attributes=dict(scope),
                ))
    return spans


def _otlp_json_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes IDs as hex, protobuf's JSON mapping expects base64 bytes."""
    if isinstance(node, list):
        return [_otlp_json_ids_to_base64(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        key: base64.b64encode(bytes.fromhex(value)).decode()
        if key in _OTLP_ID_KEYS and isinstance(value, str)
        else _otlp_json_ids_to_base64(value)
        for key, value in node.items()
    }


def _parse_otlp(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    if content_type not in ("application/x-protobuf", "application/json"):
        raise RequestRejected(415, f"Unsupported content type: {content_type!r}")
    message = ExportTraceServiceRequest()
    try:
        if content_type == "application/x-protobuf":
            message.ParseFromString(body)
        else:
            json_format.ParseDict(_otlp_json_ids_to_base64(json.loads(body)), message, ignore_unknown_fields=True)
    except (DecodeError, json_format.ParseError, ValueError) as exc:
        raise RequestRejected(400, f"Invalid OTLP request: {exc}") from None
    return message


# -- the server -------------------------------------------------------------------------

_Handler = Callable[[web.Request], Awaitable[web.Response]]


class _Route(NamedTuple):
    handlers: Mapping[str, _Handler]
    auth: bool = True
    ingestion: bool = False  # set_status() applies


async def _read_body(request: web.Request) -> bytes:
    """The request body, gunzipped (the app runs with aiohttp's auto-decompression off)."""
    raw = await request.read()
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding != "gzip":
        raise RequestRejected(415, f"Unsupported content encoding: {encoding!r}")
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise RequestRejected(400, f"Invalid gzip body: {exc}") from None


async def _read_json(request: web.Request) -> Any:
    try:
        return json.loads(await _read_body(request))
    except ValueError:
        raise RequestRejected(400, "Invalid JSON body") from None


def _score_problem(item: Any) -> str | None:
    """Why the server would reject one score item, or None when it is fine."""
    if not isinstance(item, dict):
        return "Score must be an object"
    if not isinstance(item.get("name"), str) or not item["name"]:
        return "Score needs a name"
    value, data_type = item.get("value"), item.get("dataType")
    if data_type is not None and data_type not in _SCORE_TYPES:
        return f"Unknown dataType {data_type!r}"
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if data_type in ("NUMERIC", "BOOLEAN") and not numeric:
        return f"{data_type} scores need a numeric value"
    if data_type == "BOOLEAN" and value not in (0, 1):
        return "BOOLEAN scores need the value 0 or 1"
    if data_type in ("CATEGORICAL", "TEXT", "CORRECTION") and not isinstance(value, str):
        return f"{data_type} scores need a string value"
    if not numeric and not isinstance(value, str):
        return "Score needs a numeric or string value"
    if not any(item.get(key) for key in ("traceId", "sessionId", "datasetRunId")):
        return "Score needs a traceId, sessionId or datasetRunId"
    if item.get("observationId") and not item.get("traceId"):
        return "observationId requires traceId"
    return None


class LangfuseServer:
    """Langfuse's public API on loopback, for the real SDK; see the module docstring."""

    def __init__(
        self,
        public_key: str = "pk-lf-test",
        secret_key: str = "sk-lf-test",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.host, self.port, self.url = host, port, ""
        self.prompts = PromptStore()  # outlives set_down(); manipulable directly
        self._lock = threading.Lock()  # guards everything below
        self._keys = {public_key: secret_key}
        self._down = False
        self._forced_status: int | None = None
        self._retry_after: int | None = None
        self._reject_marker: tuple[str, int] | None = None
        self._max_body: int | None = None
        self._rejected: list[ReceivedSpan] = []
        self._spans: list[ReceivedSpan] = []
        self._exports: list[ReceivedExport] = []
        self._scores: list[dict[str, Any]] = []
        self._requests: list[tuple[str, str, int]] = []
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def _start_serving(self) -> None:
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # auto_decompress=False: we gunzip ourselves, so a non-gzip body labelled gzip is a 400.
        runner = web.AppRunner(app, access_log=None, auto_decompress=False, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port, backlog=1024).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{self.port}"

    async def _stop_serving(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()  # stops listening and closes every connection

    def _run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise RuntimeError("the Langfuse server is not running; call start() first")
        asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=10)

    def start(self) -> LangfuseServer:
        """Serve from a daemon thread with its own event loop; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("the Langfuse server is already running")
        self._loop, self._thread = serve_in_thread(self._start_serving, "langfuse-test-server")
        return self

    def stop(self) -> None:
        """Stop serving and end the loop thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            self._run(self._stop_serving())
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = None

    def __enter__(self) -> LangfuseServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- faults and keys ----------------------------------------------------------------

    def set_down(self, down: bool) -> None:
        """Simulate an outage: stop listening and drop connections; re-listen on the same port.

        A closed port gives the SDK's exporters a connection error at once (retried with
        backoff until their deadline), exactly like an unreachable host.
        """
        with self._lock:
            if self._down == down:
                return
            self._down = down
        try:
            self._run(self._stop_serving() if down else self._start_serving())
        except BaseException:
            with self._lock:
                self._down = not down
            raise

    def set_status(self, status: int | None, *, retry_after: int | None = None) -> None:
        """Answer the ingestion endpoints (OTLP traces, scores) with ``status`` (and a
        ``Retry-After`` header when given); None = normal."""
        if status is not None and not 100 <= status <= 599:
            raise ValueError(f"not an HTTP status: {status}")
        with self._lock:
            self._forced_status = status
            self._retry_after = retry_after

    def reject_marked(self, marker: str | None, status: int = 413) -> None:
        """Refuse with ``status`` (e.g. 413, 400) every OTLP batch holding a span with an
        attribute whose text contains ``marker``, as Langfuse refuses a batch for its content;
        None: accept again."""
        with self._lock:
            self._reject_marker = None if marker is None else (marker, status)

    def set_max_body(self, limit: int | None) -> None:
        """Answer 413 to OTLP bodies over ``limit`` bytes once decompressed (None: 64 MiB)."""
        with self._lock:
            self._max_body = limit

    def rejected_spans(self) -> list[ReceivedSpan]:
        """Spans of the batches refused by ``reject_marked`` / ``set_max_body``."""
        with self._lock:
            return list(self._rejected)

    def add_key(self, public_key: str, secret_key: str) -> None:
        """Accept another key pair (the SDK keeps one client per public key)."""
        with self._lock:
            self._keys[public_key] = secret_key

    # -- what was received --------------------------------------------------------------

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def exports(self) -> int:
        """Number of OTLP POSTs that were answered 200."""
        with self._lock:
            return len(self._exports)

    def export_log(self) -> list[ReceivedExport]:
        with self._lock:
            return list(self._exports)

    def scores(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._scores)

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, raw path without query, status answered), in arrival order."""
        with self._lock:
            return list(self._requests)

    def request_count(self, path: str | None = None, *, method: str | None = None, status: int | None = None) -> int:
        return sum(
            1 for m, p, s in self.requests()
            if (path is None or p == path) and (method is None or m == method) and (status is None or s == status)
        )

    def clear(self) -> None:
        """Forget received spans, exports, scores and requests (prompts and faults stay)."""
        with self._lock:
            self._spans.clear()
            self._exports.clear()
            self._scores.clear()
            self._requests.clear()
            self._rejected.clear()

    # -- prompt store -------------------------------------------------------------------

    def add_prompt(
        self,
        name: str,
        prompt: str | list[dict[str, Any]],
        *,
        type: str = "text",
        labels: Iterable[str] = (),
        config: Any = None,
        tags: Iterable[str] | None = None,
        commit_message: str | None = None,
    ) -> dict[str, Any]:
        """Create the next version exactly like POST /api/public/v2/prompts (tags None = inherit)."""
        return self.prompts.create({
            "name": name, "prompt": prompt, "type": type, "labels": list(labels), "config": config,
            "tags": None if tags is None else list(tags), "commitMessage": commit_message,
        })

    def prompt_versions(self, name: str) -> list[dict[str, Any]]:
        return self.prompts.versions(name)

    # -- HTTP ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            response = await self._dispatch(request)
        except RequestRejected as rejected:
            response = rejected.response()
        except web.HTTPException as exc:  # e.g. a body over client_max_size
            response = web.json_response({"message": exc.reason, "error": type(exc).__name__}, status=exc.status)
        except Exception:  # a bug here must still answer (and be recorded), like the real server
            _log.exception("langfuse test server: unhandled error for %s %s", request.method, request.path)
            response = web.json_response({"message": "Internal Server Error", "error": "Error"}, status=500)
        with self._lock:
            self._requests.append((request.method, request.rel_url.raw_path, response.status))
        return response

    async def _dispatch(self, request: web.Request) -> web.Response:
        parts = request.rel_url.raw_path.split("/")[1:]
        while parts and not parts[-1]:
            parts.pop()
        route = self._route(parts)
        if route is None:
            raise RequestRejected(404, f"Route not found: {request.method} {request.path}", "NotFoundError")
        handler = route.handlers.get(request.method)
        if handler is None:
            raise RequestRejected(405, f"Method {request.method} not allowed", "MethodNotAllowedError")
        with self._lock:
            forced = self._forced_status if route.ingestion else None
            retry_after = self._retry_after
            keys = dict(self._keys)
        if forced is not None:
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
            return web.json_response({"message": f"Forced status {forced}", "error": HTTPStatus(forced).phrase},
                                     status=forced, headers=headers)
        if route.auth:
            _authenticate(request, keys)
        return await handler(request)

    def _route(self, parts: list[str]) -> _Route | None:
        if parts[:2] != ["api", "public"]:
            return None
        match parts[2:]:
            case ["health"]:
                return _Route({"GET": self._health}, auth=False)
            case ["projects"]:
                return _Route({"GET": self._projects})
            case ["otel", "v1", "traces"]:
                return _Route({"POST": self._otel_traces}, ingestion=True)
            case ["scores"]:
                return _Route({"POST": self._create_scores}, ingestion=True)
            case ["v2", "prompts"]:
                return _Route({"GET": self._list_prompts, "POST": self._create_prompt})
            case ["v2", "prompts", *encoded, "versions", version] if encoded:
                name = "/".join(unquote(part) for part in encoded)
                return _Route({"PATCH": lambda request: self._update_prompt(request, name, version)})
            case ["v2", "prompts", *encoded] if encoded:
                name = "/".join(unquote(part) for part in encoded)
                return _Route({
                    "GET": lambda request: self._get_prompt(request, name),
                    "DELETE": lambda request: self._delete_prompt(request, name),
                })
        return None

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"version": SERVER_VERSION, "status": "OK"})

    async def _projects(self, request: web.Request) -> web.Response:
        project = {"id": PROJECT_ID, "name": "test", "organization": {"id": "org", "name": "org"}, "metadata": {}}
        return web.json_response({"data": [project]})

    async def _otel_traces(self, request: web.Request) -> web.Response:
        body = await _read_body(request)
        spans = _decode_spans(_parse_otlp(body, request.content_type))
        with self._lock:
            marker, limit = self._reject_marker, self._max_body
        refused = None
        if limit is not None and len(body) > limit:
            refused = RequestRejected(413, f"Request body of {len(body)} bytes exceeds {limit}",
                                      "PayloadTooLarge")
        elif marker is not None and any(marker[0] in str(value) for span in spans
                                        for value in span.attributes.values()):
            refused = RequestRejected(marker[1], "Batch holds a span this server refuses")
        if refused is not None:
            with self._lock:
                self._rejected.extend(spans)
            raise refused
        received = ReceivedExport(
            content_type=request.content_type,
            content_encoding=request.headers.get("Content-Encoding", "").strip().lower(),
            span_count=len(spans),
            headers={key.lower(): value for key, value in request.headers.items()},
        )
        with self._lock:
            self._spans.extend(spans)
            self._exports.append(received)
        return web.json_response({})

    async def _create_scores(self, request: web.Request) -> web.Response:
        """SDK v5 posts a list (202, or 207 with rejections); older clients one object ({"id"})."""
        body = await _read_json(request)
        if isinstance(body, dict):
            problem = _score_problem(body)
            if problem is not None:
                raise RequestRejected.invalid("", problem)
            score = {**body, "id": body.get("id") or uuid.uuid4().hex}
            with self._lock:
                self._scores.append(score)
            return web.json_response({"id": score["id"]})
        if not isinstance(body, list):
            raise RequestRejected.invalid("", "Expected a score object or an array of scores")
        accepted, errors = [], []
        for item in body:
            problem = _score_problem(item)
            if problem is None:
                accepted.append({**item, "id": item.get("id") or uuid.uuid4().hex})
            else:
                errors.append({"message": problem})
        with self._lock:
            self._scores.extend(accepted)
        if errors:
            return web.json_response({"accepted": len(accepted), "rejected": len(errors), "errors": errors},
                                     status=207)
        return web.json_response({"message": "Accepted"}, status=202)

    async def _list_prompts(self, request: web.Request) -> web.Response:
        return web.json_response(self.prompts.meta(request.query))

    async def _create_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self.prompts.create(await _read_json(request)), status=201)

    async def _get_prompt(self, request: web.Request, name: str) -> web.Response:
        version = _int_param(request.query, "version", None)
        return web.json_response(self.prompts.get(name, version=version, label=request.query.get("label")))

    async def _update_prompt(self, request: web.Request, name: str, version: str) -> web.Response:
        if not version.isdigit():
            raise RequestRejected.invalid("version", "Expected an integer")
        body = await _read_json(request)
        new_labels = body.get("newLabels") if isinstance(body, dict) else None
        return web.json_response(self.prompts.set_labels(name, int(version), new_labels))

    async def _delete_prompt(self, request: web.Request, name: str) -> web.Response:
        version = _int_param(request.query, "version", None)
        self.prompts.delete(name, version=version, label=request.query.get("label"))
        return web.Response(status=204)


def _authenticate(request: web.Request, keys: Mapping[str, str]) -> None:
    """HTTP Basic with public key : secret key, as every authed /api/public route wants."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not token:
        raise RequestRejected(401, "No authorization header", "UnauthorizedError")
    try:
        public_key, sep, secret_key = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise RequestRejected(401, "Invalid authorization header", "UnauthorizedError") from None
    if not sep or keys.get(public_key) != secret_key:
        raise RequestRejected(
            401, "Invalid credentials. Confirm that you've configured the correct host.", "UnauthorizedError"
        )


def use_project(server: LangfuseServer, monkeypatch: Any, home: Any) -> tuple[str, str]:
    """A fresh Langfuse project on ``server`` for one test (the SDK keeps one client per public
    key), set in the environment with the test's own store at ``home``; its (public, secret)."""
    public, secret = f"pk-lf-{uuid.uuid4().hex[:12]}", f"sk-lf-{uuid.uuid4().hex[:12]}"
    server.add_key(public, secret)
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", public)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", secret)
    monkeypatch.setenv("LANGFUSE_BASE_URL", server.url)
    monkeypatch.setenv("LLM_ADAPTER_HOME", str(home))
    return public, secret
