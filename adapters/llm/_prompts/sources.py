"""Where prompt versions are read and written: the local YAML registry and Langfuse's prompts API.

Both speak one record shape, Langfuse's prompt JSON (name, version, type, prompt, config,
labels, tags), so a local prompt is pushed unchanged and a Langfuse one pulled into a file
as it is. Neither caches for the calling path: ``prompts.PromptRegistry`` does (TTL,
stale-while-revalidate). Langfuse is reached through the SDK's REST client built here, not
through ``Langfuse(...)``: that one is a per-public-key singleton, and building it before the
tracing sink would make the sink silently reuse its exporter (and lose the spool).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, cast
from urllib.parse import quote


from .._config.schema import join_key, suggest
from .._process.fork import reset_in_child
from ..errors import ConfigError, UsageError

if TYPE_CHECKING:
    from .._observability.tracing import Credentials

__all__ = ["LABEL_RE", "LangfuseSource", "LocalSource", "PromptMissing", "PromptRecord",
           "SourceUnreachable", "merge_pulled", "packaged_prompts_dir", "same_content"]

LABEL_RE = re.compile(r"^[a-z0-9_\-.]+$")
_FILE_KEYS = ("name", "type", "description", "tags", "versions")
_VERSION_KEYS = ("version", "labels", "prompt", "config", "commit_message")
_T = TypeVar("_T")


class PromptRecord(TypedDict):
    """One prompt version, as Langfuse's API returns it (``latest`` included in ``labels``)."""

    name: str
    version: int
    type: str                                   # "text" | "chat"
    prompt: str | list[dict[str, Any]]
    config: dict[str, Any]
    labels: list[str]
    tags: list[str]
    commit_message: str | None


class PromptMissing(LookupError):
    """The source answered, and it has no such prompt, version or label."""


class SourceUnreachable(ConnectionError):
    """The source could not answer (network, timeout, 5xx, keys refused)."""


def same_content(a: PromptRecord, b: PromptRecord) -> bool:
    """Whether two versions would behave the same: type, template and config (not labels)."""
    return (a["type"], _normal(a["prompt"]), a["config"] or {}) == \
        (b["type"], _normal(b["prompt"]), b["config"] or {})


def _normal(template: Any) -> Any:
    if isinstance(template, list):       # Langfuse may add type: chatmessage (or null)
        return [{k: v for k, v in m.items() if not (k == "type" and v in (None, "chatmessage"))}
                for m in template]
    return template


def merge_pulled(local: list[PromptRecord], remote: list[PromptRecord]
                 ) -> tuple[list[PromptRecord], list[str]]:
    """Local versions with Langfuse's merged in: versions local lacks appended (keeping
    Langfuse's number when free), Langfuse's labels moved onto the matching local versions."""
    merged = [_copy(v) for v in local]
    changes: list[str] = []
    where: dict[int, PromptRecord] = {}
    for r in sorted(remote, key=lambda v: v["version"]):
        match = next((v for v in merged if same_content(v, r)), None)
        if match is None:
            taken = {v["version"] for v in merged}
            number = r["version"] if r["version"] not in taken else max(taken) + 1
            match = _copy(r, version=number, labels=[])
            merged.append(match)
            changes.append(f"added v{number}" + (f" (Langfuse v{r['version']})"
                                                 if number != r["version"] else ""))
        where[r["version"]] = match
    for r in remote:
        for label in r["labels"]:
            target = where[r["version"]]
            if label == "latest" or label in target["labels"]:
                continue
            for v in merged:
                if label in v["labels"]:
                    v["labels"].remove(label)
            target["labels"].append(label)
            changes.append(f"label {label} → v{target['version']}")
    return sorted(merged, key=lambda v: v["version"]), changes


def _copy(v: PromptRecord, **changes: Any) -> PromptRecord:
    return cast(PromptRecord, {**v, "labels": list(v["labels"]), **changes})


# -- the local registry ---------------------------------------------------------------------
def packaged_prompts_dir() -> Path:
    """The guide's prompts shipped inside the package (a copy of the repository's ``prompts/``),
    so an installed adapter finds them from any directory."""
    return Path(__file__).resolve().parents[1] / "data" / "prompts"


