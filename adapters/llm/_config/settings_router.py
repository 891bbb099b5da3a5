"""``router_settings`` (the file's, and each profile's overrides) as a frozen pydantic model.

Its fields are generated from the one rule table, ``_config_schema.ROUTER_SETTINGS``, so the
keys LiteLLM's Router takes and the ones this library adds are listed once; each value is
checked by its rule and every problem is worded by ``_config_errors.config_error``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import ValidationError, create_model

from .validation_errors import config_error, rule_type, spec
from .schema import (ROUTER_SETTINGS)
from .settings import Section

__all__ = ["RouterSection", "check_router_settings"]


class _RouterBase(Section):
    what: ClassVar[str] = "router_settings"


_FIELDS: dict[str, Any] = {name: (Annotated[rule_type(rule) | None, spec(rule)], None)
                           for name, rule in ROUTER_SETTINGS.items()}
if TYPE_CHECKING:                   # a class to type fields with; its keys are generated
    RouterSection = _RouterBase
else:
    RouterSection = create_model("RouterSection", __base__=_RouterBase, **_FIELDS)


def check_router_settings(value: Any, *, key: str, file: str | None) -> dict[str, Any]:
    """The keys a ``router_settings`` mapping gives, checked (None counts as empty)."""
    try:
        section = RouterSection.model_validate(value, context={"key": key})
    except ValidationError as exc:
        raise config_error(exc, file=file, key=key) from None
    return section.given()
