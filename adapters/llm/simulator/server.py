"""The aiohttp application: provider routing, fault injection and the control endpoint.

``/s/<scenario>/<provider path>`` answers as the provider the path belongs to,
shaped by the scenario; ``/control/...`` inspects and changes scenarios at run time.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web

from .content import plan_reply
from .routing import guess_provider, not_found_message, rate_limit_error
from .scenarios import Fault, Scenario
from .state import Registry, ScenarioRuntime
from .validation import check_model
from .wire import CHAT_ENDPOINTS, ErrorSpec, Meta, RequestError, Route, WireFormat, new_id
from .wire_anthropic import AnthropicWire
from .wire_gemini import GeminiWire
from .wire_ollama import OllamaWire
from .wire_openai import OpenAIWire
from .wire_responses import ResponsesWire

__all__ = ["SimulatorApp"]

_MALFORMED_BODY = b'{"id":"sim-malformed","choices":[{"message":{"content":"tru'


def _reset_connection(request: web.BaseRequest, *, hard: bool) -> None:
    """Drop the client's TCP connection; ``hard`` sends an RST instead of a FIN."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if hard and sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # e.g. Anthropic's 529, which has no standard phrase
        return "Overloaded" if status == 529 else "Error"


def _retry_headers(seconds: float | None) -> dict[str, str]:
    if seconds is None:
        return {}
    seconds = max(0.0, seconds)
    text = str(int(seconds)) if seconds == int(seconds) else f"{seconds:g}"
    return {"Retry-After": text, "retry-after-ms": str(int(seconds * 1000))}


@dataclass(frozen=True)
class _Call:
    """One provider request being answered, and what was decided about it so far."""

    request: web.Request
    name: str
    wire: WireFormat
    route: Route
    runtime: ScenarioRuntime
    fault: Fault | None
    request_id: str


