"""Prompts: the ``Prompt`` object, ``{{variable}}`` compilation, and the registry the adapter asks.

A prompt comes from Langfuse when it is configured and answers, else from the local registry
(the embedded default, and the fallback when Langfuse is unreachable or lacks the prompt):
the project's ``prompts/`` first, then the guide's prompts packaged with the adapter.
``Prompt.source`` says which kind, ``Prompt.location`` which file or URL. Prompts are cached in
memory and refreshed in the background once their TTL has passed (stale-while-revalidate), so
after the first call a ``get`` does no I/O, and an edit in Langfuse or in ``prompts/`` takes
effect without a deploy.

``compile()`` returns a ``str`` or a ``list`` that remembers its prompt (``prompt_link``), so a
call given ``system=llm.get_prompt(...)`` can be linked to the prompt version it used.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._config.loader import PROMPTS_ENV_VAR
from ..errors import ConfigError, UsageError
from .experiments import Experiment, experiments_of, parse_experiments
from .._breaker import Breaker
from .._process.fork import reset_in_child
from .sources import (LangfuseSource, LocalSource, PromptMissing, PromptRecord,
                             SourceUnreachable, packaged_prompts_dir)
from .._observability.tracing import current_scope, langfuse_credentials

if TYPE_CHECKING:
    from .._config.loader import Config

__all__ = ["CompiledChat", "CompiledText", "LocalRegistry", "Prompt", "PromptMessage",
           "PromptRegistry", "build_registry", "prompt_link"]

log = logging.getLogger("adapters.llm")

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_Key = tuple[str, str, int | str]            # (name, "version" | "label", value)


@dataclass(frozen=True)
class Prompt:
    """One version of a prompt. ``source``: langfuse, local (Langfuse not configured) or
    fallback (Langfuse configured but unreachable or without it); ``location``: the YAML file
    it was read from (the project's or the packaged copy) or Langfuse's URL; ``variant``: the
    A/B label chosen for this call, or None."""

    name: str
    version: int
    type: str                                   # "text" | "chat"
    template: str | tuple[Mapping[str, Any], ...]
    labels: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    source: str = "local"
    variant: str | None = None
    location: str | None = None

    @classmethod
    def from_record(cls, record: PromptRecord, source: str,
                    location: str | None = None) -> Prompt:
        template = record["prompt"]
        return cls(name=record["name"], version=record["version"], type=record["type"],
                   template=template if isinstance(template, str) else tuple(template),
                   labels=tuple(record["labels"]), config=dict(record["config"] or {}),
                   source=source, location=location)

    @property
    def is_fallback(self) -> bool:
        """Not Langfuse's own version: the Langfuse SDK links only those (``prompt=``)."""
        return self.source != "langfuse"

    @cached_property
    def variables(self) -> tuple[str, ...]:
        """The ``{{variable}}`` names, in order of first use."""
        texts = [self.template] if isinstance(self.template, str) else \
            [m["content"] for m in self.template if isinstance(m.get("content"), str)]
        return tuple(dict.fromkeys(m.group(1) for t in texts for m in _VARIABLE.finditer(t)))

    @cached_property
    def placeholders(self) -> tuple[str, ...]:
        """Names of chat placeholders, each filled with a list of messages at compile time."""
        if isinstance(self.template, str):
            return ()
        return tuple(str(m["name"]) for m in self.template if m.get("type") == "placeholder")

    def compile(self, /, **variables: Any) -> CompiledText | CompiledChat:
        """The template with every ``{{var}}`` and placeholder filled.

        A missing one is a ``UsageError`` naming it: a prompt is never sent with a literal
        ``{{var}}``. Messages given for a placeholder are inserted as they are (not templated:
        they are conversation data). Unused variables are logged at debug level.
        """
        missing = [v for v in (*self.variables, *self.placeholders) if v not in variables]
        if missing:
            example = ", ".join(f"{m!r}: ..." for m in missing)
            raise UsageError(f"prompt {self.name!r} (version {self.version}) needs "
                             f"{', '.join(repr(m) for m in missing)}; pass "
                             f"variables={{{example}}}")
        empty = [v for v in self.variables if variables[v] is None]
        if empty:     # rendering None as "" (or "None") would send a prompt nobody wrote
            raise UsageError(f"prompt {self.name!r} (version {self.version}): variable(s) "
                             f"{', '.join(repr(v) for v in empty)} are None; pass a value "
                             "('' for an empty one)")
        if log.isEnabledFor(logging.DEBUG):
            unused = set(variables) - set(self.variables) - set(self.placeholders)
            if unused:
                log.debug("llm-adapter: prompt %r ignores variable(s) %s", self.name,
                          ", ".join(sorted(unused)))

        def fill(text: str) -> str:
            return _VARIABLE.sub(lambda m: str(variables[m.group(1)]), text)

        if isinstance(self.template, str):
            return CompiledText(fill(self.template), self)
        out = CompiledChat(prompt=self)
        for message in self.template:
            if message.get("type") == "placeholder":
                out.extend(self._history(str(message["name"]), variables[message["name"]]))
                continue
            filled = PromptMessage({k: v for k, v in message.items() if k != "type"})
            if isinstance(filled.get("content"), str):
                filled["content"] = fill(filled["content"])
            filled.prompt = self
            out.append(filled)
        return out

    def _history(self, name: str, value: Any) -> list[dict[str, Any]]:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or \
                not all(isinstance(m, Mapping) and "role" in m for m in value):
            raise UsageError(f"prompt {self.name!r}: placeholder {name!r} needs a list of "
                             f"messages like [{{'role': 'user', 'content': ...}}], got "
                             f"{type(value).__name__}")
        return [dict(m) for m in value]



class CompiledText(str):
    """A compiled text prompt: a plain ``str`` that remembers its ``Prompt``."""

    prompt: Prompt | None

    def __new__(cls, text: str, prompt: Prompt | None = None) -> CompiledText:
        self = super().__new__(cls, text)
        self.prompt = prompt
        return self


class CompiledChat(list[dict[str, Any]]):
    """Compiled chat messages: a plain ``list`` of dicts that remembers its ``Prompt``."""

    __slots__ = ("prompt",)

    def __init__(self, messages: Iterable[dict[str, Any]] = (), *,
                 prompt: Prompt | None = None) -> None:
        super().__init__(messages)
        self.prompt = prompt


class PromptMessage(dict[str, Any]):
    """One message of a compiled chat prompt, a plain ``dict`` that remembers its ``Prompt``,
    so the link survives ``messages=[*compiled, {"role": "user", ...}]``."""

    __slots__ = ("prompt",)
    prompt: Prompt | None


def prompt_link(*values: Any) -> Prompt | None:
    """The prompt behind a ``system`` value or a message list (the first found), else None."""
    for value in values:
        if isinstance(value, (CompiledText, CompiledChat)):
            return value.prompt
        if isinstance(value, (list, tuple)):
            for item in value:
                if isinstance(item, PromptMessage):
                    return getattr(item, "prompt", None)
    return None


# -- the registry ----------------------------------------------------------------------------
@dataclass
class _Entry:
    prompt: Prompt
    loaded_at: float
    as_variant: dict[str, Prompt] = field(default_factory=dict)

    def variant(self, label: str) -> Prompt:
        found = self.as_variant.get(label)
        if found is None:
            found = self.as_variant[label] = dataclasses.replace(self.prompt, variant=label)
        return found


class PromptRegistry:
    """Prompts by name, version or label, cached, from Langfuse with the local registry behind.

    A fresh entry is returned as it is; a stale one (older than ``cache_ttl``) is returned at
    once and refreshed by one background thread per entry. A miss loads synchronously: one
    Langfuse request bounded by ``fetch_timeout`` and no retries, then the local registry.
    After Langfuse failed to answer, misses skip it for ``retry_interval`` seconds (the
    breaker), then one of them asks again.
    """

    def __init__(self, local_dir: Path, *, langfuse: LangfuseSource | None = None,
                 cache_ttl: float = 60.0, fetch_timeout: float = 2.0,
                 experiments: Mapping[str, Experiment | Mapping[str, Any]] | None = None,
                 retry_interval: float = 10.0, packaged: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._behind = (packaged_prompts_dir(),) if packaged else ()
        self.local = LocalSource(Path(local_dir), behind=self._behind)
        self.langfuse = langfuse
        self.cache_ttl = float(cache_ttl)
        self.fetch_timeout = float(fetch_timeout)
        self.breaker = Breaker(retry_interval, clock=clock)     # Langfuse's prompts API
        self.experiments: dict[str, Experiment] = {
            name: spec if isinstance(spec, Experiment) else
            parse_experiments({name: spec})[name] for name, spec in (experiments or {}).items()}
        self._clock = clock
        self._entries: dict[_Key, _Entry] = {}
        self._lock = threading.Lock()
        self._inflight: set[_Key] = set()
        self._warned: set[str] = set()
        reset_in_child(self, PromptRegistry._after_fork)

    def _after_fork(self) -> None:
        """In a forked child the refresh threads in flight are gone: their keys may refresh
        again (and the lock may have been held by one)."""
        self._lock = threading.Lock()
        self._inflight = set()
        self.breaker = Breaker(self.breaker.probe_s, clock=self._clock)

    @property
    def retry_interval(self) -> float:
        """Seconds Langfuse is skipped after it failed to answer (then one probe asks)."""
        return self.breaker.probe_s

    def __repr__(self) -> str:
        return (f"PromptRegistry(local={str(self.local.directory)!r}, langfuse="
                f"{self.langfuse.base_url if self.langfuse else None!r}, "
                f"cache_ttl={self.cache_ttl}, experiments={sorted(self.experiments)!r})")

    @property
    def directory(self) -> Path:
        """The project's prompt directory (settable; the cache is cleared). The packaged
        prompts stay behind it."""
        return self.local.directory

    @directory.setter
    def directory(self, value: Path) -> None:
        self.local = LocalSource(Path(value), behind=self._behind)
        self.clear()

    def get(self, name: str, *, version: int | str | None = None, label: str | None = None,
            sticky_key: str | None = None) -> Prompt:
        """One prompt version: ``version`` (a number), else ``label``, else ``production``.

        ``version`` may also be a label name. With no version or label, or ``"latest"``, a
        prompt under an A/B experiment gets the variant of ``sticky_key`` (default: the user or
        session of the current ``llm.trace(...)``, else random); ``Prompt.variant`` names it.
        """
        key, variant = self._select(name, version, label, sticky_key)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._load(key)
        elif self._clock() - entry.loaded_at >= self.cache_ttl:
            self._refresh_later(key)
        return entry.prompt if variant is None else entry.variant(variant)

    def prefetch(self, names: Iterable[str]) -> None:
        """Load these prompts (every variant of an experiment) in the background."""
        for name in names:
            experiment = self.experiments.get(name)
            labels = experiment.labels if experiment else ("production",)
            for label in labels:
                key: _Key = (name, "label", label)
                if key not in self._entries:
                    self._refresh_later(key)

    def clear(self) -> None:
        """Forget every cached prompt (the next get of each loads it again)."""
        with self._lock:
            self._entries.clear()
            self._warned.clear()
        self.breaker.succeeded()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no background load runs (tests, benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._inflight:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    # -- selection -----------------------------------------------------------------------------
    def _select(self, name: str, version: int | str | None, label: str | None,
                sticky_key: str | None) -> tuple[_Key, str | None]:
        if not isinstance(name, str) or not name:
            raise UsageError(f"a prompt name must be a non-empty string, not {name!r}")
        if version is not None and label is not None:
            raise UsageError(f"prompt {name!r}: give version= or label=, not both")
        if isinstance(version, str):
            if version.isdigit():
                version = int(version)
            elif version != "latest" or name not in self.experiments:
                version, label = None, version
            else:
                version = None
        if isinstance(version, bool) or version is not None and not isinstance(version, int):
            raise UsageError(f"prompt {name!r}: version must be a number or a label name, "
                             f"not {version!r}")
        if version is not None:
            return (name, "version", version), None
        if label is not None and not isinstance(label, str):
            raise UsageError(f"prompt {name!r}: label must be a string, not {label!r}")
        if label is not None:
            return (name, "label", label), None
        experiment = self.experiments.get(name)
        if experiment is None:
            return (name, "label", "production"), None
        if sticky_key is None:
            scope = current_scope()
            sticky_key = getattr(scope, experiment.sticky_by, None) if scope else None
        variant = experiment.assign(None if sticky_key is None else str(sticky_key))
        return (name, "label", variant), variant

    # -- loading -------------------------------------------------------------------------------
    def _load(self, key: _Key) -> _Entry:
        prompt, _ = self._resolve(key)
        entry = _Entry(prompt, self._clock())
        self._entries[key] = entry
        return entry

    def _resolve(self, key: _Key) -> tuple[Prompt, str | None]:
        """The prompt, and why it is not Langfuse's: None, "missing" or "unreachable"."""
        name, kind, value = key
        version = value if isinstance(value, int) else None
        label = value if isinstance(value, str) else None
        why, problem = None, ""
        if self.langfuse is not None:
            if not self.breaker.admit():
                why, problem = "unreachable", "Langfuse did not answer moments ago"
            else:
                try:
                    record = self.langfuse.fetch(name, version=version, label=label,
                                                 timeout=self.fetch_timeout)
                except PromptMissing as exc:
                    self.breaker.succeeded()
                    why, problem = "missing", str(exc)
                except SourceUnreachable as exc:
                    self.breaker.failed()
                    why, problem = "unreachable", str(exc)
                except BaseException:       # neither answered nor away: another may ask
                    self.breaker.abandoned()
                    raise
                else:
                    self.breaker.succeeded()
                    self._warned.discard(name)
                    return Prompt.from_record(record, "langfuse", self.langfuse.base_url), None
        try:
            record = self.local.get(name, version=version, label=label)
        except PromptMissing as exc:
            raise UsageError(f"{problem}; and {exc}" if problem else str(exc)) from None
        found = self.local.file_of(name)
        location = None if found is None else str(found)
        if why is not None and name not in self._warned:
            self._warned.add(name)
            log.warning("llm-adapter: prompt %r comes from the local registry (%s): %s",
                        name, location, problem)
        return Prompt.from_record(record, "local" if why is None else "fallback", location), why

    def _refresh_later(self, key: _Key) -> None:
        with self._lock:
            if key in self._inflight:
                return
            self._inflight.add(key)
        try:
            threading.Thread(target=self._refresh, args=(key,), daemon=True,
                             name=f"llm-adapter-prompt {key[0]}").start()
        except RuntimeError:         # threads cannot start while the interpreter exits
            with self._lock:
                self._inflight.discard(key)

    def _refresh(self, key: _Key) -> None:
        """Reload one entry. Langfuse unreachable: its stale copy is kept (retried after
        another TTL); Langfuse without it (404): the local copy replaces it."""
        try:
            current = self._entries.get(key)
            try:
                prompt, why = self._resolve(key)
            except UsageError as exc:
                self._entries.pop(key, None)
                log.warning("llm-adapter: prompt %s %s=%s is gone: %s", key[0], key[1], key[2],
                            exc)
                return
            except ConfigError as exc:       # a broken edit of the file: keep the good copy
                log.warning("llm-adapter: prompt %s not reloaded, the cached copy is still "
                            "served: %s", key[0], exc)
                if current is not None:
                    self._entries[key] = _Entry(current.prompt, self._clock())
                return
            if why == "unreachable" and current is not None and \
                    current.prompt.source == "langfuse":
                prompt = current.prompt
            self._entries[key] = _Entry(prompt, self._clock())
        except Exception:  # a bug here must not kill silently: log it, keep serving the cache
            log.exception("llm-adapter: refreshing prompt %s failed; the cached copy is "
                          "still served", key[0])
        finally:
            with self._lock:
                self._inflight.discard(key)


LocalRegistry = PromptRegistry        # the name before build_registry: LocalRegistry(directory)


# -- from the config -------------------------------------------------------------------------
def build_registry(config: Config, *, enable_langfuse: bool, local_dir: Path | None = None,
                   prefetch: bool = True) -> PromptRegistry:
    """The registry a config describes (``prompts:``, the profile's ``prompts:`` over it).

    The project's directory is ``local_dir`` (``prompts_dir=``), else ``$LLM_ADAPTER_PROMPTS``,
    else ``prompts.dir``, else ``prompts/`` beside the config, else ``./prompts``; the packaged
    prompts are searched after it.

    Langfuse is used when ``enable_langfuse`` and ``LANGFUSE_PUBLIC_KEY``/``_SECRET_KEY`` are
    set. With ``prefetch``, the prompts listed under ``prompts.prefetch`` start loading now.
    """
    settings = config.settings.prompts      # checked when the config was loaded
    credentials = langfuse_credentials() if enable_langfuse else None
    langfuse = None if credentials is None else \
        LangfuseSource(credentials, timeout=settings.fetch_timeout)
    registry = PromptRegistry(
        local_dir or _directory(config, settings.dir), langfuse=langfuse,
        cache_ttl=settings.cache_ttl, fetch_timeout=settings.fetch_timeout,
        experiments=experiments_of(settings.experiments))
    if prefetch and settings.prefetch:
        registry.prefetch(list(settings.prefetch))
    return registry


def _directory(config: Config, configured: str | None) -> Path:
    """The project's prompt directory (the packaged prompts are searched after it):
    ``$LLM_ADAPTER_PROMPTS`` (the environment's, else the one ``.env`` gave), else
    ``prompts.dir``, else ``prompts/`` beside the config's ``config/`` directory, else
    ``./prompts`` (which need not exist)."""
    chosen = os.environ.get(PROMPTS_ENV_VAR) or config.prompts_dir or configured
    if chosen:
        return Path(chosen).expanduser()
    if config.path is not None and not config.packaged:
        beside = config.path.resolve().parent.parent / "prompts"
        if beside.is_dir():
            return beside
    return Path.cwd() / "prompts"
