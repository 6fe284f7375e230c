"""Source keys as Prefect artifact keys accept them."""


def artifact_slug(source_key: str) -> str:
    """A source key as Prefect artifact keys allow it (lowercase letters, digits and dashes only)."""
    return "".join(c if c.isalnum() else "-" for c in source_key.lower())