class SimulatorApp:
    """One simulator's aiohttp application and the in-flight handlers it must cancel on stop."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.wires: tuple[WireFormat, ...] = (
            OpenAIWire(),
            AnthropicWire(),
            GeminiWire(),
            OllamaWire(),
            ResponsesWire(),
        )
        # the first wire of a provider answers its unknown paths (chat, not Responses)
        self._by_name: dict[str, WireFormat] = {w.name: w for w in reversed(self.wires)}
        self._handlers: set[asyncio.Task[Any]] = set()
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.add_routes(
            [
                web.get("/health", self._health),
                web.get("/control/scenarios", self._list_scenarios),
                web.get("/control/scenarios/{name}", self._get_scenario),
                web.put("/control/scenarios/{name}", self._put_scenario),
                web.delete("/control/scenarios/{name}", self._delete_scenario),
                web.get("/control/stats", self._stats),
                web.post("/control/reset-stats", self._reset_stats),
                web.route("*", "/s/{scenario}/{path:.+}", self._provider),
            ]
        )

    async def cancel_in_flight(self) -> None:
        """Cancel every running provider handler (stalled ones included) and wait for them."""
        tasks = [task for task in self._handlers if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)

    # -- provider traffic ---------------------------------------------------------------

    def _route(self, method: str, path: str, query: Mapping[str, str]
               ) -> tuple[WireFormat, Route] | None:
        for wire in self.wires:
            route = wire.match(method, path, query)
            if route is not None:
                return wire, route
        return None

    async def _provider(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["scenario"]
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self.registry.begin(name)
        try:
            return await self._serve(request, name)
        finally:
            self.registry.finish(name)
            if task is not None:
                self._handlers.discard(task)

    async def _serve(self, request: web.Request, name: str) -> web.StreamResponse:
        path = request.match_info["path"]
        request_id = new_id()
        routed = self._route(request.method, path, request.query)
        if routed is None:
            wire = self._by_name[guess_provider(path, request.headers, request.query)]
            spec = ErrorSpec(404, not_found_message(wire.name, request.method, path))
            return self._error(name, wire, spec, Meta(request_id))
        wire, route = routed
        runtime = self.registry.runtime(name)
        fault = runtime.next_fault()
        if fault is not None:
            self.registry.record_fault(name, fault.kind)
        raw = await request.read()
        stall = fault.stall_s if fault is not None and fault.kind == "stall" else 0.0
        delay = runtime.latency_s() + stall
        if delay:
            await asyncio.sleep(delay)
        if fault is not None and fault.kind == "reset":
            _reset_connection(request, hard=True)
            return web.Response()
        if fault is not None and fault.kind == "status":
            return self._fault_error(name, wire, runtime, fault, request_id)
        if wire.api_key(request.headers, request.query) is None:
            return self._error(name, wire, ErrorSpec(401, "missing API key"), Meta(request_id))
        call = _Call(request, name, wire, route, runtime, fault, request_id)
        try:
            return await self._answer(call, raw)
        except RequestError as exc:  # json.JSONDecodeError and RequestError are ValueErrors
            return self._error(name, wire, exc.spec(), Meta(request_id, runtime.peek()))
        except ValueError as exc:
            return self._error(name, wire, ErrorSpec(400, str(exc)), Meta(request_id))

    def _fault_error(self, name: str, wire: WireFormat, runtime: ScenarioRuntime, fault: Fault,
                     request_id: str) -> web.Response:
        message = fault.message if fault.message is not None else \
            f"{_phrase(fault.status)} (simulated by scenario {name!r})"
        spec = ErrorSpec(fault.status, message, fault.error_type, fault.error_code,
                         retry_after=fault.retry_after)
        limits = runtime.peek(exhausted=fault.status == 429)
        return self._error(name, wire, spec, Meta(request_id, limits, fault.retry_after))

    def _error(self, name: str, wire: WireFormat, spec: ErrorSpec, meta: Meta) -> web.Response:
        headers = wire.headers(meta)
        headers.update(_retry_headers(meta.retry_after))
        return self._json(name, spec.status, wire.error_body(spec, meta.request_id), headers)

    async def _answer(self, call: _Call, raw: bytes) -> web.StreamResponse:
        """Answer a well-formed call normally, or break it the way ``fault`` says."""
        wire, route, runtime, name = call.wire, call.route, call.runtime, call.name
        scenario = runtime.scenario
        body: Any = json.loads(raw) if raw.strip() else {}
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        if route.endpoint not in CHAT_ENDPOINTS:
            if scenario.validate:
                wire.check(body, call.request.headers, route)
            model = route.model or body.get("model")
            if isinstance(model, str) and route.endpoint not in ("models", "model"):
                check_model(wire.name, model.removeprefix("models/"), scenario.models)
            payload = wire.endpoint(route, body, scenario.seed or 0)
            return self._json(name, 200, payload, wire.headers(Meta(call.request_id)))
        chat = wire.parse(body, route)
        if scenario.validate:
            wire.check(body, call.request.headers, route)
        check_model(wire.name, chat.model, scenario.models)
        if scenario.max_input_tokens is not None and chat.input_tokens > scenario.max_input_tokens:
            spec = wire.context_error(scenario.max_input_tokens, chat.input_tokens)
            return self._error(name, wire, spec, Meta(call.request_id))
        limits = runtime.admit(chat.input_tokens)
        if limits.exceeded is not None:
            spec = rate_limit_error(limits)
            return self._error(name, wire, spec, Meta(call.request_id, limits, spec.retry_after))
        cache = runtime.use_cache(chat.prefixes)
        reply = plan_reply(
            chat, scenario.content, new_id=new_id, seed=scenario.seed or 0,
            tool_calls=scenario.tool_calls, cached_tokens=cache.read,
            cache_write_tokens=cache.written,
        )
        headers = wire.headers(Meta(call.request_id, limits))
        fault = call.fault
        kind = fault.kind if fault is not None else None
        if not chat.stream:
            if fault is not None and kind == "stream_error":
                return self._fault_error(name, wire, runtime, fault, call.request_id)
            body_bytes = json.dumps(wire.render(chat, reply)).encode()
            if kind == "malformed":
                body_bytes = _MALFORMED_BODY
            if kind == "cut" and fault is not None:
                return await self._cut_body(call.request, name, body_bytes)
            self.registry.record_status(name, 200)
            return web.Response(body=body_bytes, content_type="application/json", headers=headers)
        frames = wire.stream_frames(chat, reply, scenario.chunk_words)
        if kind == "malformed":  # one good frame, then garbage, then a clean end of stream
            frames = [*frames[:1], wire.malformed_frame()]
        cut_after = None
        if fault is not None and kind == "cut":  # always before the terminator
            cut_after = min(fault.after_chunks, len(frames) - 1)
        if fault is not None and kind == "stream_error":
            message = fault.message or f"{_phrase(fault.status)} (simulated by scenario {name!r})"
            spec = ErrorSpec(fault.status, message, fault.error_type, fault.error_code)
            keep = min(fault.after_chunks, len(frames) - 1)
            if chat.sse:
                failure = wire.stream_error(spec, call.request_id)
            else:  # a JSON-array stream ends with the error as its last element
                error = json.dumps(wire.error_body(spec, call.request_id)).encode()
                failure = (b",\r\n" if keep else b"[") + error + b"]"
            frames = [*frames[:keep], failure]
        content_type = wire.stream_content_type if chat.sse else "application/json"
        headers.update({"Content-Type": content_type, "Cache-Control": "no-cache"})
        return await self._stream(call.request, name, headers, frames, scenario, cut_after)

    def _json(
        self,
        name: str,
        status: int,
        payload: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        self.registry.record_status(name, status)
        return web.json_response(dict(payload), status=status, headers=dict(headers or {}))

    async def _cut_body(self, request: web.Request, name: str, body: bytes) -> web.StreamResponse:
        """Promise the whole body in Content-Length, send half, then drop the connection."""
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        self.registry.record_status(name, 200)
        try:
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
        except ConnectionError:
            return response
        _reset_connection(request, hard=False)
        return response

    async def _stream(
        self,
        request: web.Request,
        name: str,
        headers: Mapping[str, str],
        frames: list[bytes],
        scenario: Scenario,
        cut_after: int | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers=headers)
        interval = scenario.chunk_interval_ms / 1000.0
        self.registry.record_status(name, 200)
        try:
            await response.prepare(request)
            for index, frame in enumerate(frames):
                if index == cut_after:
                    # no terminator and no clean chunked end: the client sees a broken stream
                    _reset_connection(request, hard=False)
                    return response
                if index and interval:
                    await asyncio.sleep(interval)
                await response.write(frame)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away mid-stream; nothing left to send it
        return response

    # -- control endpoint ---------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _list_scenarios(self, request: web.Request) -> web.Response:
        scenarios = self.registry.scenarios()
        return web.json_response({name: scenarios[name].to_dict() for name in sorted(scenarios)})

    async def _get_scenario(self, request: web.Request) -> web.Response:
        """One scenario as the JSON object PUT accepts, so it can be read, edited, put back."""
        name = request.match_info["name"]
        scenario = self.registry.scenarios().get(name)
        if scenario is None:
            known = ", ".join(sorted(self.registry.scenarios()))
            return web.json_response(
                {"error": f"no scenario named {name!r} yet (known: {known}); "
                          f"PUT one, or send traffic to /s/{name}/... to start a healthy copy"},
                status=404,
            )
        return web.json_response(scenario.to_dict())

    async def _put_scenario(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            data = await request.json()
            scenario = self.registry.parse(data)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.registry.set(name, scenario)
        return web.json_response({name: scenario.to_dict()})

    async def _delete_scenario(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.json_response({name: self.registry.reset(name).to_dict()})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.registry.stats())

    async def _reset_stats(self, request: web.Request) -> web.Response:
        self.registry.reset_stats()
        return web.json_response({"status": "ok"})
