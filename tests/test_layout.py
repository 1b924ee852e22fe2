"""The layout of the design, and imports that point down only.

deployments -> flows -> tasks -> followup; blocks beside them (blocks -> followup; tasks and flows
may use blocks); followup imports nothing above it (nor Prefect); the sandbox imports nothing of
the project but itself. Every import counts, those inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("followup", "sandbox", "blocks", "tasks", "flows", "deployments", "benchmarks", "tests")
"""The project's top-level folders; an import of one of them is a project import."""

ALLOWED: dict[str, set[str]] = {
    "followup": {"followup"},
    "sandbox": {"sandbox"},
    "blocks": {"blocks", "followup"},
    "tasks": {"tasks", "blocks", "followup"},
    "flows": {"flows", "tasks", "blocks", "followup"},
    "deployments": {"deployments", "flows", "tasks", "blocks", "followup", "sandbox"},
    "benchmarks": set(PACKAGES) - {"tests"},
    "tests": set(PACKAGES),
}
"""The project packages each folder may import (the local stack of ``deployments`` runs the
sandbox; benchmarks use anything but the tests; tests use anything)."""

FORBIDDEN_IN_CORE = {"prefect", "prefect_dask", "prefect_redis"}
"""Third-party packages the domain core must not import: it runs in a notebook without Prefect."""


def imported_modules(path: Path, root: Path = REPO) -> list[tuple[str, int]]:
    """Every import of a file as ``(absolute module, line)``, in functions and classes too.

    A relative import is resolved against the file's package, so ``from .. import x`` in
    ``flows/a/b.py`` counts as ``flows.x``.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(root).parent.parts
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            if node.module:
                found.append((".".join([*base, node.module]), node.lineno))
            else:
                found += [(".".join([*base, a.name]), node.lineno) for a in node.names]
    return found


def layer_violations(path: Path, root: Path = REPO) -> list[str]:
    """``path:line imports module`` for each import the file's folder may not make."""
    folder = path.relative_to(root).parts[0]
    offenders = []
    for module, line in imported_modules(path, root):
        top = module.split(".")[0]
        if (top in PACKAGES and top not in ALLOWED[folder]) or (
            folder == "followup" and top in FORBIDDEN_IN_CORE
        ):
            offenders.append(f"{path.relative_to(root)}:{line} imports {module}")
    return offenders


def test_every_folder_with_python_has_its_rule() -> None:
    folders = {
        p.name
        for p in REPO.iterdir()
        if p.is_dir() and not p.name.startswith((".", "build")) and any(p.rglob("*.py"))
    }
    assert folders <= set(ALLOWED), folders - set(ALLOWED)


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_imports_point_down_only(folder: str) -> None:
    offenders = [v for p in sorted((REPO / folder).rglob("*.py")) for v in layer_violations(p)]
    assert offenders == []


def test_the_check_catches_a_bad_import_anywhere(tmp_path: Path) -> None:
    """The check sees imports at the top, inside functions and relative ones, per folder."""
    for folder, text in {
        "followup": "import json\n\n\ndef f():\n    from prefect import flow\n",
        "tasks": "class A:\n    def m(self):\n        import flows.report\n",
        "flows": "from .. import deployments\nfrom deployments.serve import main\n",
        "sandbox": "from sandbox.times import utcnow\nimport followup.models as m\n",
        "blocks": "from followup.ledger import Ledger\nfrom tasks.retry import SERVICE_RETRIES\n",
        "deployments": "from sandbox.server import SandboxConfig\nfrom tests import helpers\n",
    }.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "module.py").write_text(text)
    found = {
        folder: layer_violations(tmp_path / folder / "module.py", tmp_path)
        for folder in ("followup", "tasks", "flows", "sandbox", "blocks", "deployments")
    }
    assert found == {
        "followup": ["followup/module.py:5 imports prefect"],
        "tasks": ["tasks/module.py:3 imports flows.report"],
        "flows": [
            "flows/module.py:1 imports deployments",
            "flows/module.py:2 imports deployments.serve",
        ],
        "sandbox": ["sandbox/module.py:2 imports followup.models"],
        "blocks": ["blocks/module.py:2 imports tasks.retry"],
        "deployments": ["deployments/module.py:2 imports tests"],
    }


def test_secrets_are_unwrapped_in_blocks_only() -> None:
    """Flows, tasks and deployments get clients and ledgers from Blocks, never a bare secret.

    (The HTTP clients in ``followup/`` take the Block's ``SecretStr`` and read it per request.)
    """
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in ("flows", "tasks", "deployments")
        for path in sorted((REPO / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "get_secret_value" in line
    ]
    assert offenders == []


def test_layout_of_the_design_exists() -> None:
    for name in PACKAGES:
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


def test_the_readme_links_the_operators_manual() -> None:
    readme = (REPO / "README.md").read_text()
    for page in ("docs/operating.md", "docs/production.md"):
        assert (REPO / page).is_file(), page
        assert f"]({page}" in readme, page


def test_no_gpl_package_in_the_runtime_requirements() -> None:
    import tomllib

    runtime = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [
        r for r in runtime if r.lower().startswith(("igwn-gwalert-schema", "healpy", "ligo"))
    ]
    locked = (REPO / "requirements" / "runtime.lock").read_text()
    assert "igwn-gwalert-schema==" not in locked
