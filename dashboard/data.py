"""The one data module: every page callback and file route reads and writes through here, and this module goes
through the cloud's store (its read models, reviews and device configs) only: no SQL, no protobuf.

`configure()` is called once by the app factory; pages call `get()`."""
from __future__ import annotations

import csv
import io
import math
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

from cloud_svc.clipstore import ClipStore, open_store
from cloud_svc.domain import DeviceConfigView, EventFilter, EventView, MapCell, ReviewView
from cloud_svc.errors import ClipStoreError, NotFound
from cloud_svc.store import Store
from cloud_svc.store.queries import DEGRADED_FIGURES
from dashboard.config import DashboardConfig
from dashboard.filters import OPEN_END, Filters
from edgert import labels as taxonomy

CSV_COLUMNS = ("id", "device_id", "seq", "event_id", "label", "start", "end", "score", "lat", "lon", "backend",
               "verification", "verifier_agrees", "review", "review_label", "reviewer", "top_classes")
MIME = {"flac": "audio/flac", "wav": "audio/wav", "ogg": "audio/ogg", "opus": "audio/ogg"}


@dataclass
class DeviceRow:
    device_id: str
    state: str                 # ok | degraded | stale | never | revoked
    last_heartbeat_ns: Optional[int]
    heartbeat_s: float
    lat: Optional[float]
    lon: Optional[float]
    events: int
    rtf: Optional[float]
    backlog: Optional[int]
    backend: str
    model_sha256: str
    config_version: Optional[int]     # what the device reports it applied
    config_error: str
    pushed: Optional[DeviceConfigView]  # what was set for it here
    figures: dict[str, float]


