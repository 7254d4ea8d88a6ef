"""Strategy plugins (strategies/plugins.py), the real way: the example plugin in tests/plugin_example
(``forgetbench-l2``: one file registering ``l2``, plus a Hydra preset in its ``conf/``) and forgetbench
itself are pip-installed, not editable and offline, into a temporary folder; the ``forgetbench*``
commands installed there list the plugin, sweep it against a built-in, rank it and compose its preset.
Broken plugins (an import error, a name already taken) are skipped with a warning naming their package,
and neither the built-ins nor the other plugins go down with them.

Nothing is written outside pytest's temporary folders: the packages are built from copies.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from forgetbench.strategies import plugins, registry
from tests.conftest import REPO, TINY

EXAMPLE = REPO / "tests" / "plugin_example"
EXAMPLE_FILES = {"pyproject.toml", "forgetbench_l2/__init__.py", "forgetbench_l2/conf/__init__.py",
                 "forgetbench_l2/conf/experiment/l2_split_mnist.yaml"}


class _Command:
    """A command started now and checked later, so that the slow ones (each imports torch and Avalanche:
    ~8 s) run side by side on the two cores."""

    def __init__(self, cmd, *, env, cwd):
        self.cmd = [str(c) for c in cmd]
        self.proc = subprocess.Popen(self.cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self._result = None

    def result(self, timeout: float = 300) -> subprocess.CompletedProcess:
        if self._result is None:
            out, err = self.proc.communicate(timeout=timeout)
            self._result = subprocess.CompletedProcess(self.cmd, self.proc.returncode, out, err)
        assert self._result.returncode == 0, \
            f"{' '.join(self.cmd)} exited {self._result.returncode}:\n{self._result.stdout}\n{self._result.stderr}"
        return self._result

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def _sh(cmd, *, env, cwd, timeout: float = 300) -> subprocess.CompletedProcess:
    command = _Command(cmd, env=env, cwd=cwd)
    try:
        return command.result(timeout)
    finally:
        command.stop()


def _env(pythonpath: Path | None, data: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(FORGETBENCH_DATA=str(data), HYDRA_FULL_ERROR="1", PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               WANDB_MODE="disabled")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory, mnist_root):
    """forgetbench and the example plugin, pip-installed (wheels, no network) into ``site``; commands in ``bin``."""
    tmp = tmp_path_factory.mktemp("plugin_install")
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    for folder in ("scripts", "benchmarks", "strategies", "conf"):
        shutil.copytree(REPO / folder, src / "forgetbench" / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / "forgetbench" / name)
    shutil.copytree(EXAMPLE, src / "forgetbench_l2", ignore=ignore)
    site, cwd = tmp / "site", tmp / "cwd"
    cwd.mkdir()
    env = _env(None, mnist_root)
    _sh([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-build-isolation", "--no-cache-dir",
         "--target", site, src / "forgetbench", src / "forgetbench_l2"], env=env, cwd=cwd)
    env, bin_ = _env(site, mnist_root), site / "bin"
    _broken_plugins(tmp / "broken")  # installed next to the good ones for one command
    started = {  # checked by the tests below, while the sweep runs
        "list": _Command([bin_ / "forgetbench-strategies", "-v"], env=env, cwd=cwd),
        "preset": _Command([bin_ / "forgetbench", "experiment=l2_split_mnist", "--cfg", "job"], env=env, cwd=cwd),
        "broken": _Command([bin_ / "forgetbench", "strategy=_good", "experiment=good", "--cfg", "job"],
                           env={**env, "PYTHONPATH": f"{site}{os.pathsep}{tmp / 'broken'}"}, cwd=cwd),
    }
    yield {"site": site, "bin": bin_, "cwd": cwd, "tmp": tmp, "env": env, "started": started}
    for command in started.values():
        command.stop()


def test_the_installed_plugin_is_listed_with_its_package(installed):
    result = installed["started"]["list"].result()
    out = result.stdout
    print(out)
    assert "was not loaded" not in result.stderr
    rows = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}
    assert "forgetbench-l2 0.1.0" in rows["l2"] and "1 model copy" in rows["l2"]
    assert "L2 penalty toward the previous experience's weights" in rows["l2"]
    assert "strength=1.0" in out
    assert "built-in" in rows["naive"] and "built-in" in rows["ewc"]


def test_a_sweep_runs_the_plugin_next_to_a_built_in_and_the_leaderboard_ranks_both(installed, mnist_root):
    results, env, cwd, bin_ = installed["tmp"] / "results", installed["env"], installed["cwd"], installed["bin"]
    sweep = _sh([bin_ / "forgetbench", "-m", "strategy=naive,l2", "seed=0,1", *TINY, f"data.root={mnist_root}",
                 f"results_dir={results}", "sweep_name=grid"], env=env, cwd=cwd, timeout=300)
    print(sweep.stdout)
    records = [json.loads(p.read_text()) for p in sorted((results / "grid").glob("*/record.json"))]
    assert [(r["strategy"], r["seed"], r["status"]) for r in records] == [
        ("naive", 0, "ok"), ("naive", 1, "ok"), ("l2", 0, "ok"), ("l2", 1, "ok")]
    l2 = records[2]
    assert l2["strategy_info"]["class"] == "forgetbench_l2.L2"
    assert l2["strategy_info"]["source"] == "forgetbench-l2 0.1.0"  # loaded by the registry, not by Hydra's search path
    assert l2["config"]["strategy"] == {"name": "l2", "strength": 1.0}
    assert l2["memory"]["stores"] == "1 model copy" and l2["memory"]["bytes"] > 0
    assert records[0]["accuracy_matrix"] != l2["accuracy_matrix"]  # same seed, data and init: the penalty acts

    board = _sh([bin_ / "forgetbench-leaderboard", results / "grid", "--out", results / "board"], env=env, cwd=cwd)
    print(board.stdout)
    with open(results / "board.csv") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    assert sorted((r["strategy"], r["n"]) for r in rows) == [("l2", "2"), ("naive", "2")]
    assert "| l2 |" in board.stdout and "| naive |" in board.stdout
    assert not list(cwd.iterdir()), "the commands wrote into the working directory"


def test_the_plugins_experiment_preset_is_on_hydras_search_path(installed):
    out = installed["started"]["preset"].result().stdout
    assert "scenario: domain" in out and "sweep_name: l2_split_mnist" in out
    preset = (installed["site"] / "forgetbench_l2" / "conf" / "experiment" / "l2_split_mnist.yaml").read_text()
    assert preset.startswith("# @package _global_\n#   forgetbench -m experiment=l2_split_mnist")


def test_the_install_holds_only_forgetbench_packages_and_the_checkout_is_untouched(installed):
    site = installed["site"]
    top = {p.name for p in site.iterdir()} - {"bin"}  # the two packages and their .dist-info folders, nothing else
    assert {n for n in top if not n.endswith(".dist-info")} == {"forgetbench", "forgetbench_l2"}
    assert sorted(n.split("-")[0] for n in top if n.endswith(".dist-info")) == ["forgetbench", "forgetbench_l2"]
    shipped = {p.relative_to(site).as_posix() for p in (site / "forgetbench_l2").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert shipped == {f for f in EXAMPLE_FILES if f.startswith("forgetbench_l2/")}  # the YAML is package data
    in_tree = {p.relative_to(EXAMPLE).as_posix() for p in EXAMPLE.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert in_tree == EXAMPLE_FILES, "building the plugin left files in the checkout"
    # this interpreter (the project's environment) knows nothing of the plugin
    assert "l2" not in {ep.name for ep in entry_points(group=plugins.GROUP)}
    assert importlib.util.find_spec("forgetbench_l2") is None


_IMPORTS = textwrap.dedent("""
    import importlib, json
    out = {}
    for name in ("benchmarks", "strategies", "scripts", "conf", "cli", "registry"):
        try:
            importlib.import_module(name)
            out[name] = "imported"
        except ModuleNotFoundError:
            out[name] = "ModuleNotFoundError"
    import forgetbench, forgetbench.benchmarks.metrics, forgetbench.strategies.plugins, forgetbench.cli
    out["forgetbench"] = forgetbench.__file__
    out["conf_origin"] = importlib.util.find_spec("forgetbench.conf").origin
    print(json.dumps(out))
