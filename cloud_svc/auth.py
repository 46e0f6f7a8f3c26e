"""Device authentication: bearer tokens from gRPC metadata, checked against stored hashes, briefly cached."""
from __future__ import annotations

import hmac
import threading
import time
from typing import Iterable, Optional

from cloud_svc.errors import Unauthenticated
from cloud_svc.store.devices import DeviceStore, hash_token

AUTH_HEADER = "authorization"
SCHEME = "bearer "


def bearer_token(metadata: Optional[Iterable[tuple[str, str]]]) -> str:
    """The token of an 'authorization: Bearer <token>' entry; '' when there is none."""
    for key, value in metadata or ():
        if key.lower() == AUTH_HEADER and isinstance(value, str) and value[:len(SCHEME)].lower() == SCHEME:
            return value[len(SCHEME):].strip()
    return ""


class TokenAuth:
    """Token -> device id. Positive answers are cached for `ttl_s`, so a revocation takes effect within it."""

    def __init__(self, devices: DeviceStore, ttl_s: float = 5.0):
        self.devices, self.ttl_s = devices, ttl_s
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> Optional[str]:
        """The device of a token checked less than `ttl_s` ago, without touching the database; else None."""
        hit = self._cache.get(hash_token(token)) if token else None
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def authenticate(self, token: str) -> str:
        if not token:
            raise Unauthenticated("missing bearer token ('authorization: Bearer <token>' metadata)")
        key = hash_token(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        device_id = self.devices.authenticate(token)  # raises Unauthenticated
        if self.ttl_s > 0:
            with self._lock:
                if len(self._cache) > 100_000:
                    self._cache.clear()
                self._cache[key] = (device_id, now + self.ttl_s)
        return device_id

    def refresh(self) -> int:
        """Re-check every cached token in one query (the server calls this every ttl/2), so that streams never
        wait on the database for their per-batch check and revocations still take effect within `ttl_s`."""
        with self._lock:
            keys = list(self._cache)
        if not keys:
            return 0
        valid = self.devices.active_tokens(keys)
        until = time.monotonic() + self.ttl_s
        with self._lock:
            for k in keys:
                if k in valid:
                    self._cache[k] = (valid[k], until)
                else:
                    self._cache.pop(k, None)
        return len(keys) - len(valid)

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()


class StaticTokenAuth:
    """One shared token (the Query API's optional operator token); compared in constant time."""

    def __init__(self, token: Optional[str]):
        self.token = token

    def check(self, metadata) -> None:
        if self.token is None:
            return
        given = bearer_token(metadata)
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            raise Unauthenticated("the Query API needs 'authorization: Bearer <query token>'")
