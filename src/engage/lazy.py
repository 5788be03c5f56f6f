"""A package's face: the names it offers, imported only when first used, so that importing one module of engage
(or `import engage`) stays light and loads no network, detector or web framework it does not need.

A package lists its names once, as plain imports under `if TYPE_CHECKING:` in its `__init__.py`, which type
checkers, editors and the API reference read; `attach` reads that block from the same file and serves each name
on first use (PEP 562), so the list a reader sees is the list the package offers.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from typing import Any


def _offered(package: str, init_file: str) -> dict[str, tuple[str, str]]:
    """name -> (module, name in the module), from the `if TYPE_CHECKING:` imports of a package's __init__.py."""
    with open(init_file, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), init_file)
    offered: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if not (isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            continue
        for statement in node.body:
            if not isinstance(statement, ast.ImportFrom) or statement.module is None:
                continue
            module = statement.module
            if statement.level:
                module = ".".join([*package.split(".")[: len(package.split(".")) - statement.level + 1], module])
            for alias in statement.names:
                offered[alias.asname or alias.name] = (module, alias.name)
    return offered


def attach(package: str, init_file: str) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """(__getattr__, __dir__, __all__) for a package: `__getattr__, __dir__, __all__ = attach(__name__, __file__)`."""
    offered = _offered(package, init_file)
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name not in offered:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute = offered[name]
        value = getattr(importlib.import_module(module), attribute)
        namespace[name] = value  # once found, an ordinary attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *offered})

    return __getattr__, __dir__, sorted(offered)
