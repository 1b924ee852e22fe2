"""Helpers of the tests that save Blocks: a FollowupSettings document with placeholder services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr

from blocks import (
    FollowupSettings,
    GcnCredentials,
    HermesCredentials,
    LcoCredentials,
    TnsCredentials,
)

__all__ = ["followup_settings"]


def followup_settings(folder: Path, **fields: Any) -> FollowupSettings:
    """Settings with a SQLite ledger and a state directory in ``folder``; ``fields`` override.

    The service credentials are placeholders (their URLs the Blocks' defaults): pass ``lco``,
    ``hermes``, ``tns`` or ``gcn`` to point one somewhere.
    """
    values: dict[str, Any] = dict(
        ledger_url=SecretStr(f"sqlite:///{folder / 'ledger.db'}"),
        state_dir=str(folder / "state"),
        lco=LcoCredentials(api_token=SecretStr("unused"), proposal_id="NONE"),
        hermes=HermesCredentials(api_token=SecretStr("unused")),
        tns=TnsCredentials(
            api_key=SecretStr("unused"),
            bot_id=1,
            bot_name="bot",
            reporting_group_id=82,
            discovery_data_source_id=48,
            reporter="A. Author (LCO)",
        ),
        gcn=GcnCredentials(access_token=SecretStr("unused")),
        irsa_dust_url="",  # tests never reach IRSA
    )
    values.update(fields)
    return FollowupSettings(**values)
