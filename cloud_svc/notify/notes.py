"""Stored rows as the shared notes (edgert.notify.payloads): the one place the cloud decides what an event, alert
or device status says on the way out."""
from __future__ import annotations

from typing import Optional

from cloud_svc.store.outbound import DeviceState, StoredAlert, StoredEnd, StoredEvent, StoredVerdict
from edgert.notify.payloads import AlertNote, ClipRef, EventNote, StatusNote


def clip_url(link_base: Optional[str], pk: int) -> Optional[str]:
    """The dashboard's page of the event, where its clip plays."""
    return f"{link_base}/event/{pk}" if link_base else None


def start_note(e: StoredEvent) -> EventNote:
    return EventNote(device_id=e.device_id, event_id=e.event_id, phase="start", label=e.label, score=e.score,
                     classes=e.classes, start_ns=e.start_ns, end_ns=None, lat=e.lat, lon=e.lon, seq=e.seq, pk=e.pk,
                     verification=e.verification.state, verified_labels=e.verification.labels)


def end_note(x: StoredEnd, link_base: Optional[str] = None, *, phase: str = "end") -> EventNote:
    clip = None if x.clip_format is None else ClipRef(id=str(x.pk), url=clip_url(link_base, x.pk),
                                                      format=x.clip_format, sample_rate=x.clip_sample_rate)
    return EventNote(device_id=x.device_id, event_id=x.event_id, phase=phase, label=x.label, score=x.score,
                     classes=x.classes, start_ns=x.start_ns, end_ns=x.end_ns, lat=x.lat, lon=x.lon, seq=x.seq,
                     pk=x.pk, verification=x.verification.state, verified_labels=x.verification.labels, clip=clip,
                     clip_dropped=x.clip_dropped)


def verified_note(v: StoredVerdict, link_base: Optional[str] = None) -> EventNote:
    """The event's end note again, with phase "verified" and the finished verification: what a receiver that
    saw "pending" at the end waits for."""
    return end_note(v.end, link_base, phase="verified")


def alert_note(a: StoredAlert) -> AlertNote:
    return AlertNote(kind=a.kind, rule=a.rule, labels=a.labels, device_id=a.device_id, start_ns=a.start_ns,
                     end_ns=a.end_ns, lat=a.lat, lon=a.lon, device_count=a.device_count, event_ids=a.event_ids,
                     alert_id=a.id, seq=a.seq)


def status_note(d: DeviceState, now_ns: int, stale_after_ns: int) -> StatusNote:
    """Online while the device is not revoked and its last heartbeat is at most stale_after_ns old (the same rule
    as the devices table's "stale")."""
    online = (not d.revoked and d.last_heartbeat_ns is not None and now_ns - d.last_heartbeat_ns <= stale_after_ns)
    return StatusNote(device_id=d.device_id, online=online, last_seen_ns=d.last_heartbeat_ns,
                      rtf=d.figures.get("rtf"), backlog=d.outbox_depth, figures=d.figures)
