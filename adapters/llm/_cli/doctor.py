"""``llm-adapter doctor``: is this config ready to serve calls? Each check says how to fix it.

It judges what the active profile uses: its default model, that group's fallback chain and
their context-window fallbacks. A group the profile never calls is reported for information
(``level: info``), not as a failure, and ``--ping`` calls only the deployments in use.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .._config.loader import Config, Deployment

__all__ = ["run_checks", "used_groups"]


def _check(name: str, ok: bool, detail: str, fix: str = "", *,
           level: str | None = None) -> dict[str, Any]:
    return {"check": name, "ok": ok, "level": level or ("ok" if ok else "fail"),
            "detail": detail, "fix": fix}


def _info(name: str, detail: str) -> dict[str, Any]:
    return _check(name, True, detail, level="info")


def used_groups(config: Config) -> list[str]:
    """The groups the active profile calls, in order: the default model, its fallback chain
    (when the profile enables fallbacks), then their context-window fallbacks."""
    used = [config.default_model]
    if config.profile.fallbacks_enabled:
        used += dict(config.fallbacks).get(config.default_model, ())
    windows = dict(config.context_window_fallbacks)
    used += [g for group in list(used) for g in windows.get(group, ())]
    return list(dict.fromkeys(g for g in used if g in config.groups()))


def run_checks(config: Config, *, ping: bool = False,
               production: bool = False) -> list[dict[str, Any]]:
    """Every check, in order. ``production`` (or the production profile) makes a default
    model without a fallback a failure; elsewhere that is a choice and reported as such."""
    used = used_groups(config)
    checks = [_check("config", True, f"{config.path or 'built-in'} (environment "
                                     f"{config.environment})")]
    checks.append(_check("default model", True, f"{config.default_model}; the "
                                                f"{config.environment} profile uses "
                                                f"{', '.join(used)}"))
    for d in config.deployments:
        checks.append(_key_check(d, simulated=config.profile.simulated,
                                 used=d.model_name in used, environment=config.environment))
    checks.append(_fallback_check(config, strict=production or
                                  config.environment == "production"))
    hedging = _hedging_check(config)
    if hedging is not None:
        checks.append(hedging)
    if ping:
        checks.extend(asyncio.run(_ping_all(config, used)))
    return checks


def _fallback_check(config: Config, *, strict: bool) -> dict[str, Any]:
    default = config.default_model
    chain = dict(config.fallbacks).get(default, ())
    if not config.profile.fallbacks_enabled:
        detail = f"off in the {config.environment} profile (fallbacks_enabled: false)"
        if not strict:
            return _info("fallbacks", detail)
        return _check("fallbacks", False, detail + ": an outage of one provider fails every call",
                      f"set environments.{config.environment}.fallbacks_enabled: true")
    if chain:
        return _check("fallbacks", True, f"{default} → {' → '.join(chain)}")
    replicas = len(config.group(default))
    detail = f"{default} has no fallback" + (f" ({replicas} deployments balance it)"
                                             if replicas > 1 else "")
    if not strict:
        return _info("fallbacks", f"{detail}; fine for {config.environment}, needed in "
                                  f"production")
    return _check("fallbacks", False, f"{detail}: an outage of its provider fails every call",
                  f"add a `fallbacks:` chain starting with {default}")


def _hedging_check(config: Config) -> dict[str, Any] | None:
    """``router_settings.hedging`` is read when the first call builds the router: a mistake in
    it is worth finding here rather than there."""
    from ..errors import ConfigError
    from .._routing.hedging import HedgePolicy

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


def _key_check(d: Deployment, *, simulated: bool, used: bool,
               environment: str) -> dict[str, Any]:
    name = f"key for {d.id}"
    if simulated:
        return _check(name, True, "served by the simulator, no key needed")
    if d.key_env is None:
        return _check(name, True, "no key needed" if d.key_present else "literal key in config")
    if d.key_present:
        return _check(name, True, f"{d.key_env} is set")
    if not used:
        return _info(name, f"{d.key_env} is not set; {d.model_name} is not used by the "
                           f"{environment} profile")
    return _check(name, False, f"{d.key_env} is not set",
                  f"export {d.key_env}=... or add it to .env")


async def _ping_all(config: Config, used: list[str]) -> list[dict[str, Any]]:
    """A 1-token call to each deployment of the groups in use; one that cannot be called
    (its key is unset) is a failed ping, not a silent omission."""
    from ..litellm_adapter import LiteLLMAdapter

    llm = LiteLLMAdapter(config=config)
    gateway = llm.gateway
    entries = {e["model_info"]["id"]: e for e in gateway.router.model_list}
    wanted = [d for d in config.deployments if d.model_name in used]
    pings = await asyncio.gather(*(_ping(d.id, entries[d.id]) for d in wanted
                                   if d.id in entries))
    unset = [_check(f"ping {d.id}", False, f"not called: {d.key_env or 'its key'} is not set",
                    f"export {d.key_env}=... or add it to .env") for d in wanted
             if d.id not in entries]
    skipped = [d.id for d in config.deployments if d.model_name not in used]
    out = [*pings, *unset]
    if skipped:
        out.append(_info("ping", f"not pinged ({config.environment} profile does not use "
                                 f"them): {', '.join(skipped)}"))
    return out


async def _ping(dep_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    from .._routing.litellm import acompletion
    from .._routing.provider_errors import classify
    from .._observability.redact import redact

    params = dict(entry["litellm_params"])
    started = time.monotonic()
    try:
        await acompletion(messages=[{"role": "user", "content": "ping"}], max_tokens=1,
                          timeout=15, num_retries=0, **params)
    except Exception as exc:  # every failure is reported as a failed check
        secrets = [str(params.get("api_key") or "")]
        failure = classify(exc, secrets)
        return _check(f"ping {dep_id}", False,
                      redact(f"{failure.kind} {failure.status or ''}: {failure.message}", secrets),
                      "see the detail; `llm-adapter models` shows keys and bases")
    took = (time.monotonic() - started) * 1000
    return _check(f"ping {dep_id}", True, f"answered in {took:.0f} ms")