class LocalSource:
    """``<directory>/<name>.yaml``: one file per prompt holding its versions.

    ``behind`` are read-only directories searched after ``directory`` (the prompts packaged
    with the adapter), so a project's own file overrides a packaged one of the same name and a
    prompt the project lacks is still found. Writes always go to ``directory``. Files are
    re-read when they change on disk (mtime and size), so an edit under ``prompts/`` takes
    effect at the registry's next refresh, without a deploy.
    """

    def __init__(self, directory: Path, *, behind: Sequence[Path] = ()) -> None:
        self.directory = Path(directory)
        self.behind = tuple(Path(d) for d in behind if Path(d) != self.directory)
        self._lock = threading.Lock()
        self._parsed: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}

    def __repr__(self) -> str:
        behind = "".join(f", behind={str(d)!r}" for d in self.behind)
        return f"LocalSource({str(self.directory)!r}{behind})"

    def path(self, name: str) -> Path:
        """Where ``name`` is written (the project's directory, whether or not it exists yet)."""
        return self.directory / f"{name}.yaml"

    def file_of(self, name: str) -> Path | None:
        """The file ``name`` is read from: the project's, else a packaged one; None if absent."""
        for directory in (self.directory, *self.behind):
            candidate = directory / f"{name}.yaml"
            if candidate.is_file():
                return candidate
        return None

    def names(self) -> list[str]:
        found: set[str] = set()
        for directory in (self.directory, *self.behind):
            if directory.is_dir():
                found.update(p.relative_to(directory).with_suffix("").as_posix()
                             for p in directory.rglob("*.yaml"))
        return sorted(found)

    def searched(self) -> str:
        """The directories looked in, for messages."""
        return " then ".join(str(d) for d in (self.directory, *self.behind))

    def description(self, name: str) -> str | None:
        text = self._file(name).get("description")
        return None if text is None else str(text)

    def versions(self, name: str) -> list[PromptRecord]:
        """Every version, oldest first; ``PromptMissing`` (with a did-you-mean) when absent."""
        return [_copy(v) for v in self._file(name)["versions"]]    # callers may edit labels

    def get(self, name: str, *, version: int | None = None,
            label: str | None = None) -> PromptRecord:
        """By version, else by label: ``production`` (the newest version when no version has
        that label), ``latest`` (the newest), or any other label."""
        versions = self.versions(name)
        newest = max(versions, key=lambda v: v["version"])
        if version is not None:
            chosen = next((v for v in versions if v["version"] == version), None)
            what = f"version {version}"
        elif label in (None, "latest") or label == "production" and not any(
                "production" in v["labels"] for v in versions):
            chosen, what = newest, "latest"
        else:
            chosen = next((v for v in versions if label in v["labels"]), None)
            what = f"label {label!r}"
        if chosen is None:
            have = ", ".join(f"v{v['version']} {v['labels']}" for v in versions)
            raise PromptMissing(f"prompt {name!r} in {self.file_of(name)} has no {what} "
                                f"(it has {have})")
        return chosen

    def write(self, name: str, versions: list[PromptRecord], *,
              description: str | None = None) -> Path:
        """Write (or rewrite) a prompt's file from records; comments in it are not kept."""
        if not versions:
            raise UsageError(f"prompt {name!r}: nothing to write (no versions)")
        data: dict[str, Any] = {"name": name, "type": versions[0]["type"]}
        if description:
            data["description"] = description
        data["versions"] = [_yaml_version(v) for v in sorted(versions, key=lambda v: v["version"])]
        import yaml

        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.dump(data, Dumper=_dumper(), sort_keys=False, allow_unicode=True,
                         default_flow_style=None, width=100)
        path.write_text(text, encoding="utf-8")
        with self._lock:
            self._parsed.pop(path, None)
        return path

    def _file(self, name: str) -> dict[str, Any]:
        path = self.file_of(name)
        try:
            if path is None:
                raise FileNotFoundError(name)
            stat = path.stat()
        except OSError:
            hint = suggest(name, self.names(), what="known prompts")
            raise PromptMissing(f"no prompt named {name!r} in {self.searched()} ({hint}); add "
                                f"{self.path(name)} or set prompts_dir= / "
                                f"$LLM_ADAPTER_PROMPTS") from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._parsed.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        parsed = _parse_file(path, name)
        with self._lock:
            self._parsed[path] = (stamp, parsed)
        return parsed


def _parse_file(path: Path, name: str) -> dict[str, Any]:
    import yaml         # when a prompt file is read, not with the package

    where = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the prompt file: {exc}", path=where,
                          fix="make it a readable UTF-8 YAML file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=where,
                          fix="check the indentation; write multi-line prompts as 'prompt: |'"
                          ) from None
    if not isinstance(data, dict):
        raise ConfigError("a prompt file must be a mapping", path=where,
                          fix="write name:, type:, versions: [...]")
    _known(data, _FILE_KEYS, where, "")
    if data.get("name", name) != name:
        raise ConfigError(f"the file says name {data['name']!r} but is named for {name!r}",
                          path=where, key="name", fix=f"rename the file or set name: {name}")
    kind = data.get("type", "text")
    if kind not in ("text", "chat"):
        raise ConfigError(f"type must be 'text' or 'chat', not {kind!r}", path=where, key="type")
    entries = data.get("versions")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("needs a non-empty 'versions' list", path=where, key="versions",
                          fix="add versions: [{version: 1, labels: [production], prompt: ...}]")
    tags = [str(t) for t in data.get("tags") or ()]
    versions = [_parse_version(entry, i, name, kind, tags, where)
                for i, entry in enumerate(entries)]
    _unique(versions, where)
    return {"description": data.get("description"), "versions": versions}


