"""The layers of DESIGN.md, checked on the source: ``geometry`` imports no torch, gradio or
SQLAlchemy; ``models`` no gradio or SQLAlchemy; ``ui`` neither SQLAlchemy nor the store (the
review service is its only door to the database). Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "depthweb"

FORBIDDEN = {
    "geometry": ("torch", "gradio", "sqlalchemy"),
    "models": ("gradio", "sqlalchemy"),
    "ui": ("sqlalchemy", "depthweb.store", "alembic"),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports (absolute names; relative imports resolved), with lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return found


def violations(layer: str) -> list[str]:
    banned = FORBIDDEN[layer]
    out = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for line, name in imported_modules(path):
            if any(name == b or name.startswith(b + ".") for b in banned):
                out.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    return out


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_what_the_design_allows(layer):
    assert (PACKAGE / layer).is_dir()
    assert violations(layer) == []


def test_the_checker_sees_imports_inside_functions_and_relative_ones(tmp_path, monkeypatch):
    pkg = tmp_path / "depthweb" / "ui"
    pkg.mkdir(parents=True)
    (pkg / "tab.py").write_text("def f():\n    from ..store import repo\n"
                                "    import sqlalchemy.orm\n", encoding="utf-8")
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path / "depthweb")
    assert violations("ui") == ["depthweb/ui/tab.py:2 imports depthweb.store",
                                "depthweb/ui/tab.py:2 imports depthweb.store.repo",
                                "depthweb/ui/tab.py:3 imports sqlalchemy.orm"]
