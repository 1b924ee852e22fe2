"""Prefect Blocks: credentials and settings that build followup's clients."""
