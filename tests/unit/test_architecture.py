"""The layering rules of DESIGN.md §1 and docs/architecture.md, checked on the source
(imports only, no execution)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("core", "bot", "senders", "webhooks", "admin_web", "smiling_steps")

# The capability packages of core/services and whom each may import besides itself. The flow
# runs one way: payments and booking queue notifications, everything writes the audit trail;
# nothing imports back against it (notifications and audit import no other capability).
ALLOWED_BETWEEN_CAPABILITIES: dict[str, frozenset[str]] = {
    "audit": frozenset(),
    "notifications": frozenset({"audit"}),  # an admin's "send again" is audited
    "settings": frozenset({"audit", "ops"}),  # saved M-Pesa mode; changes need an admin's password
    "payments": frozenset({"audit", "notifications", "settings"}),
    "booking": frozenset({"audit", "notifications", "settings"}),
    "reconciliation": frozenset({"audit", "settings"}),
    "ops": frozenset({"audit", "notifications"}),
    "reporting": frozenset({"audit", "notifications"}),  # read-only figures for the admin site
    "review": frozenset({"audit", "payments", "reporting"}),  # an admin's decision on a flagged payment
}
CAPABILITIES = tuple(ALLOWED_BETWEEN_CAPABILITIES)


def _imports(package: str) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found += [(path, node.module)]
                if node.module == "core.services":  # from core.services import audit
                    found += [(path, f"core.services.{alias.name}") for alias in node.names]
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
    assert _offenders("core", ("bot", "senders", "webhooks", "admin_web", "smiling_steps", "simulators",
                               "aiohttp.web", "telegram")) == []


def test_the_sdks_of_outside_services_are_wrapped_at_the_edge_not_in_core() -> None:
    assert _offenders("core", ("africastalking", "aiosmtplib")) == []


def test_senders_depend_on_core_only_not_on_other_adapters() -> None:
    assert _offenders("senders", ("bot", "webhooks", "admin_web", "smiling_steps", "simulators")) == []


def test_every_service_module_lives_in_a_capability_package() -> None:
    services = ROOT / "core" / "services"
    loose = [p.name for p in services.glob("*.py") if p.name != "__init__.py"]
    packages = sorted(p.name for p in services.iterdir() if (p / "__init__.py").exists())
    assert loose == []
    assert packages == sorted(CAPABILITIES)


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_capabilities_import_each_other_only_along_the_flow(capability: str) -> None:
    allowed = ALLOWED_BETWEEN_CAPABILITIES[capability] | {capability}
    forbidden = tuple(f"core.services.{other}" for other in CAPABILITIES if other not in allowed)
    assert _offenders(f"core/services/{capability}", forbidden) == []


def test_services_use_the_dialog_only_for_its_pure_values_and_message_catalogue() -> None:
    pure = ("core.dialog.values", "core.dialog.messages")
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path, name in _imports("core/services")
        if (name == "core.dialog" or name.startswith("core.dialog.")) and name not in pure
    ]
    assert offenders == []


def test_the_domain_is_pure_python() -> None:
    io_modules = ("sqlalchemy", "aiohttp", "httpx", "asyncio", "socket", "telegram", "africastalking",
                  "aiosmtplib", "os", "subprocess", "core.db", "core.services", "core.mpesa")
    assert _offenders("core/domain", io_modules) == []


@pytest.mark.parametrize("package", ["core", "bot", "senders", "webhooks", "admin_web", "simulators"])
def test_nothing_imports_the_composition_root(package: str) -> None:
    assert _offenders(package, ("smiling_steps",)) == []


def test_simulators_stay_independent_of_the_product() -> None:
    assert _offenders("simulators", PRODUCT) == []


def test_the_capability_packages_cannot_import_each_other_in_a_circle() -> None:
    # The allowed table is itself a graph: a circle in it would let two capabilities depend on
    # each other through a third (settings -> ops -> booking -> settings was one).
    assert _cycle({name: set(allowed) for name, allowed in ALLOWED_BETWEEN_CAPABILITIES.items()}) == []


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_import_graph_sees_from_package_import_module() -> None:
    graph = _import_graph("core/dialog")
    assert {"core.dialog.turn", "core.dialog.pay_flow"} <= graph["core.dialog.engine"]


@pytest.mark.parametrize("package", ["core/dialog", "simulators/telegram_api"])
def test_a_package_has_no_import_cycle(package: str) -> None:
    assert _cycle(_import_graph(package)) == []
