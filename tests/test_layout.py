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


def test_layout_of_the_design_exists() -> None:
    for name in [
        "followup",
        "tasks",
        "flows",
        "blocks",
        "deployments",
        "sandbox",
        "tests",
        "benchmarks",
    ]:
        assert (REPO / name).is_dir(), name
    for name in ["prefect.yaml", "pyproject.toml", "Makefile", "README.md", ".ci/run", "LICENSE"]:
        assert (REPO / name).is_file(), name
    assert (REPO / "requirements" / "runtime.lock").is_file()
    assert (REPO / "requirements" / "dev.lock").is_file()
    assert "make test" in (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text().splitlines()[:5]
    assert any("make demo" in line for line in readme) and any(
        "make test" in line for line in readme
    )


def test_no_gpl_package_in_the_runtime_requirements() -> None:
    import tomllib

    runtime = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [
        r for r in runtime if r.lower().startswith(("igwn-gwalert-schema", "healpy", "ligo"))
    ]
    locked = (REPO / "requirements" / "runtime.lock").read_text()
    assert "igwn-gwalert-schema==" not in locked
