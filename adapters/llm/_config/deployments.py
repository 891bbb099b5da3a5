"""``model_list`` and the fallback chains as frozen pydantic models.

The value rules are ``schema``'s (``LITELLM_PARAMS``, ``MODEL_INFO``) applied through
``spec(...)``, and every problem is worded by ``validation_errors.config_error``, so a bad entry is
reported with its file, key path (``model_list[1].litellm_params.timeout``), what is wrong and
the fix. ``litellm_params`` and ``model_info`` keep keys they do not define, for LiteLLM.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import (BaseModel, ConfigDict, ModelWrapValidatorHandler, PrivateAttr, RootModel,
                      ValidationError, ValidationInfo, create_model, field_validator,
                      model_validator)

from .schema import (DEPLOYMENT_KEYS, LITELLM_PARAMS, MODEL_INFO, Spec, Text, join_key, show,
                     suggest)
from .validation_errors import config_error, problem, rule_type, spec, unknown_keys
from .settings import Section

__all__ = ["Chains", "DeploymentEntry", "LiteLLMParams", "ModelInfo", "ModelList",
           "check_chains", "check_model_list", "known_group"]

Fallbacks = tuple[tuple[str, tuple[str, ...]], ...]
_EXAMPLE = ("add model_list: [{model_name: gpt-4o, litellm_params: {model: openai/gpt-4o, "
            "api_key: os.environ/OPENAI_API_KEY}}]")
_FALLBACK_FORMS = ("write a chain [a, b, c], where each group falls back to the ones after "
                   "it, or LiteLLM's form [{a: [b, c]}, {b: [c]}]")


class _Open(BaseModel):
    """A mapping whose known keys are checked and whose other keys are kept for LiteLLM."""

    model_config = ConfigDict(frozen=True, extra="allow")
    what: ClassVar[str] = "this mapping"
    _order: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        if value is None or isinstance(value, BaseModel):
            return value or {}
        if not isinstance(value, Mapping):
            raise problem(f"expected a mapping for {cls.what}, got {show(value, cls.what)}",
                          "write key: value pairs (a YAML mapping)")
        return {str(k): v for k, v in value.items()}

    @model_validator(mode="wrap")
    @classmethod
    def _keep_order(cls, value: Any, handler: ModelWrapValidatorHandler[_Open]) -> _Open:
        model = handler(value)
        if isinstance(value, Mapping):
            model._order = tuple(str(k) for k in value)
        return model

    def given(self) -> dict[str, Any]:
        """The keys as written (in file order), known ones with their checked values."""
        values = self.model_dump(exclude_unset=True)
        return {k: values[k] for k in self._order if k in values} | values


def _fields(table: Mapping[str, Spec]) -> dict[str, Any]:
    return {name: (Annotated[rule_type(rule, exact_numbers=True) | None, spec(rule)], None)
            for name, rule in table.items()}


class _ParamsBase(_Open):
    what: ClassVar[str] = "litellm_params"

    @model_validator(mode="after")
    def _model(self) -> _ParamsBase:
        if "model" not in self.model_fields_set:
            raise problem("model is missing", "add model: <provider>/<model>, e.g. openai/gpt-4o",
                          at="model")
        return self


class _InfoBase(_Open):
    what: ClassVar[str] = "model_info"


if TYPE_CHECKING:                   # classes to type fields with; their keys are generated
    LiteLLMParams = _ParamsBase
    ModelInfo = _InfoBase
else:
    LiteLLMParams = create_model("LiteLLMParams", __base__=_ParamsBase, **_fields(LITELLM_PARAMS))
    ModelInfo = create_model("ModelInfo", __base__=_InfoBase, **_fields(MODEL_INFO))


class DeploymentEntry(Section):
    """One ``model_list`` entry; a top-level ``tpm``/``rpm`` joins ``litellm_params``."""

    what: ClassVar[str] = "a model_list entry"
    model_name: Annotated[str, spec(Text(optional=False, non_empty=True))]
    litellm_params: LiteLLMParams
    model_info: ModelInfo = ModelInfo()
    tpm: Annotated[int | None, spec(LITELLM_PARAMS["tpm"])] = None
    rpm: Annotated[int | None, spec(LITELLM_PARAMS["rpm"])] = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value
        if not isinstance(value, Mapping):
            raise problem(f"a model_list entry must be a mapping, got {show(value, '')}",
                          "write e.g. {model_name: gpt-4o, litellm_params: "
                          "{model: openai/gpt-4o}}")
        raw = unknown_keys(value, DEPLOYMENT_KEYS, cls.what)
        if "model_name" not in raw:
            raise problem("model_name is missing",
                          "add model_name: <group name>, the name callers and fallbacks use")
        if raw.get("litellm_params") is None:
            raise problem("litellm_params is missing", "add litellm_params: {model: "
                          "openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY}")
        return raw

    @model_validator(mode="after")
    def _limits_once(self) -> DeploymentEntry:
        params = self.litellm_params.given()
        for name in ("tpm", "rpm"):
            value = getattr(self, name)
            if value is not None and params.get(name, value) != value:
                raise problem(f"{name} is given twice, with two values",
                              f"keep only litellm_params.{name}", at=name)
        return self

    def params(self) -> dict[str, Any]:
        """``litellm_params`` as LiteLLM takes them, with the entry's own tpm/rpm."""
        out = self.litellm_params.given()
        for name in ("tpm", "rpm"):
            if getattr(self, name) is not None:
                out.setdefault(name, getattr(self, name))
        return out


