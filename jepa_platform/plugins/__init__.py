"""Plugins: the hooks a package implements, and the registries they fill.

A plugin module marks functions with `@hookimpl` (see `hookspecs` for the hooks), is named by an
entry point in the `jepa_platform` group, and is loaded by `get_plugins()`; `registry(family)`
then looks components up by name. `jepa_platform.plugins.testing` has helpers for plugin tests.
"""

from jepa_platform.plugins.hookspecs import hookimpl, hookspec
from jepa_platform.plugins.manager import get_plugins, registry
from jepa_platform.plugins.registries import Component, PluginError, Registry

__all__ = ["Component", "PluginError", "Registry", "get_plugins", "hookimpl", "hookspec", "registry"]
