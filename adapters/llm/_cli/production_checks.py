"""``llm-adapter doctor --production``: the production checklist, item by item, with fixes.

Each check says pass or fail and, when it fails, what to do. Network checks touch only what
the config names (Langfuse, Redis, the webhook host is not called) and time out in seconds.
"""

from __future__ import annotations

import os
from typing import Any

from .._config.loader import Config
from ..errors import BackendUnavailable, ConfigError

__all__ = ["production_checks"]


def _check(name: str, ok: bool, detail: str, fix: str = "") -> dict[str, Any]:
    return {"check": name, "ok": ok, "level": "ok" if ok else "fail", "detail": detail,
            "fix": fix}


def production_checks(config: Config) -> list[dict[str, Any]]:
    """The checks beyond keys and pings: Langfuse, prompts, limits, cache, alerts, masking."""
    checks = [_langfuse(config)]
    checks.extend(_prompts(config))
    checks.append(_limits(config))
    checks.append(_cache(config))
    checks.append(_alerts(config))
    checks.append(_masking(config))
    checks.append(_pseudonym_key(config))
    return checks


def _langfuse(config: Config) -> dict[str, Any]:
    from .._observability.tracing import langfuse_credentials

    name = "Langfuse keys valid"
    if not config.profile.langfuse.enabled:
        return _check(name, False, f"Langfuse is disabled in the {config.environment} profile",
                      f"set environments.{config.environment}.langfuse.enabled: true")
    creds = langfuse_credentials()
    if creds is None:
        return _check(name, False, "LANGFUSE_PUBLIC_KEY / LANGFUSE_SECRET_KEY are not set",
                      "export both (and LANGFUSE_BASE_URL for a self-hosted Langfuse)")
    import httpx

    try:
        response = httpx.get(f"{creds.base_url}/api/public/projects", timeout=5,
                             auth=(creds.public_key, creds.secret_key))
    except httpx.HTTPError as exc:
        return _check(name, False, f"{creds.base_url} unreachable: {type(exc).__name__}",
                      "check LANGFUSE_BASE_URL and the network path to it")
    if response.status_code == 401:
        return _check(name, False, f"{creds.base_url} refused the keys (401)",
                      "copy the project's keys again from Langfuse settings")
    ok = response.status_code == 200 and bool(response.json().get("data"))
    return _check(name, ok, f"{creds.base_url}: HTTP {response.status_code}",
                  "check the keys belong to a project on this Langfuse")


def _prompts(config: Config) -> list[dict[str, Any]]:
    """Each declared prompt in Langfuse, every A/B variant of it: one check per label, so the
    report is the same whichever variant a random draw would pick."""
    from .._prompts.registry import build_registry

    wanted = list(config.settings.prompts.prefetch)
    if not wanted:
        return [_check("prompts declared", False, "no prompts listed in prompts.prefetch",
                       "list the prompts the code uses under prompts.prefetch")]
    registry = build_registry(config, enable_langfuse=True, prefetch=False)
    out = []
    for name in wanted:
        experiment = registry.experiments.get(name)
        for label in experiment.labels if experiment else ("production",):
            shown = name if experiment is None else f"{name} [{label}]"
            try:
                prompt = registry.get(name, label=label)
            except Exception as exc:  # each prompt is one check: its failure is the detail
                out.append(_check(f"prompt {shown}", False, str(exc),
                                  "create it in prompts/ and `llm-adapter prompts push`"))
                continue
            out.append(_check(f"prompt {shown} in Langfuse", prompt.source == "langfuse",
                              f"v{prompt.version} from {prompt.source}",
                              f"llm-adapter prompts push {name}"))
    return out


def _limits(config: Config) -> dict[str, Any]:
    rs = config.router_settings
    per_deployment = [d.id for d in config.deployments
                      if d.litellm_params.get("rpm") or d.litellm_params.get("tpm")]
    ok = bool(rs.rpm or rs.tpm or per_deployment)
    detail = f"rpm {rs.rpm}, tpm {rs.tpm}" + (f"; per deployment: {', '.join(per_deployment)}"
                                                if per_deployment else "")
    return _check("rate limits set", ok, detail,
                  "set router_settings.rpm / tpm (the providers' limits for your account)")


def _cache(config: Config) -> dict[str, Any]:
    settings = config.router_settings.cache
    if not settings:
        return _check("cache reachable", False, "no response cache configured",
                      "set router_settings.cache: {type: redis, ttl: 3600}")
    if settings.get("type") != "redis":
        return _check("cache reachable", True, f"{settings.get('type')} cache (per process)")
    import redis

    from .._traffic.redis_link import RedisLink
    from .._traffic.cache import _redis_url

    url = config.router_settings.redis_url or _redis_url(settings)
    link = RedisLink(url, timeout=2.0)      # the client the cache uses, with a longer timeout
    fix = "start Redis or set REDIS_URL to a reachable one"
    try:
        link.ping()
    except BackendUnavailable as exc:
        return _check("cache reachable", False, str(exc), fix)
    except redis.RedisError as exc:     # it answered, refusing (a password, a replica)
        return _check("cache reachable", False, f"Redis at {_without_password(url)}: {exc}", fix)
    finally:
        link.close()
    return _check("cache reachable", True, f"Redis at {_without_password(url)}")


def _alerts(config: Config) -> dict[str, Any]:
    alerts = config.settings.alerts
    rules = alerts.rules if alerts is not None else ()
    return _check("alerts configured", bool(rules), f"{len(rules)} rule(s)",
                  "add alerts.rules (error rate, latency, daily cost) and a webhook")


def _masking(config: Config) -> dict[str, Any]:
    configured = config.settings.masking.enabled
    enabled = configured if configured is not None else config.environment == "production"
    return _check("patient data masked", bool(enabled),
                  "on" if enabled else "off: prompts reach Langfuse unmasked",
                  "set masking.enabled: true")


def _pseudonym_key(config: Config) -> dict[str, Any]:
    from .._observability.pseudonyms import ENV_VAR, shared_key

    configured = config.settings.masking.pseudonym_key
    name = "pseudonym key shared"
    try:
        key = shared_key(configured, env=os.environ, source=None)
    except ConfigError as exc:
        return _check(name, False, exc.problem, exc.fix or "")
    if key is not None:
        return _check(name, True, "masking.pseudonym_key" if configured
                      else f"{ENV_VAR} is set")
    return _check(name, False, "no key: each host pseudonymises identifiers with its own, so "
                  "Langfuse splits users and sessions served by several hosts",
                  f"set {ENV_VAR} to one secret shared by every host "
                  "(python -c 'import secrets; print(secrets.token_hex(32))')")


def _without_password(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
