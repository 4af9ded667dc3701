"""Loading plugins: every `jepa_platform` entry point not blocked by the user, built-ins first.

The built-in components come through this package's own `builtin` entry point, exactly like a
third-party plugin's, so this module imports no component. An entry point names a module (or object)
with hookimpls; a module that lists `HOOK_MODULES` is registered as those modules, under one name.
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from jepa_platform.plugins import hookspecs
from jepa_platform.plugins.registries import FAMILIES, PluginError, Registry

ENTRY_POINT_GROUP = "jepa_platform"
DISABLE_ENV = "JEPA_DISABLE_PLUGINS"
BUILTIN = "builtin"
DISTRIBUTION = "jepa-platform"
BUILTIN_MODULE = "jepa_platform.builtins"  # what the `builtin` entry point names (pyproject.toml)


def disabled_plugins() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


@dataclass
class PluginInfo:
    name: str
    version: str
    hooks: list[str]
    components: dict[str, list[str]] = field(default_factory=dict)
    blocked: bool = False


class Plugins:
    """A pluggy manager with the plugins loaded, and the component registries they filled."""

    def __init__(self, load_entry_points: bool = True, extra: dict[str, Any] | None = None):
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.versions: dict[str, str] = {}
        self.blocked = disabled_plugins()
        self.provider: dict[str, str] = {}  # pluggy's name of each registered object -> the plugin's name
        for name in self.blocked:
            self.pm.set_blocked(name)
        self._load_entry_points(third_party=load_entry_points)
        for name, plugin in (extra or {}).items():
            self._register(plugin, name, "inline")
        self.registries = self._fill_registries()

    def _register(self, plugin: ModuleType | object, name: str, version: str) -> None:
        if self.pm.is_blocked(name) or name in self.versions:
            return
        parts = getattr(plugin, "HOOK_MODULES", None) or (plugin,)
        for i, part in enumerate(parts):
            key = name if len(parts) == 1 else f"{name}:{getattr(part, '__name__', i)}"
            self.pm.register(part, name=key)
            self.provider[key] = name
        self.versions[name] = version

    def _load_entry_points(self, third_party: bool) -> None:
        """This package's entry points first (the built-ins keep their names against a clashing plugin),
        then, with `third_party`, every other distribution's."""
        found = [(dist, ep) for dist in metadata.distributions() for ep in dist.entry_points
                 if ep.group == ENTRY_POINT_GROUP]
        own = [(d, ep) for d, ep in found if d.metadata["Name"] == DISTRIBUTION]
        others = [(d, ep) for d, ep in found if d.metadata["Name"] != DISTRIBUTION] if third_party else []
        if not any(ep.name == BUILTIN for _, ep in own) and BUILTIN not in self.blocked:
            # Run from a source tree without installed metadata: the entry point's target, by name.
            from jepa_platform.version import __version__

            self._register(importlib.import_module(BUILTIN_MODULE), BUILTIN, __version__)
        for dist, ep in own + others:
            if self.pm.is_blocked(ep.name) or ep.name in self.versions:
                continue
            try:
                plugin = ep.load()
            except Exception as e:  # a broken third-party package must not hide which one it is
                raise PluginError(
                    f"plugin {ep.name!r} ({dist.metadata['Name']} {dist.version}) failed to load: {e}; "
                    f"disable it with {DISABLE_ENV}={ep.name}"
                ) from e
            self._register(plugin, ep.name, dist.version)

    def _fill_registries(self) -> dict[str, Registry]:
        registries = {}
        for family in FAMILIES:
            registry = Registry(family)
            for impl in getattr(self.pm.hook, f"jepa_register_{family}").get_hookimpls():
                provider = self.provider.get(impl.plugin_name, impl.plugin_name)
                impl.function(register=functools.partial(registry.register, provider=provider))
            registries[family] = registry
        return registries

    def registry(self, family: str) -> Registry:
        return self.registries[family]

    def info(self, include_blocked: bool = False) -> list[PluginInfo]:
        """What loaded (and, with include_blocked, what JEPA_DISABLE_PLUGINS kept out)."""
        hooks: dict[str, set[str]] = {}
        for key, plugin in self.pm.list_name_plugin():
            if plugin is not None:
                name = self.provider.get(key, key)
                hooks.setdefault(name, set()).update(h.name for h in self.pm.get_hookcallers(plugin) or [])
        out = []
        for name, names in hooks.items():
            comps = {
                fam: [c.name for c in reg if c.provider == name]
                for fam, reg in self.registries.items()
                if any(c.provider == name for c in reg)
            }
            out.append(PluginInfo(name, self.versions.get(name, "?"), sorted(names), comps))
        if include_blocked:
            out += [PluginInfo(n, "-", [], {}, blocked=True) for n in sorted(self.blocked)]
        return out


_current: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugin set, loaded on first use."""
    global _current
    if _current is None:
        _current = Plugins()
    return _current


def set_plugins(plugins: Plugins | None) -> None:
    """Replace (or with None, reset) the process-wide plugin set; for tests and embedding."""
    global _current
    _current = plugins


def registry(family: str) -> Registry:
    return get_plugins().registry(family)
