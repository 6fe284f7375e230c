"""Where a pipeline waits for a person: the shared admin wait, the OAuth consent, the field review."""