class Data:
    def __init__(self, cfg: DashboardConfig, store: Store, clips: ClipStore):
        self.cfg, self.store, self.clips = cfg, store, clips
        self.distress = frozenset(taxonomy.distress_labels())
        self.label_names = list(taxonomy.scoring(calibrated=False).labels)
        self._first: tuple[float, Optional[int]] = (0.0, None)
        self._lock = threading.Lock()

    @classmethod
    def open(cls, cfg: DashboardConfig) -> "Data":
        store = Store.open(cfg.db)
        return cls(cfg, store, open_store(cfg.clips, cfg.db))

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------------------------------ filters
    def first_event_ns(self) -> Optional[int]:
        """The oldest event's start (the 'all' window), cached for a minute."""
        with self._lock:
            at, v = self._first
            if time.monotonic() - at < 60 and v is not None:
                return v
        found = self.store.queries.list_events(EventFilter(order="start_ns", limit=1))
        v = found[0].start_ns if found else None
        with self._lock:
            self._first = (time.monotonic(), v)
        return v

    def event_filter(self, f: Filters, now_ns: Optional[int] = None, **kw) -> EventFilter:
        return f.event_filter(now_ns or time.time_ns(), self.first_event_ns(), **kw)

    def label_options(self) -> list[str]:
        seen = self.store.queries.labels_seen()
        return self.label_names + sorted(set(seen) - set(self.label_names))

    def device_ids(self) -> list[str]:
        return [d.device_id for d in self.store.queries.list_devices()]

    # ------------------------------------------------------------------------------------------ map
    @staticmethod
    def cell_deg(zoom: float) -> float:
        """The clustering grid at a zoom level: about 48 screen pixels (a 256-pixel tile spans 360/2^zoom deg)."""
        return 360.0 / (2 ** max(0.0, float(zoom))) * 48 / 256

    def map_cells(self, f: Filters, zoom: float) -> tuple[list[MapCell], int, int]:
        """(cells, events without a position, events matching)."""
        ef = self.event_filter(f)
        cells, missing = self.store.queries.map_cells(ef, self.cell_deg(zoom), sorted(self.distress),
                                                      self.cfg.max_map_cells)
        return cells, missing, self.store.queries.count_matching(ef)  # the cells are capped at max_map_cells

    def cluster_events(self, f: Filters, box, limit: int) -> list[EventView]:
        """The newest events under `f` inside `box` (a clicked cluster's grid cell)."""
        ef = self.event_filter(f, limit=limit, order="start_ns", descending=True)
        ef.bbox = box
        return self.store.queries.list_events(ef)

    def alerts(self, f: Filters, limit: int = 200):
        lo, hi = f.range_ns(time.time_ns(), self.first_event_ns())
        found = self.store.queries.list_alerts(start_ns=lo, end_ns=hi, limit=100_000)
        if f.devices:
            keep = set(f.devices)
            found = [a for a in found if a.device_id in keep or any(e.device_id in keep for e in a.events)]
        return found[-limit:]

    def devices(self) -> list[DeviceRow]:
        out = []
        now = time.time_ns()
        pushed = self.store.devices.configs()
        for d in self.store.queries.list_devices():
            hb = float(d.figures.get("heartbeat_s") or self.cfg.default_heartbeat_s)
            state = d.health
            if d.revoked:
                state = "revoked"
            elif d.last_heartbeat_ns is None:
                state = "never"
            elif now - d.last_heartbeat_ns > self.cfg.stale_heartbeats * hb * 1e9:
                state = "stale"
            elif state == "stale":  # the cloud's fixed limit is shorter than this device's own heartbeats allow
                state = "degraded" if any(d.figures.get(k, 0) > 0 for k in DEGRADED_FIGURES) else "ok"
            cv = d.figures.get("config_version")
            out.append(DeviceRow(
                d.device_id, state, d.last_heartbeat_ns, hb, d.lat, d.lon, d.events, d.figures.get("rtf"),
                None if d.figures.get("outbox_depth") is None else int(d.figures["outbox_depth"]),
                d.info.get("backend", ""), d.info.get("model_sha256", ""), None if cv is None else int(cv),
                d.info.get("config_error", ""), pushed.get(d.device_id), dict(d.figures)))
        return out

    # ------------------------------------------------------------------------------------------ events
    def events_page(self, f: Filters, page: int, page_size: int, order: str = "start_ns",
                    descending: bool = True) -> tuple[list[EventView], int]:
        ef = self.event_filter(f, limit=page_size, offset=page * page_size, order=order, descending=descending)
        return self.store.queries.list_events(ef), self.store.queries.count_matching(ef)

    def csv_rows(self, f: Filters) -> Iterator[str]:
        """The CSV of every event matching `f` (up to csv_max_rows), newest first, streamed in pages."""
        buf = io.StringIO()
        w = csv.writer(buf)

        def flush() -> str:
            s = buf.getvalue()
            buf.seek(0)
            buf.truncate()
            return s

        w.writerow(CSV_COLUMNS)
        yield flush()
        now = time.time_ns()
        done, page = 0, 1000
        while done < self.cfg.csv_max_rows:
            ef = self.event_filter(f, now, limit=min(page, self.cfg.csv_max_rows - done), offset=done,
                                   order="start_ns", descending=True)
            rows = self.store.queries.list_events(ef)
            for e in rows:
                v, r = e.verification, e.review
                w.writerow([e.id, e.device_id, e.seq, e.event_id, e.label, _iso(e.start_ns),
                            _iso(e.end_ns) if e.end_ns else "", f"{e.score:.4f}", _num(e.lat), _num(e.lon),
                            e.backend, v.status if v else "", "" if not v or v.agree is None else int(v.agree),
                            r.decision if r else "", (r.label or "") if r else "", r.reviewer if r else "",
                            "; ".join(f"{n}:{s:.3f}" for n, s in e.classes[:5])])
            yield flush()
            done += len(rows)
            if len(rows) < page:
                break

    def event(self, pk: int) -> EventView:
        return self.store.queries.get_event(pk)

    def reviews(self, pk: int) -> list[ReviewView]:
        return self.store.reviews.history(pk)

    def review(self, pk: int, decision: str, reviewer: str, label: Optional[str] = None) -> ReviewView:
        return self.store.reviews.add(pk, decision, reviewer, label=label)

    def clip(self, pk: int) -> tuple[bytes, str]:
        """The event's clip bytes and MIME type. NotFound when it has none, ClipStoreError when unreadable."""
        e = self.event(pk)
        if e.clip is None:
            raise NotFound(f"event {pk} has no clip" + (f" ({e.clip_dropped})" if e.clip_dropped else ""))
        data = self.clips.get(e.clip.sha256)
        return data, MIME.get(e.clip.format.lower(), "application/octet-stream")

    def spectrogram_png(self, pk: int) -> bytes:
        from dashboard.spectrogram import render

        data, _ = self.clip(pk)
        e = self.event(pk)
        return render(data, preroll_s=e.clip.preroll_s if e.clip else 0.0, title=f"{e.label} · {e.device_id}")

    # ------------------------------------------------------------------------------------------ stats
    def timeline(self, f: Filters) -> tuple[list[tuple[int, str, int]], int]:
        now = time.time_ns()
        ef = self.event_filter(f, now)
        end = now if ef.end_ns is None or ef.end_ns == OPEN_END else ef.end_ns
        start = max(ef.start_ns or end, self.first_event_ns() or end)  # a young fleet's bars are not all one
        span_s = max(1, (end - min(start, end)) // 10**9)
        bucket = _nice_bucket(span_s / 60)  # about 60 bars
        return self.store.queries.timeline(ef, bucket), bucket

    def verifier_agreement(self, f: Filters):
        ef = self.event_filter(f)
        return self.store.queries.agreement(ef.start_ns, ef.end_ns)

    def review_stats(self, f: Filters):
        return self.store.queries.review_stats(self.event_filter(f))

    def false_alarms(self, f: Filters):
        return self.store.queries.false_alarms_by_device(self.event_filter(f))

    def health_history(self, device_ids: Sequence[str]):
        return self.store.queries.health_history(device_ids, limit_per_device=120)

    # ------------------------------------------------------------------------------------------ config
    def thresholds(self) -> dict[str, float]:
        """The shipped (calibrated) threshold of every label: the form's defaults."""
        return {name: float(lc.threshold) for name, lc in taxonomy.scoring().labels.items()}

    def push_config(self, device_id: str, thresholds: dict[str, float], by: str) -> DeviceConfigView:
        from cloud_svc.errors import InvalidMessage

        known = set(self.label_names)
        for k, v in thresholds.items():
            if k not in known:
                raise InvalidMessage(f"thresholds.{k}", f"{k!r} is not a label; known: {sorted(known)}")
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and 0.0 < v <= 1.0):
                raise InvalidMessage(f"thresholds.{k}", f"{v!r} is not a threshold in (0, 1]")
        if not thresholds:
            raise InvalidMessage("thresholds", "no threshold given")
        return self.store.devices.set_config(device_id, {k: float(v) for k, v in thresholds.items()}, by)


def _iso(ns: Optional[int]) -> str:
    from dashboard.filters import iso

    return iso(ns) if ns else ""


def _num(x: Optional[float]) -> str:
    return "" if x is None else f"{x:.6f}"


def _nice_bucket(seconds: float) -> int:
    for b in (5, 10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400):
        if seconds <= b:
            return b
    return 30 * 86400


_data: Optional[Data] = None


def configure(d: Data) -> None:
    global _data
    _data = d


def get() -> Data:
    if _data is None:
        raise RuntimeError("dashboard.data.configure() was not called (start the app with dashboard.app.create_app)")
    return _data


__all__ = ["ClipStoreError", "Data", "DeviceRow", "NotFound", "configure", "get"]