def _parse_version(entry: Any, i: int, name: str, kind: str, tags: list[str],
                   where: str) -> PromptRecord:
    key = f"versions[{i}]"
    if not isinstance(entry, dict):
        raise ConfigError("each version must be a mapping", path=where, key=key,
                          fix="write {version: 1, labels: [production], prompt: ...}")
    _known(entry, _VERSION_KEYS, where, key)
    raw = entry.get("prompt")
    if kind == "text" and not isinstance(raw, str):
        raise ConfigError("prompt must be a string for a text prompt", path=where,
                          key=f"{key}.prompt", fix="write prompt: | and the text below it")
    template = raw if isinstance(raw, str) else _chat_template(raw, where, f"{key}.prompt")
    number = entry.get("version", i + 1)
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ConfigError(f"version must be a positive integer, not {number!r}", path=where,
                          key=f"{key}.version")
    labels = entry.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) and LABEL_RE.match(x)
                                               for x in labels):
        raise ConfigError(f"labels must be a list of lowercase names, not {labels!r}",
                          path=where, key=f"{key}.labels",
                          fix="use letters, digits, '_', '-' and '.', e.g. [production, prod-a]")
    config = entry.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError("config must be a mapping", path=where, key=f"{key}.config",
                          fix="e.g. config: {temperature: 0.2}")
    message = entry.get("commit_message")
    return PromptRecord(name=name, version=number, type=kind, prompt=template, config=config,
                        labels=list(dict.fromkeys(labels)), tags=tags,
                        commit_message=None if message is None else str(message))


