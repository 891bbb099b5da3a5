"""Which sinks a config records to, resolved once and shared by the adapters that use it.

The local store is always on (``store: {enabled: false}`` turns it off); Langfuse is on when the
adapter's ``enable_langfuse`` (default: the profile's ``langfuse.enabled``) says so and keys are
set. Missing keys while enabled give one warning and the calls go on. Every secret the config
and the environment hold is collected here for the maskers, which also mask litellm's own logs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

from .._process.fork import reset_in_child
from .._process.lifecycle import RECORDS, default_lifecycle
from .log_masking import log_masking
from .pseudonyms import pseudonym_key
from .redact import config_secrets
from .._config.loader import Config
from ..errors import UsageError
from .masking import Masker, masker_from_config
from .recording import Recorder, Sink
from .sinks import close_parts, record_sinks, together
from .recording_child import RecordingSpec
from .recording_process import RecordingProcess
from .tracing import LangfuseSink, langfuse_credentials

__all__ = ["Telemetry", "TelemetryPool", "default_telemetry", "store_path", "store_target_of"]

log = logging.getLogger("adapters.llm")


@dataclass
class Telemetry:
    recorder: Recorder
    masker: Masker
    langfuse: LangfuseSink | None
    store: Any | None                    # LocalStore
    alerts: Any | None = None            # AlertEvaluator

    def flush(self, timeout: float = 10.0) -> bool:
        """Every record so far handed to the sinks and delivered by them; True when done."""
        return self.recorder.flush(timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """The end of this telemetry, in order: the recorder hands over what is queued and
        stops; each sink (the recording process first) is flushed with the time left (at most
        ``sinks.SINK_EXIT_TIMEOUT`` each) and closed if it has ``close()``; then the store
        commits and stops its writer (it gets at least a second, whatever the sinks took).
        True when everything finished in time. Safe to call twice; records made later are
        dropped and counted. Shared parts (a store, a sink) are closed for everyone using them:
        this is for the end of the process (``LiteLLMAdapter.close`` only flushes)."""
        deadline = time.monotonic() + timeout
        ok = self.recorder.close(timeout)
        return close_parts(self.recorder.sinks, [self.store], deadline) and ok


class TelemetryPool:
    """Telemetry per (config, Langfuse on/off): one store writer and one Langfuse exporter per
    process and destination, however many adapters are created."""

    def __init__(self) -> None:
        self._forget()
        self._warned_keys = False
        reset_in_child(self, TelemetryPool._forget)
        lifecycle = default_lifecycle()
        lifecycle.install()
        lifecycle.add(self.close, stage=RECORDS)

    def _forget(self) -> None:
        """Start empty; in a forked child, whose store writer and exporter threads are gone,
        the next call builds its own."""
        self._lock = threading.Lock()
        self._items: dict[tuple[str, bool, tuple[str, str] | None], Telemetry] = {}
        self._stores: dict[str, Any] = {}
        self._langfuse: dict[tuple[str, str, str, str, float | None], LangfuseSink] = {}
        self._alerts: dict[str, Any] = {}
        self._processes: dict[RecordingSpec, RecordingProcess] = {}
        self._warned_keys = False
        self._closed = False

    def close(self, timeout: float = 10.0) -> bool:
        """Close every telemetry of the pool as ``Telemetry.close`` does, all recorders first,
        then each sink and store once (several telemetries share them). Run at the end of the
        process; safe to call twice."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return True
            self._closed = True
            items = list(self._items.values())
        ok = together([partial(t.recorder.close, max(deadline - time.monotonic(), 0.0))
                       for t in items], deadline)
        sinks = {id(sink): sink for t in items for sink in t.recorder.sinks}
        stores = {id(t.store): t.store for t in items}
        return close_parts(list(sinks.values()), list(stores.values()), deadline) and ok

    def get(self, config: Config, enable_langfuse: bool) -> Telemetry:
        creds = langfuse_credentials() if enable_langfuse else None
        key = (config.settings_fingerprint(), enable_langfuse,
               (creds.public_key, creds.base_url) if creds else None)
        with self._lock:
            telemetry = self._items.get(key)
            if telemetry is None:
                if self._closed:
                    raise UsageError("the process is ending: its call records were already "
                                     "written and closed, so no new adapter can record calls")
                telemetry = self._items[key] = self._build(config, enable_langfuse)
                default_lifecycle().run_first()     # before the SDK's own at-exit shutdown
            return telemetry

    def _build(self, config: Config, enable_langfuse: bool) -> Telemetry:
        source = str(config.path) if config.path else None
        creds = langfuse_credentials()
        secrets = [*config_secrets(config), *((creds.secret_key,) if creds else ())]
        store_settings = config.settings.store
        path = store_path(config)
        settings = config.settings.masking

        def key() -> bytes:
            return pseudonym_key(settings.pseudonym_key, source=source,
                                 home=path.parent,
                                 warn=config.environment == "production" and enable_langfuse)

        masker = masker_from_config(settings, environment=config.environment, secrets=secrets,
                                    source=source, pseudonym_key=key)
        secrets_only = masker_from_config(settings.model_copy(update={"enabled": False}),
                                          environment=config.environment, secrets=secrets,
                                          source=source)
        log_masking().add(masker)           # litellm's own log lines: from now on
        keep_calls = store_settings.enabled
        in_child = store_settings.recorder == "process"
        store = langfuse = None
        if enable_langfuse and creds is None:
            self._warn_missing_keys()
        if keep_calls or (enable_langfuse and creds is not None):   # the outbox lives there
            store = self._store(store_target_of(config), path, start=not in_child)
        if enable_langfuse and creds is not None:
            langfuse = self._langfuse_sink(creds, config, store, deliver=not in_child)
        masked = masker.enabled and masker.mask_store

        def local() -> list[Sink]:
            """Recording in this process: the store's writer and Langfuse's delivery here."""
            if store is not None:
                store.start()
            if langfuse is not None:
                langfuse.start_delivery()
            return record_sinks(store, langfuse, keep_calls=keep_calls, masked=masked)

        sinks: list[Sink] = []
        if store is not None:
            sinks = [self._recording_process(RecordingSpec(
                str(store.path), store.target.url, keep_calls, masked,
                creds if langfuse is not None else None, config.environment,
                config.profile.langfuse.default_tags, config.profile.langfuse.sample_rate,
                log.getEffectiveLevel()), local, langfuse)] if in_child else local()
        alerts = self._alert_evaluator(config)
        if alerts is not None:
            sinks.append(alerts)
        return Telemetry(Recorder(sinks, masker, secrets_only), masker, langfuse, store, alerts)

    def _recording_process(self, spec: RecordingSpec, local: Callable[[], list[Sink]],
                           langfuse: LangfuseSink | None) -> RecordingProcess:
        """One recording process per destination, shared like the stores and sinks."""
        process = self._processes.get(spec)
        if process is None:
            process = self._processes[spec] = RecordingProcess(
                spec, local=local,
                before_flush=langfuse.client.flush if langfuse is not None else None)
            if langfuse is not None:
                langfuse.remote_state = process.state
        return process

    def _alert_evaluator(self, config: Config) -> Any:
        """One evaluator per config and process, whatever the Langfuse setting: an alert is
        sent once, not once per adapter flavour."""
        from .alert_rules import AlertSettings

        settings = AlertSettings.from_config(config)
        if settings is None:
            return None
        key = config.settings_fingerprint()
        evaluator = self._alerts.get(key)
        if evaluator is None:
            from .alerts import AlertEvaluator

            evaluator = self._alerts[key] = AlertEvaluator(settings)
        return evaluator

    def _store(self, target: Any, path: Path, *, start: bool) -> Any:
        from .store import BUFFER_FILENAME, LocalStore

        if target.url is not None:      # PostgreSQL; its local buffer beside the usual file
            store = LocalStore(path.with_name(BUFFER_FILENAME), url=target.url)
        else:
            store = LocalStore(target.path)
        existing = self._stores.setdefault(str(store.target), store)
        if existing is not store:
            store.close()
        if start:
            existing.start()        # the first record does not wait for the writer's start
        return existing

    def _langfuse_sink(self, creds: Any, config: Config, store: Any, *,
                       deliver: bool) -> LangfuseSink:
        rate = config.profile.langfuse.sample_rate
        key = (creds.public_key, creds.base_url, config.environment, str(store.target), rate)
        sink = self._langfuse.get(key)
        if sink is None:
            sink = self._langfuse[key] = LangfuseSink(
                creds, environment=config.environment, store=store,
                default_tags=config.profile.langfuse.default_tags, sample_rate=rate,
                deliver=deliver)
        return sink

    def _warn_missing_keys(self) -> None:
        if not self._warned_keys:
            self._warned_keys = True
            log.warning("llm-adapter: Langfuse is enabled but LANGFUSE_PUBLIC_KEY / "
                        "LANGFUSE_SECRET_KEY are not set; calls are recorded in the local store "
                        "only (set them, or enable_langfuse=False to silence this)")


def store_path(config: Config) -> Path:
    """The store a config's calls go to: ``store.path``, else the default store."""
    from .store import default_path

    configured = config.settings.store.path         # checked when the config was loaded
    if configured:
        return Path(str(configured)).expanduser()
    return default_path()


def store_target_of(config: Config) -> Any:
    """Where a config's calls go (a ``StoreTarget``): ``store.url``, else ``store.path``, else
    ``$LLM_ADAPTER_STORE_URL``, else the default file. A bad URL is a ``ConfigError`` naming
    the key and the accepted forms."""
    from .store_dialect import StoreTarget, parse_store_url
    from .store import store_target

    settings = config.settings.store
    if settings.url:
        return parse_store_url(settings.url, key="store.url",
                               source=str(config.path) if config.path else None)
    if settings.path:
        return StoreTarget(path=store_path(config))
    return store_target()


@cache
def default_telemetry() -> TelemetryPool:
    """The process's pool: store writers and Langfuse exporters are per process."""
    return TelemetryPool()
