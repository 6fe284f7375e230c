"""The `splendor-flows` command line: console output, onboarding, sync, upload and fleet commands."""
