"""Scenario data model: how a simulated provider behaves, and the built-in behaviours.

Scenarios are plain, frozen values so they can be shared, copied into a running
server, sent over the control endpoint as JSON and compared in tests. Run-time
changes replace a whole scenario; they never mutate one in place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal, get_args

__all__ = [
    "BUILTIN_SCENARIOS", "DEFAULT_SCENARIO", "KNOWN_MODELS", "Fault", "FaultKind", "Scenario",
]

FaultKind = Literal["status", "stall", "reset", "malformed", "cut", "stream_error"]
FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))


def _number(owner: str, key: str, value: object, *, minimum: float = 0.0) -> float:
    """Return ``value`` as a float, or raise a ValueError that names ``owner.key``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{owner}.{key} must be a number, got {value!r}")
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{owner}.{key} must be a finite number >= {minimum:g}, got {value!r}")
    return float(value)


def _integer(owner: str, key: str, value: object, *, minimum: int = 0) -> int:
    """Return ``value`` as an int, or raise a ValueError that names ``owner.key``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}.{key} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}.{key} must be >= {minimum}, got {value!r}")
    return value


def _text(owner: str, key: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{owner}.{key} must be a string or null, got {value!r}")


def _check_keys(owner: str, data: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """Reject unknown keys: a typo in a fault spec should fail loudly, not be ignored."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{owner} must be a JSON object, got {type(data).__name__}")
    for key in data:
        if key not in allowed:
            raise ValueError(f"{owner}: unknown key {key!r} (allowed: {', '.join(allowed)})")


