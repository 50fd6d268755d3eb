"""The layers: the window reads no database; the two sides share no code path."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"


def imported_modules(package: str) -> dict[str, set[str]]:
    """Map each module file of ``package`` to the modules it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((APP / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(APP))] = names
    return found


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{module} imports {name}"
        for module, names in imported_modules(package).items()
        for name in names
        if name.split(".")[0] in forbidden or name.startswith(forbidden)
    ]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("ui", ("sqlalchemy", "psycopg", "alembic", "app.ventra", "app.sim", "app.stack")),
        ("ventra", ("app.sim", "PySide6", "qasync", "app.ui")),
        ("sim", ("app.ventra", "PySide6", "qasync", "app.ui")),
        ("core", ("app.ventra", "app.sim", "app.ui", "PySide6", "qasync")),
    ],
)
def test_layer_imports(package: str, forbidden: tuple[str, ...]) -> None:
    """Each package keeps out of the layers it must not reach."""
    assert imported_modules(package), f"no modules found in app/{package}"
    assert offenders(package, forbidden) == []
