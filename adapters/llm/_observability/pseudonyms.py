"""Stable pseudonyms for identifiers that hold patient data (an email as ``user_id``, an SSN in a
session id): ``email-3f9a1c2b7d4e5f60``, a keyed HMAC-SHA256 of the whole value.

The same value and key always give the same pseudonym, so per-user costs and session trees still
group; without the key nobody can test a guessed email against it. The key comes from
``masking.pseudonym_key`` (interpolated like any value), else ``LLM_ADAPTER_PSEUDONYM_KEY``, else a
random key made once per install and kept next to the local store (``pseudonym.key``, mode 0600).
The per-install key never stops a call (an error here would fail every call of a production app
that upgraded), but two hosts make different pseudonyms of one user, so Langfuse splits users and
sessions served by several hosts: production sending to Langfuse without a shared key is warned
about and failed by ``llm-adapter doctor --production``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError

__all__ = ["ENV_VAR", "KEY_FILE", "pseudonym", "pseudonym_key", "shared_key"]

log = logging.getLogger("adapters.llm")

ENV_VAR = "LLM_ADAPTER_PSEUDONYM_KEY"
KEY_FILE = "pseudonym.key"
MIN_LENGTH = 16
_DIGITS = 16                        # hex digits kept: 64 bits, no collision below billions of ids
_MAKE_ONE = "python -c 'import secrets; print(secrets.token_hex(32))'"


def pseudonym(key: bytes, kind: str, value: str) -> str:
    """``<kind>-<16 hex digits>``: what ``value`` is shown as wherever it leaves the process."""
    digest = hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return f"{kind}-{digest[:_DIGITS]}"


def shared_key(configured: object, *, env: Mapping[str, str], source: str | None) -> str | None:
    """The key every host of a deployment shares: ``masking.pseudonym_key`` or the variable."""
    if configured is not None:
        return _checked(configured, source, "masking.pseudonym_key")
    value = env.get(ENV_VAR)
    return _checked(value, source, ENV_VAR) if value else None


def pseudonym_key(configured: object, *, home: Path, warn: bool = False,
                  env: Mapping[str, str] | None = None, source: str | None = None) -> bytes:
    """The key pseudonyms are made with (see the module docstring for where it comes from);
    ``warn``: say that a per-install key splits what several hosts send to Langfuse."""
    env = os.environ if env is None else env
    key = shared_key(configured, env=env, source=source)
    if key is not None:
        return key.encode()
    if warn:
        log.warning("llm-adapter: no pseudonym key is set (%s or masking.pseudonym_key); this "
                    "host makes its own, so users and sessions served by several hosts do not "
                    "group in Langfuse. Set one shared secret on every host: %s",
                    ENV_VAR, _MAKE_ONE)
    return _install_key(home / KEY_FILE)


def _checked(value: object, source: str | None, where: str) -> str:
    if not isinstance(value, str) or len(value) < MIN_LENGTH:
        raise ConfigError(f"the pseudonym key must be a string of at least {MIN_LENGTH} "
                          f"characters", path=source if where != ENV_VAR else None, key=where,
                          fix=f"make one with {_MAKE_ONE}")
    return value


def _install_key(path: Path) -> bytes:
    """This install's key, made on first use; several processes starting at once agree on one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _read_key(path)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32))
        return _read_key(path)
    except OSError as exc:
        raise ConfigError(f"cannot keep the pseudonym key at {path}: {exc.strerror or exc}",
                          key="masking.pseudonym_key",
                          fix=f"set {ENV_VAR}, or make the directory writable "
                              f"(LLM_ADAPTER_HOME chooses it)") from None


def _read_key(path: Path) -> bytes:
    # A process that lost the race to create the file may read it before the winner wrote it.
    for _ in range(50):
        text = path.read_text().strip()
        if text:
            return text.encode()
        time.sleep(0.01)
    raise ConfigError(f"the pseudonym key file {path} is empty", key="masking.pseudonym_key",
                      fix=f"delete it (a new key is made) or set {ENV_VAR}")
