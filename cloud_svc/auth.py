"""Authentication: device bearer tokens (Ingest) and user bearer tokens (Query), from gRPC metadata, checked
against stored hashes, briefly cached."""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Generic, Iterable, Optional, TypeVar

import grpc

from cloud_svc.errors import CloudError, Unauthenticated, detail, status_of
from cloud_svc.store.devices import DeviceStore, hash_token
from cloud_svc.store.users import User, UserStore

AUTH_HEADER = "authorization"
SCHEME = "bearer "
T = TypeVar("T")


def bearer_token(metadata: Optional[Iterable[tuple[str, str]]]) -> str:
    """The token of an 'authorization: Bearer <token>' entry; '' when there is none."""
    for key, value in metadata or ():
        if key.lower() == AUTH_HEADER and isinstance(value, str) and value[:len(SCHEME)].lower() == SCHEME:
            return value[len(SCHEME):].strip()
    return ""


class TtlCache(Generic[T]):
    """Token hash -> what it authenticated, each entry valid for `ttl_s` (0: nothing is kept); thread-safe and
    bounded (cleared when it would grow past `max_entries`)."""

    def __init__(self, ttl_s: float, max_entries: int):
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._entries: dict[str, tuple[T, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[T]:
        with self._lock:
            hit = self._entries.get(key)
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def put(self, key: str, value: T) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (value, time.monotonic() + self.ttl_s)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def renew(self, keys: Iterable[str], valid: dict[str, T]) -> None:
        """Extend those of `keys` found in `valid` (with their current value) and drop the others."""
        until = time.monotonic() + self.ttl_s
        with self._lock:
            for k in keys:
                if k in valid:
                    self._entries[k] = (valid[k], until)
                else:
                    self._entries.pop(k, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class TokenAuth:
    """Token -> device id. Positive answers are cached for `ttl_s`, so a revocation takes effect within it."""

    def __init__(self, devices: DeviceStore, ttl_s: float = 5.0):
        self.devices, self.ttl_s = devices, ttl_s
        self._cache: TtlCache[str] = TtlCache(ttl_s, 100_000)

    def cached(self, token: str) -> Optional[str]:
        """The device of a token checked less than `ttl_s` ago, without touching the database; else None."""
        return self._cache.get(hash_token(token)) if token else None

    def authenticate(self, token: str) -> str:
        if not token:
            raise Unauthenticated("missing bearer token ('authorization: Bearer <token>' metadata)")
        key = hash_token(token)
        device_id = self._cache.get(key)
        if device_id is None:
            device_id = self.devices.authenticate(token)  # raises Unauthenticated
            self._cache.put(key, device_id)
        return device_id

    def refresh(self) -> int:
        """Re-check every cached token in one query (the server calls this every ttl/2), so that streams never
        wait on the database for their per-batch check and revocations still take effect within `ttl_s`."""
        keys = self._cache.keys()
        if not keys:
            return 0
        valid = self.devices.active_tokens(keys)
        self._cache.renew(keys, valid)
        return len(keys) - len(valid)

    def forget(self) -> None:
        self._cache.clear()


class QueryAuth:
    """Query API credentials: a user's bearer token -> the user, cached for `ttl_s` (like device tokens).
    `open_query` lets every call in (a loopback test server only; the config refuses it elsewhere)."""

    def __init__(self, users: UserStore, *, ttl_s: float = 5.0, open_query: bool = False):
        self.users, self.ttl_s, self.open = users, ttl_s, open_query
        self._cache: TtlCache[User] = TtlCache(ttl_s, 10_000)

    def authenticate(self, metadata) -> Optional[User]:
        """The calling user; None when the API is open. Raises Unauthenticated."""
        if self.open:
            return None
        token = bearer_token(metadata)
        key = hash_token(token) if token else ""
        user = self._cache.get(key)
        if user is None:
            user = self.users.authenticate(token)  # raises Unauthenticated
            self._cache.put(key, user)
        return user


class QueryAuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks the credential of every Query call before anything else: before the request is even parsed, so
    that a bad argument with a bad token gets UNAUTHENTICATED, never INVALID_ARGUMENT. Then request bytes that
    do not parse get INVALID_ARGUMENT."""

    def __init__(self, auth: QueryAuth, service: str):
        self.auth, self.prefix = auth, f"/{service}/"

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or not details.method.startswith(self.prefix):
            return handler
        if not self.auth.open:
            try:
                await asyncio.to_thread(self.auth.authenticate, details.invocation_metadata)
            except CloudError as exc:
                return _refusal(handler, status_of(exc), detail(exc))
        return _tolerant(handler)


class _Undecodable:
    def __init__(self, error: str):
        self.error = error


def _tolerant(handler):
    """`handler` with request bytes that do not parse answered INVALID_ARGUMENT (not UNKNOWN)."""
    parse = handler.request_deserializer
    if parse is None or handler.request_streaming:
        return handler

    def deserialize(raw: bytes):
        try:
            return parse(raw)
        except Exception as exc:  # noqa: BLE001 - DecodeError and friends
            return _Undecodable(str(exc) or type(exc).__name__)

    def refuse(request) -> str:
        return detail(f"the request is not a valid message: {request.error}")

    if handler.response_streaming:
        inner = handler.unary_stream

        async def unary_stream(request, context):
            if isinstance(request, _Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refuse(request))
            async for item in inner(request, context):
                yield item

        return handler._replace(request_deserializer=deserialize, unary_stream=unary_stream)
    inner_unary = handler.unary_unary

    async def unary_unary(request, context):
        if isinstance(request, _Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refuse(request))
        return await inner_unary(request, context)

    return handler._replace(request_deserializer=deserialize, unary_unary=unary_unary)


def _refusal(handler, code: grpc.StatusCode, message: str):
    """A handler of the same shape as `handler` that reads nothing and ends the call with `code`."""
    async def unary(_request, context):
        await context.abort(code, message)

    async def streaming(_request, context):
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator; abort() raises

    raw = {"request_deserializer": None, "response_serializer": None}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming, **raw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(unary, **raw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming, **raw)
    return grpc.unary_unary_rpc_method_handler(unary, **raw)
