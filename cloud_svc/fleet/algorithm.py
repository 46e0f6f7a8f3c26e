"""Fleet correlation's in-memory index: recent placed events by label on a grid of cells about R wide.

The correlator reads every stored event once, in id order, and asks the index for earlier events of the
same label from other devices within R metres and T seconds: a 3x3 cell lookup instead of a query per
event. Entries are kept for `horizon_s` of server time; an event whose start lies further back than that
(an edge that was offline) is matched against the database instead (see FleetStore.correlate).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

M_PER_DEG_LAT = 111_320.0
EARTH_RADIUS_M = 6_371_008.8
MIN_COS = 1e-3  # near the poles one lon cell spans the whole band


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class Placed:
    pk: int
    device_id: str
    label: str
    start_ns: int
    lat: float
    lon: float
    received_ns: int


PRUNE_EVERY_NS = 5 * 10**9  # the index forgets events beyond the horizon at least this often (server time)


class FleetIndex:
    def __init__(self, radius_m: float, window_s: float, horizon_s: float):
        if horizon_s < window_s:
            raise ValueError("the index must remember at least one correlation window")
        self.radius_m, self.window_ns, self.horizon_ns = radius_m, int(window_s * 1e9), int(horizon_s * 1e9)
        self._pruned_ns = 0  # server time of the last prune: the index holds the horizon, not a count of events
        self.cell_deg = radius_m / M_PER_DEG_LAT
        self.cells: dict[tuple[str, int, int], deque[Placed]] = {}
        self.seen_id = 0  # every event with a smaller or equal id has been added (or had no position)
        self._adds = 0
        self._lon_cache: dict[int, tuple[float, int]] = {}  # band -> _lon_cells(band); at most 180/cell_deg

    def _band(self, lat: float) -> int:
        return math.floor((lat + 90.0) / self.cell_deg)

    def _lon_cells(self, band: int) -> tuple[float, int]:
        """(cell width in degrees, cells around the globe) of a latitude band: wide enough at its poleward edge."""
        cells = self._lon_cache.get(band)
        if cells is None:
            cells = self._lon_cache[band] = self._compute_lon_cells(band)
        return cells

    def _compute_lon_cells(self, band: int) -> tuple[float, int]:
        edge = max(abs(-90.0 + band * self.cell_deg), abs(-90.0 + (band + 1) * self.cell_deg))
        cos = math.cos(math.radians(min(edge, 90.0)))
        width = 360.0 if cos < MIN_COS else min(360.0, self.cell_deg / cos)
        return width, max(1, math.floor(360.0 / width))

    def _key(self, label: str, band: int, lon: float) -> tuple[str, int, int]:
        width, n = self._lon_cells(band)
        return label, band, math.floor((lon + 180.0) / width) % n

    def add(self, e: Placed) -> None:
        key = self._key(e.label, self._band(e.lat), e.lon)
        self.cells.setdefault(key, deque()).append(e)
        self._adds += 1
        if self._adds % 10_000 == 0 or e.received_ns - self._pruned_ns >= PRUNE_EVERY_NS:
            self.prune(e.received_ns)

    def prune(self, now_ns: int) -> None:
        self._pruned_ns = now_ns
        cutoff = now_ns - self.horizon_ns
        for key in list(self.cells):
            d = self.cells[key]
            while d and d[0].received_ns < cutoff:
                d.popleft()
            if not d:
                del self.cells[key]

    def covers(self, e: Placed, now_ns: int) -> bool:
        """Whether every event that could match `e` is still remembered (else ask the database)."""
        return e.start_ns - self.window_ns >= now_ns - self.horizon_ns

    def neighbours(self, e: Placed) -> list[Placed]:
        """Remembered events of e's label, from other devices, within the radius and the time window."""
        out = []
        band = self._band(e.lat)
        for b in (band - 1, band, band + 1):
            width, n = self._lon_cells(b)
            j = math.floor((e.lon + 180.0) / width) % n
            for jj in {(j - 1) % n, j, (j + 1) % n}:
                for c in self.cells.get((e.label, b, jj), ()):
                    if c.device_id != e.device_id and abs(c.start_ns - e.start_ns) <= self.window_ns \
                            and haversine_m(e.lat, e.lon, c.lat, c.lon) <= self.radius_m:
                        out.append(c)
        return out

    def reset(self) -> None:
        """Forget everything: the next correlator step warms the index again from the stored cursor."""
        self.cells.clear()
        self.seen_id = 0
        self._adds = 0

    def size(self) -> int:
        return sum(len(d) for d in self.cells.values())