def _chat_template(value: Any, where: str, key: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise ConfigError("prompt must be a list of messages for a chat prompt", path=where,
                          key=key, fix="write [{role: system, content: ...}, "
                                       "{type: placeholder, name: history}]")
    for j, message in enumerate(value):
        ok = isinstance(message, dict) and (
            message.get("type") == "placeholder" and isinstance(message.get("name"), str) or
            isinstance(message.get("role"), str) and isinstance(message.get("content"), str))
        if not ok:
            raise ConfigError("each message needs a string role and content, or is "
                              "{type: placeholder, name: ...}", path=where, key=f"{key}[{j}]")
    return [dict(m) for m in value]


def _unique(versions: list[PromptRecord], where: str) -> None:
    numbers: set[int] = set()
    owners: dict[str, int] = {}
    for v in versions:
        if v["version"] in numbers:
            raise ConfigError(f"version {v['version']} appears twice", path=where,
                              key="versions", fix="number the versions 1, 2, 3, ...")
        numbers.add(v["version"])
        for label in v["labels"]:
            if label in owners:
                raise ConfigError(f"label {label!r} is on versions {owners[label]} and "
                                  f"{v['version']}", path=where, key="versions",
                                  fix="a label points at one version: keep it on one")
            owners[label] = v["version"]


def _known(data: Mapping[str, Any], keys: tuple[str, ...], where: str, parent: str) -> None:
    for key in data:
        if key not in keys:
            raise ConfigError(f"unknown key {key!r}", path=where, key=join_key(parent, key),
                              fix=suggest(key, keys, what="valid keys"))


def _yaml_version(v: PromptRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"version": v["version"],
                           "labels": [x for x in v["labels"] if x != "latest"],
                           "prompt": v["prompt"]}
    if v["config"]:
        out["config"] = v["config"]
    if v.get("commit_message"):
        out["commit_message"] = v["commit_message"]
    return out


def _dumper() -> type:
    import yaml

    class Dumper(yaml.SafeDumper):
        """Multi-line strings as ``|`` blocks, as the hand-written files have them."""

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return Dumper


# -- Langfuse --------------------------------------------------------------------------------
class LangfuseSource:
    """Langfuse's prompts API, one bounded request per call: ``timeout`` seconds, no retries.

    ``api`` may be an existing ``LangfuseAPI`` (``Langfuse(...).api``) to share its connections;
    by default one is built on first use from ``credentials``.
    """

    def __init__(self, credentials: Credentials, *, timeout: float = 2.0, api: Any = None) -> None:
        self.credentials = credentials
        self.timeout = timeout
        self._api = api
        self._lock = threading.Lock()
        if api is None:
            reset_in_child(self, LangfuseSource._forget_client)

    def _forget_client(self) -> None:
        """In a forked child: the HTTP client's pooled sockets are the parent's."""
        self._lock = threading.Lock()
        self._api = None

    def __repr__(self) -> str:
        return f"LangfuseSource({self.credentials.base_url!r})"

    @property
    def base_url(self) -> str:
        return self.credentials.base_url

    @property
    def api(self) -> Any:
        if self._api is None:
            with self._lock:
                if self._api is None:
                    from .._observability.langfuse_sdk import api_client

                    self._api = api_client(self.credentials, timeout=self.timeout)
        return self._api

    def fetch(self, name: str, *, version: int | None = None, label: str | None = None,
              timeout: float | None = None) -> PromptRecord:
        """One version (by number, else label, else ``production``)."""
        options = self._options(timeout)
        what = f"version {version}" if version is not None else f"label {label or 'production'!r}"
        response = self._call(lambda: self.api.prompts.get(
            quote(name, safe=""), version=version, label=label, request_options=options),
            f"prompt {name!r} {what}")
        return _record(response)

    def catalog(self) -> list[dict[str, Any]]:
        """Every prompt of the project: name, type, versions and labels (all pages)."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            listed = self._call(partial(self.api.prompts.list, page=page, limit=100,
                                        request_options=self._options(None)), "the prompt list")
            out.extend({"name": m.name, "type": str(getattr(m.type, "value", m.type)),
                        "versions": list(m.versions), "labels": list(m.labels)}
                       for m in listed.data)
            if page >= (listed.meta.total_pages or 1):
                return sorted(out, key=lambda m: str(m["name"]))
            page += 1

    def versions(self, name: str) -> list[PromptRecord]:
        """Every version of ``name``, oldest first (one request each); [] when it has none."""
        listed = self._call(lambda: self.api.prompts.list(
            name=name, limit=100, request_options=self._options(None)), f"prompt {name!r}")
        numbers = sorted({n for meta in listed.data if meta.name == name for n in meta.versions})
        return [self.fetch(name, version=n) for n in numbers]

    def create(self, record: PromptRecord, *, labels: list[str]) -> PromptRecord:
        """A new version of ``record``'s prompt carrying ``labels`` (moved from older ones)."""
        from .._observability.langfuse_sdk import prompt_request

        common: dict[str, Any] = {
            "name": record["name"], "labels": [x for x in labels if x != "latest"],
            "tags": record["tags"] or None, "config": record["config"] or {},
            "commit_message": record.get("commit_message")}
        request = prompt_request(record["type"], record["prompt"], **common)
        return _record(self._call(lambda: self.api.prompts.create(
            request=request, request_options=self._options(None)),
            f"creating prompt {record['name']!r}"))

    def set_labels(self, name: str, version: int, labels: list[str]) -> PromptRecord:
        """Put ``labels`` on ``version`` (Langfuse takes them off the other versions)."""
        return _record(self._call(lambda: self.api.prompt_version.update(
            quote(name, safe=""), version, new_labels=labels,
            request_options=self._options(None)), f"prompt {name!r} version {version}"))

    def _options(self, timeout: float | None) -> Any:
        return {"timeout_in_seconds": self.timeout if timeout is None else timeout,
                "max_retries": 0}

    def _call(self, action: Callable[[], _T], what: str) -> _T:
        """Run one request; its failure as PromptMissing, SourceUnreachable or UsageError."""
        import httpx
        import pydantic
        from .._observability.langfuse_sdk import api_error

        try:
            return action()
        except api_error() as exc:
            status = exc.status_code
            detail = exc.body.get("message") if isinstance(exc.body, dict) else exc.body
            if status == 404:
                raise PromptMissing(f"Langfuse has no {what}") from None
            if status in (401, 403):
                raise SourceUnreachable(
                    f"Langfuse at {self.base_url} refused the keys ({status}): check "
                    "LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY") from None
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                raise UsageError(f"Langfuse rejected {what} ({status}): {detail}") from None
            raise SourceUnreachable(f"Langfuse at {self.base_url} answered {status} for "
                                    f"{what}: {detail}") from None
        except httpx.HTTPError as exc:
            raise SourceUnreachable(f"Langfuse at {self.base_url} is unreachable "
                                    f"({type(exc).__name__}: {exc or 'no detail'})") from None
        except pydantic.ValidationError as exc:
            raise SourceUnreachable(f"Langfuse at {self.base_url} sent an unexpected answer "
                                    f"for {what}: {exc.errors()[:1]}") from None


def _record(response: Any) -> PromptRecord:
    data = response.model_dump(mode="json", by_alias=True, exclude_none=True)
    template = data["prompt"]
    config = data.get("config")
    return PromptRecord(name=data["name"], version=int(data["version"]),
                        type=str(data.get("type") or "text"),
                        prompt=_normal(template) if isinstance(template, list) else str(template),
                        config=config if isinstance(config, dict) else {},
                        labels=list(data.get("labels") or []), tags=list(data.get("tags") or []),
                        commit_message=data.get("commitMessage"))
