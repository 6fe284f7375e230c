"""Connectors as code: diff a connectors file against the tenant (plan) and converge it (apply)."""