""")


@pytest.mark.parametrize("install", ["wheel", "editable"])
def test_no_generic_top_level_name_is_importable(install, request, tmp_path, mnist_root):
    """Installed, only ``forgetbench`` (and its sub-packages) is importable: not the repository's folder names."""
    site = request.getfixturevalue("installed")["site"] if install == "wheel" else None
    out = json.loads(_sh([sys.executable, "-c", _IMPORTS], env=_env(site, mnist_root), cwd=tmp_path).stdout)
    for name in ("benchmarks", "strategies", "scripts", "conf", "cli", "registry"):
        assert out[name] == "ModuleNotFoundError", f"`import {name}` works after pip install"
    root = site if install == "wheel" else REPO / "scripts"
    assert Path(out["forgetbench"]).is_relative_to(root)
    assert Path(out["conf_origin"]).is_relative_to(site if install == "wheel" else REPO / "conf")


# Broken plugins: fake installed distributions (a dist-info folder with entry_points.txt, as pip writes it).

def _distribution(site: Path, dist: str, entry: str, module: str, files: dict[str, str]) -> None:
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{plugins.GROUP}]\n{entry} = {module}\n")
    for path, text in files.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_text(textwrap.dedent(text))


def _broken_plugins(site: Path) -> None:
    """Loaded in entry-point order: an import error, a taken name (after a good one: no half plugin), a good one."""
    _distribution(site, "fb-broken", "a_broken", "fb_broken", {
        "fb_broken/__init__.py": "import fb_not_installed_dependency\n",
        "fb_broken/conf/__init__.py": ""})
    _distribution(site, "fb-dup", "b_dup", "fb_dup", {
        "fb_dup/__init__.py": """
            from forgetbench import SupervisedTemplate, register_strategy

            register_strategy("_dup_first")(type("First", (SupervisedTemplate,), {}))
            register_strategy("naive")(type("MyNaive", (SupervisedTemplate,), {}))
            """,
        "fb_dup/conf/__init__.py": ""})
    _distribution(site, "fb-good", "c_good", "fb_good.strategy", {
        "fb_good/__init__.py": "",
        "fb_good/strategy.py": """
            from forgetbench import SupervisedTemplate, register_strategy

            @register_strategy("_good", scenarios=("class",))
            class Good(SupervisedTemplate):
                '''a plugin that loads'''

                def __init__(self, *, k: int = 3, **kwargs):
                    super().__init__(**kwargs)
            """,
        "fb_good/conf/__init__.py": "",
        "fb_good/conf/experiment/good.yaml": "# @package _global_\nepochs: 7\n"})


