"""The filter bar's state as one value that lives in the URL's query string, so that a view can be shared.

`?window=24h&lo=0&hi=100&label=shout&label=scream&device=lamp-1&verified=any&reviewed=none`, or an explicit
`from=`/`to=` (ISO 8601 or epoch milliseconds) instead of a window. Anything unreadable falls back to the default
and is reported in `problems`, so that a mistyped link says what was wrong instead of showing nothing."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import parse_qs, urlencode

from cloud_svc.domain import EventFilter, Reviewed, Verified

WINDOWS: dict[str, Optional[int]] = {  # preset -> seconds (None: since the first event)
    "15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "all": None}
DEFAULT_WINDOW = "24h"
OPEN_END = (1 << 63) - 1
VERIFIED = [v.value for v in Verified]
REVIEWED = [r.value for r in Reviewed]


def _instant_ns(text: str) -> int:
    """ISO 8601 (naive means UTC) or epoch milliseconds -> epoch ns."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text) * 1_000_000
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp() * 1e9)


def iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(ns: int) -> str:
    """To the millisecond, for the URL (whole seconds are written without a fraction)."""
    t = dt.datetime.fromtimestamp(ns // 10**6 / 1e3, dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{t.microsecond // 1000:03d}" if t.microsecond // 1000 else "") + "Z"


@dataclass(frozen=True)
class Filters:
    window: str = DEFAULT_WINDOW
    lo: int = 0                       # the slider, in percent of the window
    hi: int = 100
    start_ns: Optional[int] = None    # from= / to=: an explicit range instead of the window
    end_ns: Optional[int] = None
    labels: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    verified: str = "any"
    reviewed: str = "any"
    problems: tuple[str, ...] = field(default=(), compare=False)

    # ------------------------------------------------------------------------------------------ URL
    @classmethod
    def from_query(cls, search: str | dict | None) -> "Filters":
        if isinstance(search, dict):  # the keyword arguments Dash pages give a layout
            q = {k: v if isinstance(v, list) else [v] for k, v in search.items()}
        else:
            q = parse_qs((search or "").lstrip("?"), keep_blank_values=False)
        problems: list[str] = []
        kw: dict[str, Any] = {}

        def one(key: str) -> Optional[str]:
            v = q.get(key)
            return str(v[-1]) if v else None

        def many(key: str) -> tuple[str, ...]:
            out: list[str] = []
            for v in q.get(key, []):
                out += [x for x in str(v).split(",") if x]
            return tuple(dict.fromkeys(out))

        w = one("window")
        if w is not None:
            if w in WINDOWS:
                kw["window"] = w
            else:
                problems.append(f"window={w!r} is not one of {list(WINDOWS)}")
        for key in ("lo", "hi"):
            v = one(key)
            if v is not None:
                try:
                    n = int(v)
                    if not 0 <= n <= 100:
                        raise ValueError
                    kw[key] = n
                except ValueError:
                    problems.append(f"{key}={v!r} is not a percentage 0..100")
        if kw.get("lo", 0) > kw.get("hi", 100):
            problems.append(f"lo={kw['lo']} is above hi={kw.get('hi', 100)}")
            kw["lo"], kw["hi"] = 0, 100
        for key, attr in (("from", "start_ns"), ("to", "end_ns")):
            v = one(key)
            if v is not None:
                try:
                    kw[attr] = _instant_ns(v)
                except ValueError:
                    problems.append(f"{key}={v!r} is not an ISO 8601 time or epoch milliseconds")
        if kw.get("start_ns") is not None and kw.get("end_ns") is not None and kw["start_ns"] >= kw["end_ns"]:
            problems.append(f"from={one('from')!r} is not before to={one('to')!r}")
            kw.pop("start_ns"), kw.pop("end_ns")
        kw["labels"], kw["devices"] = many("label"), many("device")
        for key, allowed in (("verified", VERIFIED), ("reviewed", REVIEWED)):
            v = one(key)
            if v is not None:
                if v in allowed:
                    kw[key] = v
                else:
                    problems.append(f"{key}={v!r} is not one of {allowed}")
        return cls(problems=tuple(problems), **kw)

    def to_query(self) -> str:
        """The query string (with '?', or '' for the defaults); only what differs from the default is written."""
        d = Filters()
        pairs: list[tuple[str, str]] = []
        if self.window != d.window:
            pairs.append(("window", self.window))
        if (self.lo, self.hi) != (0, 100):
            pairs += [("lo", str(self.lo)), ("hi", str(self.hi))]
        if self.start_ns is not None:
            pairs.append(("from", iso_ms(self.start_ns)))
        if self.end_ns is not None:
            pairs.append(("to", iso_ms(self.end_ns)))
        pairs += [("label", x) for x in self.labels]
        pairs += [("device", x) for x in self.devices]
        if self.verified != "any":
            pairs.append(("verified", self.verified))
        if self.reviewed != "any":
            pairs.append(("reviewed", self.reviewed))
        return "?" + urlencode(pairs) if pairs else ""

    # ------------------------------------------------------------------------------------------ queries
    def window_ns(self, now_ns: int, first_ns: Optional[int]) -> tuple[int, int]:
        """The whole window the slider spans: [from, to] when given, else the preset ending now."""
        end = self.end_ns if self.end_ns is not None else now_ns
        if self.start_ns is not None:
            start = self.start_ns
        else:
            secs = WINDOWS[self.window]
            start = end - secs * 10**9 if secs is not None else min(first_ns or end, end)
        return start, max(end, start + 1)

    def range_ns(self, now_ns: int, first_ns: Optional[int]) -> tuple[int, int]:
        """The time range after the slider: the part lo%..hi% of the window."""
        start, end = self.window_ns(now_ns, first_ns)
        span = end - start
        lo = start + span * self.lo // 100
        if self.hi == 100 and self.end_ns is None:
            return lo, OPEN_END  # "now" includes what a device with a clock ahead of ours stamped in our future
        return lo, start + span * self.hi // 100

    def event_filter(self, now_ns: int, first_ns: Optional[int], **kw) -> EventFilter:
        lo, hi = self.range_ns(now_ns, first_ns)
        return EventFilter(start_ns=lo, end_ns=hi, labels=list(self.labels), device_ids=list(self.devices),
                           verified=Verified(self.verified), reviewed=Reviewed(self.reviewed), **kw)