@dataclass(frozen=True)
class Fault:
    """One injected failure; faults of a scenario are tried in order, the first that fires applies.

    ``status`` answers an error in the provider's own format (its text ``message``, else the
    status phrase), ``stall`` sleeps ``stall_s`` before answering, ``reset`` drops the TCP
    connection, ``malformed`` answers 200 with invalid JSON, ``cut`` closes the connection
    mid-body and ``stream_error`` sends ``after_chunks`` stream frames, then the provider's
    in-stream error event (a non-streaming call gets it as a ``status`` answer).
    ``error_type`` and ``error_code`` replace the provider's usual ones for the status
    (e.g. ``insufficient_quota``, ``context_length_exceeded``, ``overloaded_error``).
    """

    kind: FaultKind
    rate: float = 1.0
    status: int = 503
    retry_after: float | None = None
    stall_s: float = 30.0
    after_chunks: int = 2
    first_n: int | None = None
    message: str | None = None
    error_type: str | None = None
    error_code: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"Fault.kind must be one of {sorted(FAULT_KINDS)}, got {self.kind!r}")
        rate = _number("Fault", "rate", self.rate)
        if rate > 1.0:
            raise ValueError(f"Fault.rate must be between 0 and 1, got {self.rate!r}")
        status = _integer("Fault", "status", self.status, minimum=100)
        if status > 599:
            raise ValueError(f"Fault.status must be an HTTP status (100-599), got {status}")
        if self.retry_after is not None:
            _number("Fault", "retry_after", self.retry_after)
        _number("Fault", "stall_s", self.stall_s)
        _integer("Fault", "after_chunks", self.after_chunks)
        if self.first_n is not None:
            _integer("Fault", "first_n", self.first_n)
        _text("Fault", "message", self.message)
        _text("Fault", "error_type", self.error_type)
        _text("Fault", "error_code", self.error_code)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (the inverse of :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build a fault from JSON, naming the offending key on any error."""
        _check_keys("Fault", data, [f.name for f in fields(cls)])
        if "kind" not in data:
            raise ValueError("Fault: missing required key 'kind'")
        return cls(**dict(data))


@dataclass(frozen=True)
class Scenario:
    """How one simulated provider endpoint behaves: timing, content and faults.

    ``faults`` accepts any sequence and is stored as a tuple so a scenario stays an
    immutable value (the built-ins are shared by every server in the process).
    ``latency_sigma`` makes the latency log-normal with ``latency_ms`` as its median, the
    long-tailed shape real LLM latencies have (0.4 puts p99 near 2.5 × the median);
    ``jitter_ms`` adds uniform noise on top.

    ``validate`` answers invalid requests the way the provider does (400/404 in its
    shape); turn it off to accept anything parseable. ``models`` (glob patterns such
    as ``"gpt-*"``) restricts the model names served, others get the provider's 404;
    ``None`` serves any name. ``tool_calls`` is how many tool calls the model makes per
    turn when it calls tools (parallel calls; 1 when the caller disables them).
    ``rate_limit_requests`` / ``rate_limit_tokens`` per ``rate_limit_window_s`` are
    enforced with a 429 when set; the rate-limit headers count down either way.
    A prompt prefix of at least ``prompt_cache_min_tokens`` is cached (read on reuse).
    """

    latency_ms: float = 0.0
    latency_sigma: float = 0.0
    jitter_ms: float = 0.0
    chunk_interval_ms: float = 0.0
    chunk_words: int = 1
    content: str | None = None
    max_input_tokens: int | None = None
    faults: Sequence[Fault] = field(default_factory=tuple)
    seed: int | None = None
    validate: bool = True
    models: Sequence[str] | None = None
    tool_calls: int = 1
    rate_limit_requests: int | None = None
    rate_limit_tokens: int | None = None
    rate_limit_window_s: float = 60.0
    prompt_cache_min_tokens: int = 1024

    def __post_init__(self) -> None:
        _number("Scenario", "latency_ms", self.latency_ms)
        _number("Scenario", "latency_sigma", self.latency_sigma)
        _number("Scenario", "jitter_ms", self.jitter_ms)
        _number("Scenario", "chunk_interval_ms", self.chunk_interval_ms)
        _integer("Scenario", "chunk_words", self.chunk_words, minimum=1)
        if self.content is not None and not isinstance(self.content, str):
            raise ValueError(f"Scenario.content must be a string or null, got {self.content!r}")
        if self.max_input_tokens is not None:
            _integer("Scenario", "max_input_tokens", self.max_input_tokens, minimum=1)
        if self.seed is not None:
            _integer("Scenario", "seed", self.seed, minimum=-(2**63))
        if not isinstance(self.validate, bool):
            raise ValueError(f"Scenario.validate must be true or false, got {self.validate!r}")
        if self.models is not None:
            if isinstance(self.models, (str, bytes)) or not isinstance(self.models, Sequence) \
                    or not all(isinstance(m, str) for m in self.models):
                raise ValueError("Scenario.models must be a list of names or null, "
                                 f"got {self.models!r}")
            object.__setattr__(self, "models", tuple(self.models))
        _integer("Scenario", "tool_calls", self.tool_calls, minimum=1)
        for key in ("rate_limit_requests", "rate_limit_tokens"):
            if getattr(self, key) is not None:
                _integer("Scenario", key, getattr(self, key), minimum=1)
        if _number("Scenario", "rate_limit_window_s", self.rate_limit_window_s) <= 0:
            raise ValueError("Scenario.rate_limit_window_s must be > 0")
        _integer("Scenario", "prompt_cache_min_tokens", self.prompt_cache_min_tokens)
        if isinstance(self.faults, (str, bytes)) or not isinstance(self.faults, Sequence):
            raise ValueError(f"Scenario.faults must be a list of faults, got {self.faults!r}")
        for index, fault in enumerate(self.faults):
            if not isinstance(fault, Fault):
                raise ValueError(f"Scenario.faults[{index}] must be a Fault, got {fault!r}")
        object.__setattr__(self, "faults", tuple(self.faults))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (the inverse of :meth:`from_dict`)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "faults"}
        if self.models is not None:
            data["models"] = list(self.models)
        data["faults"] = [fault.to_dict() for fault in self.faults]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        """Build a scenario from JSON, naming the offending key on any error."""
        _check_keys("Scenario", data, [f.name for f in fields(cls)])
        values = dict(data)
        raw_faults = values.pop("faults", [])
        if not isinstance(raw_faults, list):
            raise ValueError(f"Scenario.faults must be a list, got {raw_faults!r}")
        faults = []
        for index, raw in enumerate(raw_faults):
            try:
                faults.append(Fault.from_dict(raw))
            except ValueError as exc:
                raise ValueError(f"Scenario.faults[{index}]: {exc}") from exc
        return cls(**values, faults=faults)


KNOWN_MODELS: tuple[str, ...] = (
    "gpt-*", "o1*", "o3*", "o4*", "chatgpt-*", "text-embedding-*", "claude-*", "gemini-*",
    "models/gemini-*", "text-embedding-004", "gemini-embedding-*", "embedding-*",
    "llama*", "mistral*", "qwen*", "phi*", "gemma*", "nomic-embed-text*", "deepseek*",
)
"""Model names the ``strict-models`` scenario serves: the vendors' families, as globs."""

DEFAULT_SCENARIO = Scenario()
"""What an unknown scenario name gets: a healthy copy of ``ok``."""

BUILTIN_SCENARIOS: Mapping[str, Scenario] = MappingProxyType(
    {
        "ok": DEFAULT_SCENARIO,
        "slow": Scenario(latency_ms=800.0),
        "down": Scenario(faults=[Fault("status", status=503)]),
        "error": Scenario(faults=[Fault("status", status=500)]),
        "rate-limited": Scenario(faults=[Fault("status", status=429, retry_after=3.0)]),
        "stall": Scenario(faults=[Fault("stall", stall_s=30.0)]),
        "reset": Scenario(faults=[Fault("reset")]),
        "malformed": Scenario(faults=[Fault("malformed")]),
        "cut": Scenario(faults=[Fault("cut", after_chunks=2)]),
        "flaky": Scenario(faults=[Fault("status", status=500, rate=0.1)], seed=7),
        "unauthorized": Scenario(faults=[Fault("status", status=401)]),
        "bad-request": Scenario(faults=[Fault("status", status=400)]),
        "lenient": Scenario(validate=False),
        "strict-models": Scenario(models=KNOWN_MODELS),
        "parallel-tools": Scenario(tool_calls=3),
        "overloaded": Scenario(faults=[Fault("status", status=529, retry_after=1.0)]),
        "no-quota": Scenario(
            faults=[Fault("status", status=429, error_type="insufficient_quota",
                          error_code="insufficient_quota",
                          message="You exceeded your current quota, please check your plan "
                                  "and billing details.")]
        ),
        "stream-error": Scenario(faults=[Fault("stream_error", status=529, after_chunks=3)]),
    }
)
"""Named behaviours every simulator starts with; any other name behaves like ``ok``."""
