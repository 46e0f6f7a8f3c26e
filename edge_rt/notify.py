"""The edge's own notifications: outbox consumers that publish this device's events and alerts to an MQTT broker
(with its retained status and Home Assistant discovery) and POST its alerts to a webhook, for the single-box home
install and beside the cloud uplink.

The messages are the cloud bridge's (`edgert.notify.payloads`): an event's start and end, a device alert with its
outbox seq. The edge has no event pk and no verification, so those are null and "none", and a clip is named
"DEVICE/EVENT_ID". Each consumer reads the outbox after its own mark (`Outbox.pending`) and raises the mark only
once delivery is confirmed (every PUBACK of a batch, a 2xx answer): what it sends is at-least-once across kill -9,
broker and receiver outages, with the records waiting in the outbox (within its bounds) meanwhile.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from edge_rt import records
from edge_rt.outbox import Outbox, Record
from edgert.errors import NotifyError, NotifyUnavailable
from edgert.notify.config import MqttConfig, WebhookConfig
from edgert.notify.discovery import discovery_messages
from edgert.notify.mqtt import MqttPublisher
from edgert.notify.payloads import (
    AlertNote,
    ClipRef,
    EventNote,
    Note,
    StatusNote,
    alert_json,
    delivery_id,
    event_json,
    status_json,
)
from edgert.notify.topics import Topics, check_device
from edgert.notify.webhook import WebhookSender

log = logging.getLogger("edge_rt.notify")

MQTT = "mqtt"        # outbox consumer names: their marks are meta 'acked:mqtt' and 'acked:webhook'
WEBHOOK = "webhook"
POLL_S = 0.05        # how often an idle consumer looks for new records
BATCH = 50           # records per MQTT batch (all PUBACKs awaited, then one ack of the outbox)
STOP_JOIN_S = 10.0

Figures = Callable[[], Mapping[str, Any]]


def note(rec: Record, device_id: str) -> Optional[Note]:
    """Outbox record -> the note it is published as: an EventNote (phase start or end) or a device AlertNote;
    None for a record that notifies nobody (a kind without a note, or bytes that do not parse)."""
    try:
        msg = records.parse(rec.body)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError; one bad record must not stall the consumer
        log.warning("outbox seq %d (%s) does not parse as a record (%s); not published", rec.seq, rec.kind, exc)
        return None
    kind = msg.WhichOneof("kind")
    if kind in ("event", "event_end"):
        e = getattr(msg, kind)
        pos = (e.position.lat, e.position.lon) if e.HasField("position") else (None, None)
        end = kind == "event_end"
        clip = None
        if end and rec.clip is not None and e.HasField("clip"):
            clip = ClipRef(id=f"{device_id}/{e.event_id}", format=e.clip.format, sample_rate=e.clip.sample_rate)
        return EventNote(device_id=device_id, event_id=e.event_id, phase="end" if end else "start", label=e.label,
                         score=e.score, classes=tuple((c.name, c.score) for c in e.classes), start_ns=e.start_ns,
                         end_ns=e.end_ns if end else None, lat=pos[0], lon=pos[1], seq=rec.seq, clip=clip,
                         clip_dropped=e.clip_dropped)
    if kind == "alert":
        a = msg.alert
        pos = (a.position.lat, a.position.lon) if a.HasField("position") else (None, None)
        return AlertNote(kind="device", rule=a.rule, labels=tuple(a.labels), device_id=device_id,
                         start_ns=a.start_ns, end_ns=a.end_ns, lat=pos[0], lon=pos[1],
                         event_ids=tuple(a.event_ids), seq=rec.seq)
    return None


def numeric(figures: Mapping[str, Any]) -> dict[str, float]:
    """The numbers among heartbeat figures (the status note carries numbers only, as the heartbeat's `figures`)."""
    return {k: float(v) for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class _Consumer:
    """One outbox consumer in a thread of its own: `start()`, `stop()`, `drained()`; `failed` once it gave up for
    good (its records stay in the outbox for a run that fixes what it was refused for)."""

    name = ""

    def __init__(self, outbox: Outbox, device_id: str, *, poll_s: float = POLL_S):
        self.outbox, self.device_id, self.poll_s = outbox, check_device(device_id), poll_s
        self.failed: Optional[NotifyError] = None
        self.acked_seq = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "_Consumer":
        self._thread = threading.Thread(target=self.run, name=f"notify-{self.name}", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        self.acked_seq = self.outbox.mark(self.name)
        busy = False
        while not self._stop.wait(0 if busy else self.poll_s):
            try:
                busy = self._step()
                self.last_error = ""
            except NotifyUnavailable as exc:
                busy = False
                if str(exc) != self.last_error:  # once per problem, not once per poll
                    log.warning("%s: %s; records wait in the outbox", self.name, exc)
                self.last_error = str(exc)
            except NotifyError as exc:
                self.failed = exc
                self.last_error = str(exc)
                log.error("%s: %s; not retrying (records stay in the outbox)", self.name, exc)
                return
            except Exception as exc:  # noqa: BLE001 - e.g. the outbox could not be read: try again
                busy = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("%s consumer step failed", self.name)

    def _step(self) -> bool:
        """Deliver some records; True when there may be more at once."""
        raise NotImplementedError

    def _ack(self, seq: int) -> None:
        if seq > self.acked_seq:
            self.outbox.ack(seq, self.name)
            self.acked_seq = seq

    def stop(self, timeout: float = STOP_JOIN_S) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def drained(self) -> bool:
        """True once this consumer has delivered every record the outbox holds, or has failed for good."""
        return self.failed is not None or self.outbox.backlog(self.name) == 0


class MqttNotifier(_Consumer):
    """Publishes the outbox to `PREFIX/DEVICE/event` and `/alert` (QoS 1), keeps a retained `/status` (online with
    the RTF and this consumer's backlog, every status_s; offline on a clean stop, and as the will when the
    connection is lost), and announces the device to Home Assistant on every connection (a broker that restarted
    without persistence has forgotten the retained discovery and status)."""

    name = MQTT

    def __init__(self, outbox: Outbox, cfg: MqttConfig, device_id: str, *, figures: Optional[Figures] = None,
                 all_labels: Sequence[str] = (), sw_version: str = "", poll_s: float = POLL_S,
                 batch: int = BATCH):
        super().__init__(outbox, device_id, poll_s=poll_s)
        self.cfg, self.figures, self.all_labels, self.sw_version = cfg, figures, list(all_labels), sw_version
        self.batch = batch
        self.topics = Topics(cfg.prefix)
        self.status_topic = self.topics.status(self.device_id)
        will = (self.status_topic, status_json(StatusNote(self.device_id, online=False, last_seen_ns=None)))
        self.publisher = MqttPublisher(cfg, client_id=cfg.client_id or f"edgert-{self.device_id}", will=will)
        self.broker = str(self.publisher.broker)
        self._announced = 0          # the publisher's connection count when discovery and status last went out
        self._next_status = 0.0
        self.events = self.alerts = self.statuses = 0

    def connect(self, timeout_s: Optional[float] = None) -> None:
        """The first connection, before the run starts. A refusal (bad credentials, not authorised) raises
        NotifyError, naming the broker; an unreachable broker is only logged: the publisher keeps trying in the
        background and the records wait in the outbox."""
        try:
            self.publisher.connect(timeout_s)
        except NotifyUnavailable as exc:
            self.last_error = str(exc)
            log.warning("%s; publishing when it is reachable (records wait in the outbox)", exc)

    def _step(self) -> bool:
        if not self.publisher.connected:
            return False
        if self.publisher.connections != self._announced:
            self._announce()
        if time.monotonic() >= self._next_status:
            self._status(online=True)
        recs = self.outbox.pending(after_seq=self.acked_seq, limit=self.batch)
        if not recs:
            return False
        msgs: list[tuple[str, bytes, bool]] = []
        events = alerts = 0
        for rec in recs:
            n = note(rec, self.device_id)
            if isinstance(n, EventNote):
                msgs.append((self.topics.event(self.device_id), event_json(n), False))
                events += 1
            elif isinstance(n, AlertNote):
                msgs.append((self.topics.alert(self.device_id), alert_json(n), False))
                alerts += 1
        if msgs:
            self.publisher.publish_many(msgs)
        self._ack(recs[-1].seq)
        self.events += events
        self.alerts += alerts
        return len(recs) == self.batch

    def _announce(self) -> None:
        connections = self.publisher.connections
        msgs: list[tuple[str, bytes, bool]] = []
        if self.cfg.discovery.enabled:
            msgs = [(t, p, True) for t, p in discovery_messages(
                self.device_id, self.topics, self.cfg.discovery, availability=[self.status_topic],
                all_labels=self.all_labels, sw_version=self.sw_version)]
        self.publisher.publish_many(msgs + [(self.status_topic, self._status_json(True), True)])
        self._announced = connections
        self.statuses += 1
        self._next_status = time.monotonic() + self.cfg.status_s
        log.info("MQTT %s: announced %s (%d discovery configs) under %s", self.broker, self.device_id, len(msgs),
                 self.topics.prefix)

    def _status_json(self, online: bool) -> bytes:
        figures: Mapping[str, Any] = {}
        if self.figures is not None:
            try:
                figures = self.figures()
            except Exception as exc:  # noqa: BLE001 - a status must never end the consumer
                log.warning("status figures failed: %s", exc)
        st = self.outbox.stats()
        nums = {**numeric(figures), "outbox_depth": float(st["depth"]), "outbox_dropped": float(st["dropped"])}
        rtf = nums.get("rtf")
        return status_json(StatusNote(self.device_id, online=online, last_seen_ns=time.time_ns(),
                                      rtf=rtf if online else None, backlog=self.outbox.backlog(self.name),
                                      figures=nums if online else {}))

    def _status(self, online: bool) -> None:
        self.publisher.publish(self.status_topic, self._status_json(online), retain=True)
        self.statuses += 1
        self._next_status = time.monotonic() + self.cfg.status_s

    def stop(self, timeout: float = STOP_JOIN_S) -> None:
        """Stop publishing, say offline (retained) when the broker is there, and disconnect cleanly (so the broker
        does not send the will on top)."""
        super().stop(timeout)
        try:
            if self.publisher.connected:
                self._status(online=False)
        except NotifyError as exc:  # the broker went away just now: its will says offline instead
            log.warning("MQTT %s: could not publish offline (%s)", self.broker, exc)
        finally:
            self.publisher.close()

    def stats(self) -> dict[str, Any]:
        return {"broker": self.broker, "connected": self.publisher.connected,
                "connections": self.publisher.connections, "acked_seq": self.acked_seq, "events": self.events,
                "alerts": self.alerts, "statuses": self.statuses, "backlog": self.outbox.backlog(self.name),
                "last_error": self.last_error, "failed": str(self.failed) if self.failed else None}


class WebhookNotifier(_Consumer):
    """POSTs each device alert in the outbox to one URL (signed when a secret is set), retrying one alert until
    the receiver takes it; other records are passed over. A refusal (3xx, 4xx other than 408/429) stops it."""

    name = WEBHOOK

    def __init__(self, outbox: Outbox, cfg: WebhookConfig, device_id: str, *, poll_s: float = POLL_S):
        super().__init__(outbox, device_id, poll_s=poll_s)
        if not cfg.url:
            raise NotifyError("the webhook is not configured: no URL")
        self.sender = WebhookSender(cfg.url, cfg.secret, timeout_s=cfg.timeout_s,
                                    retry_initial_s=cfg.retry_initial_s, retry_max_s=cfg.retry_max_s)
        self.url = self.sender.shown_url
        self.alerts = 0

    def _step(self) -> bool:
        recs = self.outbox.pending(after_seq=self.acked_seq, limit=BATCH)
        if not recs:
            return False
        passed = self.acked_seq
        for rec in recs:
            n = note(rec, self.device_id)
            if isinstance(n, AlertNote):
                self._ack(passed)  # what came before is settled, whatever this POST does
                self.sender.post(alert_json(n), delivery_id(n), stop=self._stop)
                self.alerts += 1
            passed = rec.seq
        self._ack(passed)
        return len(recs) == BATCH

    def stop(self, timeout: float = STOP_JOIN_S) -> None:
        super().stop(timeout)
        self.sender.close()

    def stats(self) -> dict[str, Any]:
        return {"url": self.url, "signed": self.sender.signed, "acked_seq": self.acked_seq, "alerts": self.alerts,
                "backlog": self.outbox.backlog(self.name), "last_error": self.last_error,
                "failed": str(self.failed) if self.failed else None}
