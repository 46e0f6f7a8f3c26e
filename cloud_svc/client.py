"""The Query client: calls the cloud's Query API and maps RpcError to cloud_svc's typed exceptions."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

import grpc

from cloud_svc.errors import from_rpc_error
from edgert.channel import open_channel
from edgert.v1 import query_pb2, query_pb2_grpc

VERIFIED = {"any": query_pb2.VERIFIED_ANY, "done": query_pb2.VERIFIED_DONE, "agree": query_pb2.VERIFIED_AGREE,
            "disagree": query_pb2.VERIFIED_DISAGREE, "pending": query_pb2.VERIFIED_PENDING,
            "none": query_pb2.VERIFIED_NONE}


@contextmanager
def _mapped():
    try:
        yield
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None


def _pos(m) -> tuple[Optional[float], Optional[float]]:
    return (m.position.lat, m.position.lon) if m.HasField("position") else (None, None)


def event_dict(m: query_pb2.EventInfo) -> dict:
    lat, lon = _pos(m)
    d = {"id": m.id, "device_id": m.device_id, "seq": m.seq, "event_id": m.event_id, "label": m.label,
         "start_ns": m.start_ns, "end_ns": m.end_ns or None, "score": round(m.score, 4),
         "classes": [[c.name, round(c.score, 4)] for c in m.classes], "lat": lat, "lon": lon, "backend": m.backend,
         "model_sha256": m.model_sha256, "clip": None, "clip_dropped": m.clip_dropped or None,
         "verification": None, "received_ns": m.received_ns}
    if m.has_clip:
        d["clip"] = {"size": m.clip_size, "sha256": m.clip_sha256}
    if m.HasField("verification"):
        v = m.verification
        d["verification"] = {"status": v.status, "reason": v.reason, "verifier": v.verifier or None,
                             "labels": list(v.labels), "scores": {c.name: round(c.score, 4) for c in v.scores},
                             "agree": v.agree if v.has_agree else None, "error": v.error or None}
    return d


def device_dict(m: query_pb2.DeviceInfo) -> dict:
    lat, lon = _pos(m)
    return {"device_id": m.device_id, "revoked": m.revoked, "acked_seq": m.acked_seq,
            "last_heartbeat_ns": m.last_heartbeat_ns or None, "health": m.health, "figures": dict(m.figures),
            "info": dict(m.info), "lat": lat, "lon": lon, "events": m.events, "created_ns": m.created_ns}


def alert_dict(m: query_pb2.AlertInfo) -> dict:
    lat, lon = _pos(m)
    return {"id": m.id, "kind": m.kind, "rule": m.rule, "labels": list(m.labels), "device_id": m.device_id or None,
            "start_ns": m.start_ns, "end_ns": m.end_ns, "lat": lat, "lon": lon, "device_count": m.device_count,
            "created_ns": m.created_ns,
            "events": [{"device_id": e.device_id, "seq": e.seq, "event_id": e.event_id, "label": e.label}
                       for e in m.events]}


class QueryClient:
    def __init__(self, target: str, *, token: Optional[str] = None, timeout: float = 30.0, **tls):
        self.channel = open_channel(target, **tls)  # tls: ca, cert, key (PEM paths), max_message_bytes
        self.stub = query_pb2_grpc.QueryStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "QueryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def events(self, *, start_ns: int = 0, end_ns: int = 0, labels=(), device_ids=(), bbox=None,
               verified: str = "any", limit: int = 0, after_id: int = 0) -> list[dict]:
        req = query_pb2.ListEventsRequest(start_ns=start_ns, end_ns=end_ns, labels=list(labels),
                                          device_ids=list(device_ids), verified=VERIFIED[verified], limit=limit,
                                          after_id=after_id)
        if bbox is not None:
            req.bbox.CopyFrom(query_pb2.BoundingBox(min_lat=bbox[0], min_lon=bbox[1], max_lat=bbox[2],
                                                    max_lon=bbox[3]))
        with _mapped():
            return [event_dict(m) for m in self.stub.ListEvents(req, timeout=self.timeout, metadata=self.metadata)]

    def devices(self) -> list[dict]:
        with _mapped():
            resp = self.stub.ListDevices(query_pb2.ListDevicesRequest(), timeout=self.timeout, metadata=self.metadata)
        return [device_dict(d) for d in resp.devices]

    def alerts(self, *, kind: str = "", start_ns: int = 0, end_ns: int = 0, limit: int = 0,
               after_id: int = 0) -> list[dict]:
        req = query_pb2.ListAlertsRequest(kind=kind, start_ns=start_ns, end_ns=end_ns, limit=limit, after_id=after_id)
        with _mapped():
            return [alert_dict(m) for m in self.stub.ListAlerts(req, timeout=self.timeout, metadata=self.metadata)]

    def follow_alerts(self, *, kind: str = "", after_id: int = 0, since_ns: int = 0,
                      timeout: Optional[float] = None) -> Iterator[dict]:
        """Alerts as they are stored, until the server goes away (ServerUnavailable) or `timeout` passes."""
        call = self.stub.Subscribe(query_pb2.SubscribeRequest(kind=kind, after_id=after_id, since_ns=since_ns),
                                   timeout=timeout, metadata=self.metadata)
        try:
            with _mapped():
                for m in call:
                    yield alert_dict(m)
        finally:
            call.cancel()

    def clip(self, device_id: str, *, seq: Optional[int] = None,
             event_id: Optional[str] = None) -> tuple[dict[str, Any], bytes]:
        req = query_pb2.GetClipRequest(device_id=device_id, seq=seq) if event_id is None else \
            query_pb2.GetClipRequest(device_id=device_id, event_id=event_id)
        meta: dict[str, Any] = {}
        parts: list[bytes] = []
        with _mapped():
            for piece in self.stub.GetClip(req, timeout=self.timeout, metadata=self.metadata):
                if not meta:
                    meta = {"format": piece.format, "sample_rate": piece.sample_rate, "sha256": piece.sha256,
                            "size": piece.total_size}
                parts.append(piece.data)
        return meta, b"".join(parts)

    def agreement(self, start_ns: int = 0, end_ns: int = 0) -> list[dict]:
        with _mapped():
            resp = self.stub.GetAgreement(query_pb2.GetAgreementRequest(start_ns=start_ns, end_ns=end_ns),
                                          timeout=self.timeout, metadata=self.metadata)
        return [{"label": a.label, "verified": a.verified, "agreed": a.agreed, "rate": round(a.rate, 4)}
                for a in resp.labels]
