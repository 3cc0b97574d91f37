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
