"""Typed registries: per component family, name -> (factory, params model, providing plugin)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from jepa_platform.errors import EXIT_USAGE, JepaError, did_you_mean

FAMILIES = ("backbones", "predictors", "maskers", "teachers", "probes", "datasets", "runners", "loggers")


class PluginError(JepaError):
    """A plugin that cannot be loaded, registers something that clashes, or a component that is not registered."""

    exit_code = EXIT_USAGE


class Params(BaseModel):
    """Base of a component's params model: an unknown field is an error naming it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class NoParams(Params):
    """Params model of a component that takes none."""


@dataclass(frozen=True)
class Component:
    name: str
    family: str
    factory: Callable[..., Any]
    config: type[BaseModel]
    provider: str
    description: str = ""

    def build(self, params: BaseModel | dict[str, Any] | None = None, **context: Any) -> Any:
        """Validates `params` with the component's own model and calls its factory."""
        if not isinstance(params, self.config):
            params = self.config.model_validate(params or {})
        return self.factory(params, **context)


class Registry:
    """The components of one family. A name registered twice is an error naming both providers."""

    def __init__(self, family: str):
        self.family = family
        self._items: dict[str, Component] = {}

    def register(
        self,
        name: str,
        factory: Callable[..., Any],
        config: type[BaseModel] = NoParams,
        description: str = "",
        *,
        provider: str,
    ) -> None:
        if name in self._items:
            other = self._items[name].provider
            raise PluginError(
                f"{self.family} component {name!r} is registered twice: by {other!r} and by {provider!r}; "
                f"disable one with JEPA_DISABLE_PLUGINS={provider}"
            )
        if not (isinstance(config, type) and issubclass(config, BaseModel)):
            raise PluginError(f"{self.family} component {name!r} from {provider!r}: config must be a pydantic model")
        doc = description or (factory.__doc__ or "").strip().split("\n")[0]
        self._items[name] = Component(name, self.family, factory, config, provider, doc)

    def get(self, name: str) -> Component:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise PluginError(f"unknown {self.family} kind {name!r} (known: {known})"
                              f"{did_you_mean(name, self._items)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[Component]:
        return iter(sorted(self._items.values(), key=lambda c: c.name))

    def names(self) -> list[str]:
        return sorted(self._items)
