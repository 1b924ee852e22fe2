"""The ``followup`` console script: the core commands plus those that need Prefect or the stack."""

from __future__ import annotations

from followup.cli import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``followup`` console script."""
    app()
