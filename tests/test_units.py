"""The one definition of each small unit the package shares: percentile, duration, token
estimate, breaker. Each is used by several features, so its edge cases are pinned here once."""

from __future__ import annotations

import statistics

import pytest

from adapters.llm._breaker import Breaker
from adapters.llm._durations import parse_duration
from adapters.llm._percentiles import percentile
from adapters.llm._routing.tokens import (CHARS_PER_TOKEN, DEFAULT_OUTPUT_TOKENS, answer_tokens,
                                  call_tokens, prompt_tokens)


# -- percentile ---------------------------------------------------------------------------------
def test_percentile_takes_the_sample_at_rank_p_of_n_plus_one() -> None:
    ordered = [float(n) for n in range(1, 41)]
    assert percentile(ordered, 95) == 39.0          # ceil(0.95 × 41) = 39, not nearest rank 38
    assert percentile(ordered, 50) == 21.0          # ceil(0.5 × 41) = 21
    assert percentile(ordered, 0) == 1.0            # kept within the samples
    assert percentile(ordered, 100) == 40.0
    assert percentile([3.0, 7.0], 99) == 7.0        # never beyond the largest
    assert percentile([7.0], 1) == 7.0
    assert percentile([], 95) is None


def test_percentile_is_where_statistics_quantiles_puts_it_rounded_up_to_a_sample() -> None:
    ordered = sorted(float((n * 37) % 101) for n in range(60))
    for p in (10, 25, 50, 75, 90, 95):
        exact = statistics.quantiles(ordered, n=100, method="exclusive")[p - 1]
        found = percentile(ordered, p)
        assert found in ordered and found >= exact
        assert found == min(v for v in ordered if v >= exact)


@pytest.mark.parametrize("p", [-1, 101, float("nan"), "95", None, True])
def test_percentile_refuses_what_is_no_percentile(p: object) -> None:
    with pytest.raises(ValueError, match=r"a percentile is a number from 0 to 100 \(95 for p95\)"):
        percentile([1.0, 2.0], p)  # type: ignore[arg-type]


# -- durations ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, seconds", [
    ("500ms", 0.5), ("30s", 30), ("15m", 900), ("15min", 900), ("1.5h", 5400), ("24h", 86400),
    ("7d", 604800), ("2w", 1209600), (" 2 W ", 1209600), ("0s", 0), (".5s", 0.5)])
def test_one_duration_grammar(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "15", "m", "15 minutes", "-5m", "1y", "fortnight", "1h30m",
                                  "7d ago", "1e3s"])
def test_a_bad_duration_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == (f"{text!r} is not a duration: write a number and a unit (ms, s, "
                                 "m, h, d or w), such as 500ms, 30s, 15m, 24h, 7d or 2w")


def test_a_duration_that_is_not_text_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="15 is not a duration"):
        parse_duration(15)  # type: ignore[arg-type]


# -- token estimate -----------------------------------------------------------------------------
def test_the_prompt_is_counted_by_litellms_tokenizer() -> None:
    messages = [{"role": "user", "content": "Hello there, how are you today? " * 20}]
    counted = prompt_tokens("openai/gpt-4o", messages)
    assert 100 < counted < 300
    assert call_tokens("openai/gpt-4o", messages, 50) == counted + 50
    assert call_tokens("openai/gpt-4o", messages, None) == counted + DEFAULT_OUTPUT_TOKENS


def test_a_prompt_the_tokenizer_cannot_read_counts_its_text() -> None:
    text = "x" * 400
    # An object as a content part: litellm's counter raises; the estimate goes on from the text.
    messages = [{"role": "user", "content": [{"type": "text", "text": text},
                                             {"type": "mystery", "payload": object()}]}]
    assert prompt_tokens("openai/gpt-4o", messages) == 400 // CHARS_PER_TOKEN


def test_the_answer_counts_max_tokens_as_given() -> None:
    assert answer_tokens(None) == DEFAULT_OUTPUT_TOKENS == 256
    assert answer_tokens(0) == 0
    assert answer_tokens(1000) == 1000


# -- breaker ------------------------------------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_backing_off_breaker_doubles_its_wait_up_to_the_longest() -> None:
    clock = _Clock()
    breaker = Breaker(0.5, max_probe_s=3.0, clock=clock)
    waits = []
    for _ in range(5):
        breaker.failed()
        waits.append(breaker.retry_in())
        assert not breaker.admit()
        clock.now += breaker.retry_in()
        assert breaker.admit(), "one probe once the wait is over"
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert (breaker.failures, breaker.down_for()) == (5, pytest.approx(9.5))
    breaker.succeeded()
    assert breaker.closed and breaker.retry_in() == 0 and breaker.down_for() == 0


def test_a_servers_retry_after_lengthens_the_wait_and_jitter_spreads_it() -> None:
    clock = _Clock()
    breaker = Breaker(1.0, max_probe_s=10.0, jitter=0.2, clock=clock)
    breaker.failed(retry_after=120.0)
    assert breaker.retry_in() == 120.0
    seen = set()
    for _ in range(50):
        breaker.succeeded()
        breaker.failed()
        assert 0.8 <= breaker.retry_in() <= 1.2
        seen.add(breaker.retry_in())
    assert len(seen) > 1


