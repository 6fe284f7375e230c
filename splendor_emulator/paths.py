"""Where objects land on disk. Every path is resolved and checked to stay under bucket_root, as a second
line of defence behind the request validation of source keys, buckets and prefixes."""

import re
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UnsafePath(ValueError):
    pass


def object_path(bucket_root: Path, bucket: str, key: str) -> Path:
    root = bucket_root.resolve()
    if not bucket or "/" in bucket or bucket in (".", ".."):
        raise UnsafePath(f"bad bucket name {bucket!r}")
    target = (root / bucket / key).resolve()
    if not target.is_relative_to(root / bucket) or target == root / bucket:
        raise UnsafePath(f"object key {key!r} escapes its bucket")
    return target


def safe_filename(name: str | None, fallback: str) -> str:
    """Reduce a client-supplied filename to one harmless path segment (keeps the extension for routing)."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).strip("._")[:200]
    return cleaned or fallback
