"""The one gRPC channel builder of both sides: TLS or mTLS from PEM files, message limits, keepalives.

The edge's uplink and the cloud's query client open their channels here, so both speak to a server with the
same credentials handling and the same limits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import grpc

from edgert.errors import SettingsError

DEFAULT_MAX_MESSAGE_BYTES = 4 << 20


class TlsFileError(SettingsError):
    """A TLS certificate, key or CA file named in the settings cannot be read."""


def _pem(path: Optional[str], what: str) -> Optional[bytes]:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsFileError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from None


def open_channel(target: str, *, tls: bool = False, ca: Optional[str] = None, cert: Optional[str] = None,
                 key: Optional[str] = None, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 keepalive_s: Optional[float] = None, keepalive_timeout_s: float = 20.0,
                 reconnect_backoff_s: Optional[tuple[float, float]] = None, grpc_retries: bool = True
                 ) -> grpc.Channel:
    """A channel to HOST:PORT `target`: TLS when `tls` or any of `ca` (root CAs; default: the system's), `cert`
    and `key` (a client certificate for mTLS) is given, else plaintext. `keepalive_s` pings an idle connection
    (and tolerates pings without calls); `reconnect_backoff_s` is gRPC's (first, longest) reconnect wait;
    `grpc_retries` False turns off gRPC's own (transparent) retries for a caller that retries by itself."""
    if (cert is None) != (key is None):
        raise SettingsError("a TLS client certificate and its key go together (give both or neither)")
    opts: list[tuple[str, int]] = [("grpc.max_send_message_length", max_message_bytes),
                                   ("grpc.max_receive_message_length", max_message_bytes)]
    if not grpc_retries:
        opts.append(("grpc.enable_retries", 0))
    if keepalive_s is not None:
        opts += [("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
                 ("grpc.keepalive_timeout_ms", int(keepalive_timeout_s * 1000)),
                 ("grpc.keepalive_permit_without_calls", 1),
                 ("grpc.http2.max_pings_without_data", 0)]
    if reconnect_backoff_s is not None:
        opts += [("grpc.initial_reconnect_backoff_ms", int(reconnect_backoff_s[0] * 1000)),
                 ("grpc.max_reconnect_backoff_ms", int(reconnect_backoff_s[1] * 1000))]
    if tls or ca or cert:
        creds = grpc.ssl_channel_credentials(root_certificates=_pem(ca, "CA bundle"),
                                             private_key=_pem(key, "client key"),
                                             certificate_chain=_pem(cert, "client certificate"))
        return grpc.secure_channel(target, creds, options=opts)
    return grpc.insecure_channel(target, options=opts)
