"""Strategy plugins from other packages, through the entry-point group ``forgetbench.strategies``.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."forgetbench.strategies"]
    my_method = "my_cl_method"        # a module whose import registers strategies

Every such module is imported after the built-in strategies. A plugin that fails to import or
registers a name already taken is skipped with a warning naming its package; the others and the
built-ins still load. If the module's top-level package has a ``conf`` sub-package (Hydra config
groups such as ``conf/experiment/*.yaml``), it is added to Hydra's config search path.
"""
from __future__ import annotations

import importlib.util
import warnings
from importlib.metadata import EntryPoint, entry_points

from hydra.plugins.search_path_plugin import SearchPathPlugin

GROUP = "forgetbench.strategies"


def _plugins() -> list[EntryPoint]:
    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


def _package(ep: EntryPoint) -> str:
    return f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else ep.value


def load_plugins() -> None:
    from forgetbench.strategies import registry

    for ep in _plugins():
        registry._source = _package(ep)
        try:
            ep.load()
        except Exception as error:  # a broken plugin must not take the others down
            warnings.warn(f"forgetbench: strategy plugin {ep.name!r} from package {_package(ep)} was not loaded: "
                          f"{type(error).__name__}: {error}", stacklevel=2)
        finally:
            registry._source = None


def config_packages() -> list[str]:
    """``<package>.conf`` of every plugin whose package has one (found without importing the plugin)."""
    out = []
    for ep in _plugins():
        conf = f"{ep.module.split('.')[0]}.conf"
        try:
            if importlib.util.find_spec(conf) is not None:
                out.append(conf)
        except ImportError:
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