@pytest.fixture
def fake_plugins(clean_registry, monkeypatch, tmp_path):
    """The three plugins installed on sys.path, the registry set to load again; all undone afterwards
    (clean_registry, requested first, is torn down last: it removes what they registered)."""
    _broken_plugins(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(plugins, "_failed", set())
    yield tmp_path
    for name in [m for m in sys.modules if m.split(".")[0] in ("fb_broken", "fb_dup", "fb_good")]:
        del sys.modules[name]


def test_a_broken_plugin_is_skipped_with_a_warning_naming_its_package(fake_plugins):
    with pytest.warns(plugins.PluginWarning) as caught:
        registry.load_all()
    messages = [str(w.message) for w in caught if "strategy plugin" in str(w.message)]
    assert len(messages) == 2, messages
    assert "'a_broken' from package fb-broken 0.1 was not loaded: ModuleNotFoundError: " \
           "No module named 'fb_not_installed_dependency'" in messages[0]
    assert "'b_dup' from package fb-dup 0.1 was not loaded: ValueError: strategy 'naive' is already registered " \
           "to avalanche.training" in messages[1]
    names = registry.list_strategies()
    assert {"naive", "ewc", "replay", "_good"} <= set(names)
    assert "_dup_first" not in names  # what the failing plugin registered before failing is removed again
    assert registry.get_strategy("naive").cls.__module__.startswith("avalanche.")
    good = registry.get_strategy("_good")
    assert good.source == "fb-good 0.1" and good.defaults == {"k": 3} and good.description == "a plugin that loads"
    assert plugins.config_packages() == ["fb_good.conf"]  # not the failed plugins' conf packages


def test_the_command_line_survives_broken_plugins(installed):
    """A plugin taking a built-in name used to break ``import forgetbench.conf`` (Hydra's search path imported
    the plugin before the built-ins): the command must still compose, with the good plugin's strategy and preset."""
    result = installed["started"]["broken"].result()
    assert "strategy:\n  name: _good\n  k: 3\n" in result.stdout
    assert "\nepochs: 7\n" in result.stdout  # fb_good/conf/experiment/good.yaml
    assert "strategy plugin 'a_broken' from package fb-broken 0.1 was not loaded" in result.stderr
    assert "strategy plugin 'b_dup' from package fb-dup 0.1 was not loaded" in result.stderr
    assert "forgetbench-l2" not in result.stderr  # the real plugin, installed beside them, loads
