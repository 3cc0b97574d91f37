"""The layering rules of DESIGN.md §1, checked on the source (imports only, no execution)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("core", "bot", "webhooks", "admin_web", "smiling_steps")


def _imports(package: str) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found += [(path, node.module)]
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports, counting imports under TYPE_CHECKING too."""
    paths = {_module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:  # relative: from the module's own package, one level up per extra dot
                    parts = name.split(".")
                    base = parts[: len(parts) - node.level + is_package]
                    module = ".".join([*base, module] if module else base)
                targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[name] |= {t for t in targets if t in paths and t != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as ``[a, b, …, a]``, or ``[]`` when the graph has none."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return [*path[path.index(node):], node]
        if node in done:
            return []
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt, [*path, node])
            if found:
                return found
        done.add(node)
        return []

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return []


def _offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path, name in _imports(package)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


def test_core_imports_no_adapter_and_no_web_or_telegram_framework() -> None:
    assert _offenders("core", ("bot", "webhooks", "admin_web", "smiling_steps", "simulators",
                               "aiohttp.web", "telegram")) == []


def test_the_domain_is_pure_python() -> None:
    io_modules = ("sqlalchemy", "aiohttp", "httpx", "asyncio", "socket", "telegram", "africastalking",
                  "aiosmtplib", "os", "subprocess", "core.db", "core.services", "core.mpesa")
    assert _offenders("core/domain", io_modules) == []


@pytest.mark.parametrize("package", ["core", "bot", "webhooks", "admin_web", "simulators"])
def test_nothing_imports_the_composition_root(package: str) -> None:
    assert _offenders(package, ("smiling_steps",)) == []


def test_simulators_stay_independent_of_the_product() -> None:
    assert _offenders("simulators", PRODUCT) == []


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_import_graph_sees_from_package_import_module() -> None:
    graph = _import_graph("core/dialog")
    assert {"core.dialog.turn", "core.dialog.pay_flow"} <= graph["core.dialog.engine"]


@pytest.mark.parametrize("package", ["core/dialog", "simulators/telegram_api"])
def test_a_package_has_no_import_cycle(package: str) -> None:
    assert _cycle(_import_graph(package)) == []
