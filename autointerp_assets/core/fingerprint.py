"""Fingerprints: short stable hashes of the JSON spec an artifact was made from.

A fingerprint names its kind (``corpus-…``, ``sae-…``, ``explainer-…``) so a bare value in a table
reads well; ``fingerprints`` keeps the spec so any row can be traced back to its inputs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping


def canonical(spec: Mapping[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(kind: str, spec: Mapping[str, Any]) -> str:
    return f"{kind}-{hashlib.sha256(canonical(spec).encode()).hexdigest()[:12]}"


def file_digest(path, chunk: int = 1 << 20, limit: int | None = 64 << 20) -> str:
    """sha256 of a file (the first ``limit`` bytes plus its size, so huge weights stay cheap)."""
    import os

    h = hashlib.sha256()
    size = os.path.getsize(path)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        read = 0
        while (b := f.read(chunk)) and (limit is None or read < limit):
            h.update(b)
            read += len(b)
    return h.hexdigest()[:16]
