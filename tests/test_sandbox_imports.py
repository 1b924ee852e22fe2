"""The sandbox imports nothing of the project but itself.

It defines the wire formats it serves on its own (state names, times, request and response
shapes): were it to borrow the clients' models, a client's mistake would be mirrored by its
stand-in instead of refused.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SANDBOX = Path(__file__).resolve().parents[1] / "sandbox"
PROJECT = {"followup", "tasks", "flows", "blocks", "deployments"}


def project_imports(path: Path) -> list[str]:
    """``line: module`` of every import of a project package in a file, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{node.lineno}: {name}" for name in names if name.split(".")[0] in PROJECT]
    return found


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text(
        "import json\nfrom sandbox.times import utcnow\n\n\ndef f():\n"
        "    from followup.models import LcoState\n    import deployments.stack\n"
    )
    assert project_imports(module) == ["6: followup.models", "7: deployments.stack"]


@pytest.mark.parametrize(
    "path",
    sorted(SANDBOX.rglob("*.py")),
    ids=lambda path: str(path.relative_to(SANDBOX.parent)),
)
def test_no_sandbox_module_imports_the_project(path: Path) -> None:
    assert project_imports(path) == []
