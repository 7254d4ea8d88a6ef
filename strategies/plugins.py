"""Strategy plugins from other packages, through the entry-point group ``forgetbench.strategies``.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."forgetbench.strategies"]
    my_method = "my_cl_method"        # a module whose import registers strategies

Every such module is imported after the built-in strategies. A plugin that fails to import or
registers a name already taken is skipped with a warning naming its package (whatever it registered
before failing is removed again); the others and the built-ins still load. If the module's top-level
package has a ``conf`` sub-package (Hydra config groups such as ``conf/experiment/*.yaml``), it is
added to Hydra's config search path.

Plugins are imported only by :func:`load_plugins`, after the built-ins: reading a plugin's ``conf``
package imports the plugin's top-level package, so :func:`config_packages` loads the registry first
(else Hydra's search path would import a plugin before the built-ins, under no package name, and a
plugin taking a built-in name would break ``import forgetbench.conf``) and skips the plugins that failed.
"""
from __future__ import annotations

import importlib.util
import warnings
from importlib.metadata import EntryPoint, entry_points

from hydra.plugins.search_path_plugin import SearchPathPlugin

GROUP = "forgetbench.strategies"


class PluginWarning(UserWarning):
    """A strategy plugin was skipped (``warnings.filterwarnings("error", category=PluginWarning)`` to fail instead)."""


def _plugins() -> list[EntryPoint]:
    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


def _package(ep: EntryPoint) -> str:
    return f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else ep.value


_failed: set[str] = set()  # entry-point values (modules) of the plugins that did not load


def load_plugins() -> None:
    from forgetbench.strategies import registry

    for ep in _plugins():
        registry._source = _package(ep)
        before = set(registry._REGISTRY)
        try:
            ep.load()
            _failed.discard(ep.value)
        except Exception as error:  # a broken plugin must not take the others down
            _failed.add(ep.value)
            for name in set(registry._REGISTRY) - before:  # half a plugin is not loaded either
                registry.unregister_strategy(name)
            warnings.warn(f"forgetbench: strategy plugin {ep.name!r} from package {_package(ep)} was not loaded: "
                          f"{type(error).__name__}: {error}", PluginWarning, stacklevel=2)
        finally:
            registry._source = None


def config_packages() -> list[str]:
    """``<package>.conf`` of every plugin that loaded and whose package has one. Loads the strategies
    first: finding ``<package>.conf`` imports ``<package>``, which must not happen before the built-ins."""
    from forgetbench.strategies.registry import load_all

    load_all()
    out = []
    for ep in _plugins():
        if ep.value in _failed:
            continue
        conf = f"{ep.module.split('.')[0]}.conf"
        try:
            if importlib.util.find_spec(conf) is not None:
                out.append(conf)
        except Exception:  # not a package, or it fails to import: no configs from it
            pass
    return out


def enable_plugin_configs() -> None:
    """Let Hydra search the plugins' ``conf`` packages (after forgetbench's own). Call before composing."""
    from hydra.core.plugins import Plugins

    Plugins.instance().register(PluginConfigs)


class PluginConfigs(SearchPathPlugin):
    def manipulate_search_path(self, search_path) -> None:
        for package in config_packages():
            search_path.append(provider=f"forgetbench-plugin:{package}", path=f"pkg://{package}")
