"""The domain core stays free of Prefect (and of the packages that wrap it)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CORE = {
    "prefect",
    "prefect_dask",
    "prefect_redis",
    "tasks",
    "flows",
    "blocks",
    "deployments",
}


def imported_top_level_names(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def test_domain_core_never_imports_prefect() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in sorted((REPO / "followup").rglob("*.py"))
        for name, line in imported_top_level_names(path)
        if name in FORBIDDEN_IN_CORE
    ]
    assert offenders == []