def test_an_abandoned_probe_lets_another_caller_probe() -> None:
    clock = _Clock()
    breaker = Breaker(1.0, clock=clock)
    breaker.failed()
    clock.now += 1.0
    assert breaker.admit() and not breaker.admit()
    breaker.abandoned()
    assert breaker.admit(), "the next caller probes"
    assert not breaker.closed


@pytest.mark.parametrize("args", [{"probe_s": -1}, {"max_probe_s": -1}, {"jitter": 1.0},
                                  {"probe_s": float("nan")}])
def test_a_breaker_refuses_settings_it_cannot_keep(args: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="a breaker needs probe_s >= 0"):
        Breaker(**args)


# -- a callable named in the config -------------------------------------------------------------
def test_a_masking_function_is_found_by_module_and_attribute_path() -> None:
    import os.path

    from adapters.llm.errors import ConfigError
    from adapters.llm._observability.masking import _load_function

    assert _load_function("os.path:basename", "c.yaml") is os.path.basename
    assert _load_function("os:path.basename", "c.yaml") is os.path.basename   # a dotted path
    with pytest.raises(ConfigError, match=r"cannot load 'os.path:no_such'.*importable"):
        _load_function("os.path:no_such", "c.yaml")
    with pytest.raises(ConfigError, match=r"cannot load 'no_such_module_x:f'"):
        _load_function("no_such_module_x:f", "c.yaml")
    with pytest.raises(ConfigError, match=r"'os.path:sep' is not callable"):
        _load_function("os.path:sep", "c.yaml")
    with pytest.raises(ConfigError, match=r"function must be 'module:callable', not 'basename'"):
        _load_function("basename", "c.yaml")


# -- a time bound on awaits -----------------------------------------------------------------------
def test_a_bound_turns_only_its_own_cancellation_into_a_timeout() -> None:
    import asyncio

    from adapters.llm._routing.bounds import Bound

    async def bounded(seconds: float | None, wait: float) -> Bound:
        bound = Bound(seconds)
        with bound:
            await asyncio.sleep(wait)
        return bound

    async def scenario() -> None:
        assert not (await bounded(1.0, 0.0)).expired()          # in time: nothing happens
        assert not (await bounded(None, 0.01)).expired()        # no bound at all
        with pytest.raises(TimeoutError):
            await bounded(0.01, 10)
        task = asyncio.ensure_future(bounded(10, 10))           # the caller's own cancel
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(0.01) as outer:              # an outer bound, due first
            with pytest.raises(asyncio.CancelledError):
                await bounded(10, 10)
        assert outer.expired()
        bound = Bound(0.01)                                     # caught inside: not re-raised
        with bound:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                pass
        assert bound.expired() and asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]

    asyncio.run(scenario())


# -- ids and litellm's answers -----------------------------------------------------------------
@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="fork() is POSIX")
def test_ids_made_after_a_fork_differ_between_parent_and_child() -> None:
    """Trace and call ids come from ``random``'s generator (no system call per id); a forked
    worker (gunicorn --preload, Celery prefork) must not make its parent's ids again."""
    import os

    from adapters.llm.litellm_adapter import _new_id

    _new_id()                                   # the parent's generator in use before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                # the child: its ids, then out without cleanup
        os.write(write, " ".join(_new_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    theirs = set(os.read(read, 4096).decode().split())
    os.close(read)
    os.waitpid(pid, 0)
    ours = {_new_id() for _ in range(3)}
    assert len(theirs) == 3 and all(len(i) == 32 and int(i, 16) for i in theirs | ours)
    assert not theirs & ours


def test_fields_of_litellm_answers_are_read_from_fields_extras_and_properties() -> None:
    """``_get`` reads a pydantic model's field, its extras and a property of its class, and
    gives None for a missing field without pydantic's AttributeError."""
    from pydantic import BaseModel, ConfigDict

    from adapters.llm._routing.responses import _get, usage_of

    class Answer(BaseModel):
        model_config = ConfigDict(extra="allow")
        prompt_tokens: int = 0
        prompt_tokens_details: dict[str, int] | None = None

        @property
        def doubled(self) -> int:
            return self.prompt_tokens * 2

    answer = Answer(prompt_tokens=100, completion_tokens=7, cache_read_input_tokens=40,
                    prompt_tokens_details=None)
    assert _get(answer, "prompt_tokens") == 100                 # a field
    assert _get(answer, "completion_tokens") == 7               # an extra
    assert _get(answer, "doubled") == 200                       # a property of the class
    assert _get(answer, "cache_creation_input_tokens") is None  # nowhere
    assert _get({"a": 1}, "a") == 1 and _get(None, "a") is None
    usage = usage_of(answer)
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens) == (60, 7, 40)
