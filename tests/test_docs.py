"""The documentation: the site builds with `mkdocs build --strict`, every `engage` command it shows names a real
subcommand and real options, every Python example compiles and names real things, the README stays short and its
links lead somewhere, and every page is reachable from the navigation."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
SHELL_BLOCKS = {"bash", "sh", "shell", "console", "zsh"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)")
LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
GLOBAL_OPTIONS = {"--help", "-h", "--version", "--debug"}
COMMAND_ENDS = {"&&", "||", ";", "|", ">", ">>", "<", "&"}


def documents() -> list[Path]:
    """The README and every Markdown page of the site (the hook's folder holds no pages)."""
    return [README, *sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.relative_to(DOCS).parts)]


def fenced_blocks(path: Path) -> list[tuple[str, int, str]]:
    """(language, first line number, text) of every fenced code block of a Markdown file."""
    blocks: list[tuple[str, int, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        body, j = [], i + 1
        while j < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[j]):
            line = lines[j]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())  # the fence's indent
            j += 1
        blocks.append((opening["lang"].lower(), i + 2, "\n".join(body)))
        i = j + 1
    return blocks


def engage_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `engage`) of every engage command in the shell blocks of the README and the docs."""
    found = []
    for path in documents():
        for lang, first_line, text in fenced_blocks(path):
            if lang not in SHELL_BLOCKS:
                continue
            for number, line in enumerate(text.replace("\\\n", " ").splitlines(), first_line):
                line = re.sub(r"^\$\s+", "", line.strip())  # a prompt
                if not re.search(r"(^|&&|;|\|)\s*(\S*/)?engage\s", line):
                    continue
                where = f"{path.relative_to(REPO)}:{number}: {line}"
                try:
                    tokens = shlex.split(line, comments=True)
                except ValueError as error:
                    pytest.fail(f"{where}: cannot be read as a shell command ({error})")
                segment: list[str] = []
                for token in [*tokens, ";"]:
                    if token not in COMMAND_ENDS:
                        segment.append(token)
                        continue
                    if segment and (segment[0] == "engage" or segment[0].endswith("/engage")):
                        found.append((where, segment[1:]))
                    segment = []
    return found


def test_every_engage_command_in_the_readme_and_docs_exists():
    """Each command names a subcommand of `engage` (the click group of engage.cli) and only options that the
    subcommand (or engage itself) takes; arguments and placeholders are not checked."""
    import click

    from engage.cli import app

    commands = engage_commands()
    assert len(commands) >= 20, "the README and the guide show far more engage commands than were found"
    used = set()
    for where, argv in commands:
        words = [word for word in argv if not word.startswith("-")]
        assert words, f"{where}: no subcommand"
        command: click.Command = app
        for word in words:
            if not isinstance(command, click.Group):
                break
            assert word in command.commands, f"{where}: engage has no command {word!r} (it has {sorted(app.commands)})"
            command = command.commands[word]
        used.add(command.name)
        known = {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]} | GLOBAL_OPTIONS
        for word in argv:
            if word == "--":
                break
            if word.startswith("-") and len(word) > 1 and not re.fullmatch(r"-\d+(\.\d+)?", word):
                option = word.split("=", 1)[0]
                assert option in known, f"{where}: `engage {command.name}` has no option {option}"
    assert used == set(app.commands), f"commands with no example in the README or docs: {set(app.commands) - used}"


def _resolve(root: object, attributes: list[str], where: str) -> None:
    """Follow `root.a.b...` while the objects are modules or classes, failing on a name that is not there."""
    value = root
    for attribute in attributes:
        if not (isinstance(value, types.ModuleType) or inspect.isclass(value)):
            return
        if hasattr(value, attribute):
            value = getattr(value, attribute)
            continue
        if inspect.isclass(value) and (
            attribute in getattr(value, "__dataclass_fields__", {})
            or any(attribute in getattr(c, "__annotations__", {}) for c in value.__mro__)
        ):
            return  # an instance field
        if isinstance(value, types.ModuleType):
            try:
                value = importlib.import_module(f"{value.__name__}.{attribute}")
                continue
            except ModuleNotFoundError:
                pass
        pytest.fail(f"{where}: {getattr(value, '__name__', value)!s} has no attribute {attribute!r}")


def _chain(node: ast.AST) -> tuple[str, list[str]] | None:
    """`name.a.b` as ("name", ["a", "b"]), or None when the chain does not start at a plain name."""
    attributes = []
    while isinstance(node, ast.Attribute):
        attributes.append(node.attr)
        node = node.value
    return (node.id, attributes[::-1]) if isinstance(node, ast.Name) else None


def test_python_examples_in_the_docs_compile_and_name_real_things():
    """Every ```python block parses, every `from engage... import X` imports, and every `engage.X.Y` it uses (and
    every attribute of a name it imported from engage) exists."""
    blocks = [
        (path, first_line, text)
        for path in documents()
        for lang, first_line, text in fenced_blocks(path)
        if lang in ("python", "py", "python3")
    ]
    assert len(blocks) >= 4, "the README and the Python guide hold several Python examples"
    checked = 0
    for path, first_line, text in blocks:
        where = f"{path.relative_to(REPO)}:{first_line}"
        try:
            tree = ast.parse(text, filename=where)
        except SyntaxError as error:
            pytest.fail(f"{where}: the example does not compile: {error}")
        bound: dict[str, object] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "engage":
                        module = importlib.import_module(alias.name)
                        top = alias.name if alias.asname else alias.name.split(".")[0]
                        bound[alias.asname or top] = module if alias.asname else importlib.import_module(top)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "engage" and not node.level:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if hasattr(module, alias.name):
                        bound[alias.asname or alias.name] = getattr(module, alias.name)
                    else:
                        try:
                            bound[alias.asname or alias.name] = importlib.import_module(f"{node.module}.{alias.name}")
                        except ModuleNotFoundError:
                            pytest.fail(f"{where}: cannot import {alias.name} from {node.module}")
                    checked += 1
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):  # inner parts of a chain are checked again: cheap
                chain = _chain(node)
                if chain and chain[0] in bound:
                    _resolve(bound[chain[0]], chain[1], f"{where}: {chain[0]}.{'.'.join(chain[1])}")
                    checked += 1
    assert checked >= 20, "the examples name engage's API many times; the check found too few names"


def _github_anchors(path: Path) -> set[str]:
    """The anchors GitHub makes from a Markdown file's headings (code ticks dropped, punctuation removed)."""
    anchors = set()
    in_block = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_block = not in_block
        elif not in_block and (heading := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)):
            text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading[1]).replace("`", "").lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def test_readme_is_short_and_its_links_resolve():
    """The README is for a first read: at most 250 lines, and every relative link (file and anchor) leads to
    something in the repository."""
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move the detail to docs/"
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    links = [m["target"] for m in LINK.finditer(prose)]
    relative = [t for t in links if not re.match(r"^(https?:|mailto:|#)", t)]
    assert len(relative) >= 10, "the README links to the docs pages"
    for target in relative:
        file, _, anchor = target.partition("#")
        path = (README.parent / file).resolve()
        assert path.exists(), f"README.md links to {target}, which does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in _github_anchors(path), f"README.md links to {target}: no heading makes #{anchor}"
    for target in (t for t in links if t.startswith("#")):
        assert target[1:] in _github_anchors(README), f"README.md links to {target}: no such heading"


