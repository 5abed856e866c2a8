"""Who may write or read: bearer tokens, and GPUStack's signed gateway header.

One ``Credentials`` decides, for both receivers and the metrics endpoint; the aiohttp
middleware, the gRPC interceptor and the scrape endpoint only read the headers and answer a
refusal. Every comparison is constant-time (``hmac.compare_digest``) and runs against every
configured token, so the time taken says nothing about which token came close. A refusal
carries one message whatever failed (missing header, wrong scheme, unknown token, bad
signature), so a caller learns nothing about what to change.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

REFUSED = "unauthenticated: missing or invalid credentials"
GATEWAY_HEADER = "X-GPUStack-Auth-Token"
GATEWAY_MESSAGE = b"gateway-metrics-push"
GATEWAY_PATH = "/v2/usage/gateway-metrics"
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


def gateway_signature(secret: str) -> str:
    """GPUStack's gateway header value: hex HMAC-SHA256 of ``gateway-metrics-push``."""
    return hmac.new(secret.encode(), GATEWAY_MESSAGE, hashlib.sha256).hexdigest()


def _bearer(header: str | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` value (scheme case-insensitive)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip().encode("utf-8", "replace")


def _matches(presented: bytes, accepted: Iterable[bytes]) -> bool:
    # Compare against every value, no short circuit: the time does not depend on which matched.
    results = [hmac.compare_digest(presented, value) for value in accepted]
    return any(results)


class Credentials:
    """What the configuration accepts. With no tokens and no secret, everything is open."""

    def __init__(
        self,
        tokens: Iterable[str] = (),
        gateway_secret: str | None = None,
        protect_health: bool = False,
    ) -> None:
        self._tokens = tuple(token.encode() for token in tokens)
        self._signature = (
            gateway_signature(gateway_secret).encode() if gateway_secret is not None else None
        )
        self.enabled = bool(self._tokens) or self._signature is not None
        self.protect_health = protect_health

    def bearer_ok(self, authorization: str | None) -> bool:
        token = _bearer(authorization)
        return token is not None and _matches(token, self._tokens)

    def gateway_ok(self, authorization: str | None, signature: str | None) -> bool:
        """The gateway push: a bearer token, or GPUStack's signature header."""
        if self._signature is not None and signature:
            presented = signature.strip().lower().encode("utf-8", "replace")
            if _matches(presented, (self._signature,)):
                return True
        return self.bearer_ok(authorization)

    def allows_http(self, path: str, authorization: str | None, signature: str | None) -> bool:
        if not self.enabled:
            return True
        if path in HEALTH_PATHS and not self.protect_health:
            return True
        if path == GATEWAY_PATH:
            return self.gateway_ok(authorization, signature)
        return self.bearer_ok(authorization)
