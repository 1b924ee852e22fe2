"""Long-running processes and Prefect entry points: the listener, serve and deploy, the local stack."""