class ModelList(RootModel[tuple[DeploymentEntry, ...]]):
    """The deployments; each gets a distinct ``model_info.id`` (``<model_name>-<n>`` if not
    given)."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        if value is None:
            raise problem("model_list is missing", _EXAMPLE)
        if not isinstance(value, (list, tuple)):
            raise problem(f"model_list must be a list of deployments, got a "
                          f"{type(value).__name__}", _EXAMPLE)
        if not value:
            raise problem("model_list is empty", _EXAMPLE)
        return value

    @model_validator(mode="after")
    def _distinct_ids(self) -> ModelList:
        owners: dict[str, int] = {}
        for i, dep_id in enumerate(self.ids()):
            if dep_id in owners:
                raise problem(f"deployment id {dep_id!r} is already used by "
                              f"{join_key('model_list', owners[dep_id])}",
                              "give each deployment its own model_info.id, or drop it to get "
                              "<model_name>-<n>", at=f"[{i}].model_info.id")
            owners[dep_id] = i
        return self

    def ids(self) -> tuple[str, ...]:
        counts: dict[str, int] = {}
        out: list[str] = []
        for entry in self.root:
            counts[entry.model_name] = counts.get(entry.model_name, 0) + 1
            given = entry.model_info.given().get("id")
            out.append(given if given is not None else f"{entry.model_name}-"
                       f"{counts[entry.model_name]}")
        return tuple(out)

    def groups(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(entry.model_name for entry in self.root))


def check_model_list(value: Any, *, file: str | None) -> ModelList:
    try:
        return ModelList.model_validate(value)
    except ValidationError as exc:
        raise config_error(exc, file=file, key="model_list") from None


# ------------------------------------------------------------------------- fallback chains


def known_group(name: Any, groups: tuple[str, ...], *, at: str | None = None) -> str:
    """``name`` if it is a defined model group, else the problem (at ``at`` below the field)."""
    if not isinstance(name, str) or name not in groups:
        raise problem(f"unknown model group {show(name, at or '')}",
                      suggest(name, groups, what="defined model_name values"), at=at)
    return name


def _chain(value: Any, name: str, groups: tuple[str, ...]) -> Fallbacks:
    """The chain form and LiteLLM's dict form, normalised to ((primary, targets), ...)."""
    if value is None:
        return ()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        for i, group in enumerate(value):
            known_group(group, groups, at=f"[{i}]")
            if group in value[:i]:
                raise problem(f"{group!r} appears twice in the chain, so it would fall back "
                              "to itself", "list each group once", at=f"[{i}]")
        return tuple((group, tuple(value[i + 1:])) for i, group in enumerate(value[:-1]))
    entries: list[tuple[str, Any, Any]] = []        # (key below the field, primary, targets)
    if isinstance(value, Mapping):
        entries = [(join_key("", k), k, v) for k, v in value.items()]
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, Mapping) or not item:
                raise problem(f"unexpected {show(item, name)} in {name}", _FALLBACK_FORMS,
                              at=f"[{i}]")
            entries += [(f"[{i}].{k}", k, v) for k, v in item.items()]
    else:
        raise problem(f"unexpected {show(value, name)}", _FALLBACK_FORMS)
    out: dict[str, tuple[str, ...]] = {}
    for at, primary, targets in entries:
        known_group(primary, groups, at=at)
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise problem(f"expected a list of model groups, got {show(targets, at)}",
                          _FALLBACK_FORMS, at=at)
        for j, target in enumerate(targets):
            known_group(target, groups, at=f"{at}[{j}]")
            if target == primary:
                raise problem(f"{primary!r} falls back to itself",
                              "remove it from its own fallback list", at=f"{at}[{j}]")
            if target in targets[:j]:
                raise problem(f"{target!r} is listed twice", "list each fallback once",
                              at=f"{at}[{j}]")
        if primary in out:
            raise problem(f"{primary!r} has fallbacks defined twice", "merge them into one entry",
                          at=at)
        if targets:
            out[primary] = tuple(targets)
    return tuple(out.items())


class Chains(BaseModel):
    """The three fallback lists, each naming defined groups only (``context["groups"]``)."""

    model_config = ConfigDict(frozen=True)
    fallbacks: Fallbacks = ()
    context_window_fallbacks: Fallbacks = ()
    content_policy_fallbacks: Fallbacks = ()

    @field_validator("fallbacks", "context_window_fallbacks", "content_policy_fallbacks",
                     mode="before")
    @classmethod
    def _normalised(cls, value: Any, info: ValidationInfo) -> Fallbacks:
        return _chain(value, info.field_name or "", tuple((info.context or {})["groups"]))


def check_chains(data: Mapping[str, Any], groups: tuple[str, ...], *, file: str | None
                 ) -> Chains:
    given = {name: data[name] for name in Chains.model_fields if name in data}
    try:
        return Chains.model_validate(given, context={"groups": groups})
    except ValidationError as exc:
        raise config_error(exc, file=file, key="") from None
