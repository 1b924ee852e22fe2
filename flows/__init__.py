"""Prefect flows: the follow-up loop, one flow per stage under the parent ``followup`` flow."""
