"""followup: the multi-messenger follow-up loop, from alert to telescope to report.

The domain core. Plain Python with no Prefect import: alert parsers, sky maps and targeting, the
LCO, HERMES, TNS and GCN clients, reduction, photometry and the ledger. Prefect tasks and flows in
the sibling packages ``tasks`` and ``flows`` wrap these functions.
"""

__version__ = "0.1.0"
