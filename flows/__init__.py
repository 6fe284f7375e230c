"""Prefect flows: onboarding, recurring sync, uploads, after-upload, the fleet, and what they share."""
