"""Deployments: serve.py (prefect.yaml without a work pool), connectors files and examples."""
