"""``llm-adapter doctor``: is this config ready to serve calls? Each check says how to fix it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .config import Config, Deployment

__all__ = ["run_checks"]


def _check(name: str, ok: bool, detail: str, fix: str = "") -> dict[str, Any]:
    return {"check": name, "ok": ok, "detail": detail, "fix": fix}


def run_checks(config: Config, *, ping: bool = False) -> list[dict[str, Any]]:
    checks = [_check("config", True, f"{config.path or 'built-in'} (environment "
                                     f"{config.environment})")]
    checks.append(_check("default model", True, config.default_model))
    for d in config.deployments:
        checks.append(_key_check(d, simulated=config.profile.simulated))
    chain = dict(config.fallbacks).get(config.default_model, ())
    if config.profile.fallbacks_enabled:
        checks.append(_check(
            "fallbacks", bool(chain),
            f"{config.default_model} → {' → '.join(chain)}" if chain else
            f"{config.default_model} has no fallback: an outage of its provider fails every call",
            "add a `fallbacks:` chain starting with the default model"))
    hedging = _hedging_check(config)
    if hedging is not None:
        checks.append(hedging)
    if ping:
        checks.extend(asyncio.run(_ping_all(config)))
    return checks


def _hedging_check(config: Config) -> dict[str, Any] | None:
    """``router_settings.hedging`` is read when the first call builds the router: a mistake in
    it is worth finding here rather than there."""
    from .errors import ConfigError
    from .hedging import HedgePolicy

    if "hedging" not in config.router_settings.extra:
        return None
    try:
        policy = HedgePolicy.from_config(config)
    except ConfigError as exc:
        return _check("hedging", False, str(exc), "edit router_settings.hedging")
    if policy is None:
        return _check("hedging", True, "off")
    when = f"{policy.after_ms:g} ms" if policy.after_ms is not None else \
        f"the group's p{policy.after_percentile:g} ({policy.default_after_ms:g} ms until " \
        f"{policy.min_samples} answers are seen)"
    return _check("hedging", True, f"after {when}, at most {policy.max_extra} extra per call")


def _key_check(d: Deployment, *, simulated: bool) -> dict[str, Any]:
    name = f"key for {d.id}"
    if simulated:
        return _check(name, True, "served by the simulator, no key needed")
    if d.key_env is None:
        return _check(name, True, "no key needed" if d.key_present else "literal key in config")
    if d.key_present:
        return _check(name, True, f"{d.key_env} is set")
    return _check(name, False, f"{d.key_env} is not set",
                  f"export {d.key_env}=... or add it to .env")


async def _ping_all(config: Config) -> list[dict[str, Any]]:
    from .litellm_adapter import LiteLLMAdapter

    llm = LiteLLMAdapter(config=config)
    gateway = llm.gateway
    entries = {e["model_info"]["id"]: e for e in gateway.router.model_list}
    return list(await asyncio.gather(*(_ping(d.id, entries[d.id]) for d in config.deployments
                                       if d.id in entries)))


async def _ping(dep_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    from ._litellm import litellm
    from ._provider_errors import classify
    from ._redact import redact

    params = dict(entry["litellm_params"])
    started = time.monotonic()
    try:
        await litellm().acompletion(messages=[{"role": "user", "content": "ping"}], max_tokens=1,
                                    timeout=15, num_retries=0, **params)
    except Exception as exc:  # every failure is reported as a failed check
        secrets = [str(params.get("api_key") or "")]
        failure = classify(exc, secrets)
        return _check(f"ping {dep_id}", False,
                      redact(f"{failure.kind} {failure.status or ''}: {failure.message}", secrets),
                      "see the detail; `llm-adapter models` shows keys and bases")
    took = (time.monotonic() - started) * 1000
    return _check(f"ping {dep_id}", True, f"answered in {took:.0f} ms")