def _nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [] if re.match(r"^[a-z]+://", nav) else [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return []


def test_every_docs_page_is_in_the_nav():
    """Every page under docs/ is in mkdocs.yml's nav (so a reader can reach it), and every nav entry exists."""
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with mkdocs (pip install mkdocs)")

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # !relative, !ENV: not needed here
    config = yaml.load((REPO / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)
    pages = _nav_pages(config["nav"])
    assert len(pages) == len(set(pages)), "a page is listed twice in the nav"
    for page in pages:
        assert (DOCS / page).is_file(), f"mkdocs.yml's nav lists {page}, which is not in docs/"
    excluded = [line.strip().rstrip("/") for line in str(config.get("exclude_docs") or "").splitlines() if line.strip()]
    on_disk = {
        p.relative_to(DOCS).as_posix()
        for p in DOCS.rglob("*.md")
        if not any(p.relative_to(DOCS).as_posix().startswith(prefix + "/") for prefix in excluded)
    }
    assert on_disk - set(pages) == set(), f"pages not in mkdocs.yml's nav: {sorted(on_disk - set(pages))}"


def test_the_docs_build_with_strict_mode(tmp_path):
    """`mkdocs build --strict`, as CI builds the site: a broken link or anchor, a page missing from the nav, a
    docstring mkdocstrings cannot render or an unreadable OpenAPI schema fails it."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install mkdocs-material mkdocstrings-python)")
    pytest.importorskip("material", reason="the Material theme is not installed (pip install mkdocs-material)")
    pytest.importorskip("mkdocstrings_handlers.python", reason="mkdocstrings-python is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-6000:]
    site = tmp_path / "site"
    assert (site / "http-api" / "index.html").is_file() and (site / "openapi.json").is_file()
    http_api = (site / "http-api" / "index.html").read_text(encoding="utf-8")
    assert "/v1/images" in http_api and "openapi:" not in http_api, "the HTTP API page was not written from the schema"
    reference = (site / "reference" / "index.html").read_text(encoding="utf-8")
    assert "from_pretrained" in reference, "the API reference holds no docstrings"
    assert "Changelog" in (site / "changelog" / "index.html").read_text(encoding="utf-8")
