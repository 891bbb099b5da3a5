"""Running the simulator: in a background thread, on the caller's event loop, or as a blocking CLI.

Synchronous code (tests, benchmarks driving ``litellm.completion``) gets a server on
its own loop in a daemon thread; async code can ``async with Simulator()`` on its
loop. Either way the scenario and stats methods are plain synchronous calls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from aiohttp import web

from .scenarios import Scenario
from .server import SimulatorApp
from .state import Registry

__all__ = ["Simulator", "serve", "serve_in_thread"]

_T = TypeVar("_T")
_SHUTDOWN_TIMEOUT_S = 1.0


def serve_in_thread(start: Callable[[], Coroutine[Any, Any, None]], name: str
                    ) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """Run ``start()`` on a new event loop in a daemon thread, then keep that loop running.

    Returns once ``start()`` finished (the server listens); its exception is raised here.
    """
    loop = asyncio.new_event_loop()
    started: concurrent.futures.Future[None] = concurrent.futures.Future()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # handed to the caller, which re-raises it
            started.set_exception(exc)
            loop.close()
            return
        started.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        started.result()
    except BaseException:
        thread.join()
        raise
    return loop, thread


class Simulator:
    """A loopback server that plays LLM providers; see the package docstring for the URL layout."""

    def __init__(
        self,
        scenarios: Mapping[str, Scenario] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self.url = ""
        self._registry = Registry(scenarios)  # outlives restarts; each start gets a fresh app
        self._server: SimulatorApp | None = None
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def _start_serving(self) -> None:
        server = SimulatorApp(self._registry)
        # handler_cancellation: a client that hangs up cancels its (possibly stalled) handler.
        runner = web.AppRunner(
            server.app,
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, backlog=2048)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._server = runner, server
        self.port = int(runner.addresses[0][1])
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{self.port}"

    async def _stop_serving(self) -> None:
        runner, server = self._runner, self._server
        self._runner = self._server = None
        if runner is None or server is None:
            return
        await server.cancel_in_flight()
        await runner.cleanup()

    def start(self) -> Simulator:
        """Serve from a daemon thread with its own event loop; returns once listening."""
        if self._runner is not None or self._thread is not None:
            raise RuntimeError("the simulator is already running")
        self._loop, self._thread = serve_in_thread(self._start_serving, "llm-provider-simulator")
        return self

    def stop(self) -> None:
        """Stop serving and drop every connection, stalled ones included. Idempotent."""
        loop, thread = self._loop, self._thread
        if thread is None or loop is None:
            return
        if not loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._stop_serving(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Simulator:
        """Serve on the running event loop (no thread)."""
        if self._runner is not None or self._thread is not None:
            raise RuntimeError("the simulator is already running")
        await self._start_serving()
        self._loop = asyncio.get_running_loop()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop_serving()
        self._loop = None

    # -- scenarios and stats ------------------------------------------------------------

    def _call(self, function: Callable[[], _T]) -> _T:
        """Run ``function`` on the server's loop, where all run-time state lives."""
        loop = self._loop
        if loop is None or _running_loop() is loop:
            return function()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(function())
            except BaseException as exc:  # handed back to the calling thread
                future.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return future.result(timeout=10)

    def base(self, scenario: str) -> str:
        """The ``api_base`` for a deployment that should behave like ``scenario``."""
        if not self.url:
            raise RuntimeError("the simulator is not running; call start() first")
        return f"{self.url}/s/{scenario}"

    def set_scenario(self, name: str, scenario: Scenario | str | Mapping[str, Any]) -> None:
        """Change how ``name`` behaves from the next request on.

        ``scenario`` is a Scenario, the name of a built-in (or configured) one, or the
        control endpoint's JSON form (a scenario dict or ``{"use": "<name>"}``).
        """
        if isinstance(scenario, str):
            scenario = {"use": scenario}
        if not isinstance(scenario, Scenario):
            scenario = self._registry.parse(scenario)
        chosen = scenario
        self._call(lambda: self._registry.set(name, chosen))

    def reset_scenario(self, name: str) -> None:
        """Return ``name`` to its default behaviour."""
        self._call(lambda: self._registry.reset(name))

    def scenarios(self) -> dict[str, Scenario]:
        return self._call(self._registry.scenarios)

    def stats(self, name: str | None = None) -> dict[str, Any]:
        """All stats by scenario name, or one scenario's (zeros when it saw no traffic)."""
        everything = self._call(self._registry.stats)
        if name is None:
            return everything
        return everything.get(name, {"requests": 0, "by_status": {}, "faults": {}, "in_flight": 0})

    def reset_stats(self) -> None:
        self._call(self._registry.reset_stats)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # called from plain synchronous code
        return None


def serve(
    host: str = "127.0.0.1",
    port: int = 8787,
    scenarios: Mapping[str, Scenario] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve in the foreground until SIGINT or SIGTERM (for ``llm-adapter simulate``).

    ``on_ready`` receives the URL once the server listens (useful with ``port=0``).
    """

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stopping.set)
            except NotImplementedError:  # Windows event loops have no signal handlers
                signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stopping.set))
        async with Simulator(scenarios, host, port) as simulator:
            if on_ready is not None:
                on_ready(simulator.url)
            await stopping.wait()

    asyncio.run(main())
