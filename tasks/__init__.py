"""Prefect tasks: thin wrappers over followup, adding retries, caching and artifacts."""
