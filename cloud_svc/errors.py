"""The cloud service's exception hierarchy, and the one table that maps it to gRPC status codes."""
from __future__ import annotations

import grpc


class CloudError(Exception):
    """Base class of every deliberate cloud_svc error."""


class ConfigError(CloudError):
    """The configuration has an unknown key or a value out of range."""


class InvalidMessage(CloudError):
    """A message (or one field of it) is malformed; `field` names it, e.g. "batch.records[2].event.label"."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.detail = field, message


class ClipNotUploaded(InvalidMessage):
    """A record refers by hash to a clip that was never uploaded: a precondition of the record, not a bad field."""


class Unauthenticated(CloudError):
    """No token, an unknown token, or the token of a revoked device."""


class PermissionDenied(CloudError):
    """The caller is authenticated but may not do this (e.g. speak for another device)."""


class NotFound(CloudError):
    """The thing asked for does not exist."""


class AlreadyExists(CloudError):
    """A device with this id is already registered."""


class StorageUnavailable(CloudError):
    """The database cannot be reached or keeps failing; clients should retry later."""


class WriteConflict(StorageUnavailable):
    """The transaction lost a race for the same rows and was rolled back, so nothing of it was written: a
    deadlock, a lock wait timeout, or on a Galera cluster a certification failure (another node committed a
    conflicting write first). Running the whole transaction again is safe and usually succeeds at once."""


class ClipStoreError(CloudError):
    """A clip cannot be written to or read from the clip store (disk or bucket unreachable); clients retry."""


class ClipMissing(ClipStoreError):
    """A record refers to a clip that was never uploaded."""


class ExportError(CloudError):
    """An export cannot start or finish: a bad output folder, a database or clip store that is not there."""


class Draining(CloudError):
    """The server is shutting down; clients reconnect (to another replica)."""


class VerifierUnavailable(CloudError):
    """A verifier cannot run here: its model or weights are missing. The message says how to get them."""


class CheckpointError(VerifierUnavailable):
    """A model checkpoint does not have the layout the architecture needs."""


# Domain error -> gRPC status. The first matching class (in MRO order of the raised error) wins.
STATUS: dict[type[CloudError], grpc.StatusCode] = {
    ClipNotUploaded: grpc.StatusCode.FAILED_PRECONDITION,
    InvalidMessage: grpc.StatusCode.INVALID_ARGUMENT,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    StorageUnavailable: grpc.StatusCode.UNAVAILABLE,
    Draining: grpc.StatusCode.UNAVAILABLE,
    ClipMissing: grpc.StatusCode.FAILED_PRECONDITION,
    ClipStoreError: grpc.StatusCode.UNAVAILABLE,  # an outage of the store: the edge keeps the batch, retries
    VerifierUnavailable: grpc.StatusCode.FAILED_PRECONDITION,
    ConfigError: grpc.StatusCode.INTERNAL,
}


def status_of(exc: BaseException) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return grpc.StatusCode.INTERNAL


class ServerUnavailable(CloudError):
    """The server cannot be reached, is shutting down, or did not answer in time."""


class RemoteError(CloudError):
    """The server answered with a status this client has no better exception for."""


# gRPC status -> what a client raises (the inverse of STATUS, for the client side).
FROM_STATUS: dict[grpc.StatusCode, type[CloudError]] = {
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.UNAVAILABLE: ServerUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: ServerUnavailable,
}


def from_rpc_error(exc: grpc.RpcError) -> CloudError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field, _, msg = (details or "").partition(": ")
        return InvalidMessage(field, msg or details or "")
    cls = FROM_STATUS.get(code, RemoteError)
    return cls(f"{code.name}: {details}")


MAX_DETAIL = 2000  # characters of a status's details: gRPC clients refuse trailing metadata over 16 KiB


def detail(exc_or_text) -> str:
    """A status detail short enough for any client (a client-sent value quoted in it may be huge)."""
    text = str(exc_or_text)
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL - 20] + f"… ({len(text)} characters)"
