"""The package's layering, read from the source: no import cycles, models import nothing of ours,
adapters import only models/config/chat, and only the wiring opens the store."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bot"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> dict[str, int]:
    """Our modules `path` imports (at any level: top, function or TYPE_CHECKING), by first line."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            # `from bot import jobs` imports the module bot.jobs; `from bot import x` else bot.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.setdefault(target, node.lineno)
    return found


GRAPH = {name: imports(path, set(modules())) for name, path in modules().items()}


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_graph_reader_sees_every_kind_of_import() -> None:
    # A cycle through a function-level or TYPE_CHECKING import is a cycle too.
    assert "bot.models" in GRAPH["bot.jobs"]
    assert "bot.jobs" in GRAPH["bot.folder"]  # `from bot import articles, jobs, qa`
    assert "bot.chat.render" in GRAPH["bot.chat.console"]
    assert "bot.chat" in GRAPH["bot.chat.server"]
    assert "bot.learn" in GRAPH["bot.cli"]  # imported inside a command
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]


def test_bot_has_no_import_cycle() -> None:
    found = cycles(GRAPH)
    where = [
        f"{a}:{GRAPH[a][b]} imports {b}"
        for cycle in found
        for a in cycle
        for b in GRAPH[a]
        if b in cycle
    ]
    assert found == [], where


def test_models_import_nothing_of_ours() -> None:
    assert GRAPH["bot.models"] == {}


ADAPTER_IMPORTS = {"bot.models", "bot.config"}


@pytest.mark.parametrize("adapter", sorted(n for n in GRAPH if n.startswith("bot.chat")))
def test_chat_adapters_import_only_models_config_render_and_chat(adapter: str) -> None:
    # The renderer words posts in the chat's language: the message catalogue is its one extra.
    allowed = ADAPTER_IMPORTS | ({"bot.messages"} if adapter == "bot.chat.render" else set())
    outside = {
        target: line
        for target, line in GRAPH[adapter].items()
        if target not in allowed and target != "bot.chat" and not target.startswith("bot.chat.")
    }
    assert outside == {}


def test_only_the_wiring_opens_the_store() -> None:
    # Every other module receives the repositories (or the engine) it uses, never the store.
    assert {name for name, targets in GRAPH.items() if "bot.store" in targets} <= {
        "bot.app",
        "bot.cli",
    }
