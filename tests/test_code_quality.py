"""The habits of the house, held by tests so that a change cannot drop them silently: ruff (lint and format) and
mypy clean, the import layers of pyproject.toml kept with no circle, every subpackage naming what it offers, and
the version defined in one place and listed in the CHANGELOG."""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO

BIN = Path(sys.executable).parent
CODE = ["src", "tests", "benchmarks", "scripts"]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SUBPACKAGES = sorted(p.parent.name for p in (REPO / "src" / "engage").glob("*/__init__.py"))


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists() and shutil.which(name) is None:
        pytest.skip(f"needs {name} (the extra 'dev')")
    return str(path if path.exists() else shutil.which(name))


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing_to_fix_and_nothing_to_reformat():
    lint = run(tool("ruff"), "check", *CODE)
    assert lint.returncode == 0, lint.stdout[-4000:]
    formatted = run(tool("ruff"), "format", "--check", *CODE)
    assert formatted.returncode == 0, formatted.stdout[-4000:]


def test_mypy_finds_no_type_error_in_src():
    checked = run(tool("mypy"))  # files and strictness: pyproject.toml [tool.mypy]
    assert checked.returncode == 0, checked.stdout[-6000:]
    assert PYPROJECT["tool"]["mypy"]["disallow_untyped_defs"] is True  # every function typed


def test_the_import_layers_hold_and_cover_every_subpackage():
    """import-linter holds the layers contract; every subpackage and top-level module sits on a layer (a new
    package cannot stay outside the contract), and no modules of one package import each other in a circle."""
    linted = run(tool("lint-imports"), "--config", "pyproject.toml")
    assert linted.returncode == 0, linted.stdout[-4000:]
    contract = PYPROJECT["tool"]["importlinter"]["contracts"][0]
    placed = {name.strip() for layer in contract["layers"] for name in layer.split("|")}
    modules = {f"engage.{name}" for name in SUBPACKAGES}
    modules |= {f"engage.{p.stem}" for p in (REPO / "src" / "engage").glob("*.py") if p.stem != "__init__"}
    assert modules - placed == set(), f"not on any layer of [tool.importlinter]: {sorted(modules - placed)}"

    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import_graph = importlib.import_module("import_graph")
    finally:
        sys.path.remove(str(REPO / "scripts"))
    report = import_graph.report(import_graph.module_graph(None), import_graph.layers_of(REPO / "pyproject.toml"))
    assert report["module_circles"] == [] and report["box_circles"] == [] and report["against_layers"] == []


@pytest.mark.parametrize("name", ["engage"] + [f"engage.{name}" for name in SUBPACKAGES])
def test_every_package_names_what_it_offers_and_each_name_is_there(name):
    package = importlib.import_module(name)
    assert package.__doc__ and len(package.__doc__.split()) >= 8, f"{name}: say what the package is for"
    assert package.__all__, f"{name}: __all__ names nothing"
    submodules = {p.stem for p in Path(package.__file__).parent.glob("*.py")} | {
        p.parent.name for p in Path(package.__file__).parent.glob("*/__init__.py")
    }
    clashes = set(package.__all__) & submodules
    assert not clashes, (
        f"{name} offers names that are also its modules (which one you get depends on import order): {clashes}"
    )
    for attribute in package.__all__:
        assert getattr(package, attribute) is not None, f"{name}.{attribute}"
    assert set(package.__all__) <= set(dir(package))


def test_the_version_is_defined_once_and_in_the_changelog():
    import engage
    from engage.version import __version__

    assert PYPROJECT["project"]["dynamic"] == ["version"] and "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "engage.version.__version__"}
    assert engage.__version__ == __version__ == importlib.metadata.version("engage")
    literal = re.compile(r"""__version__\s*=|version\s*=\s*["']\d+\.\d+""")
    defined = [p.relative_to(REPO) for p in (REPO / "src").rglob("*.py") if literal.search(p.read_text())]
    assert defined == [Path("src/engage/version.py")]
    changelog = (REPO / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", changelog, re.M)
    assert releases and releases[0] == __version__, f"the CHANGELOG's newest release is {releases[:1]}"
