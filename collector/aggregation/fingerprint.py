"""Stable digests for idempotency keys and stream identities."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def _fallback(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    return repr(value)


def digest(*parts: Any) -> str:
    """A 128-bit hex digest of the canonical JSON of ``parts`` (keys sorted)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=_fallback)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
