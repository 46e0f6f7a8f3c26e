"""ListEvents with labels, a window and a box reads the grid cells under the box (migration 0008): the page is the
one a plain filter of every event gives, at cell edges, across the antimeridian and for boxes too big for cells
(SQLite, which truncates the cell, and MariaDB, which rounds it)."""
from __future__ import annotations

import random
import uuid

from store_records import rec, start

from cloud_svc.domain import BatchIn, BBox, EventFilter
from cloud_svc.store.queries import cell_ranges

T0 = 1_700_000_000 * 10**9


def _inside(e, box: BBox, labels: list[str], s) -> bool:
    in_lon = (box.min_lon <= e.lon <= box.max_lon if box.min_lon <= box.max_lon
              else e.lon >= box.min_lon or e.lon <= box.max_lon)
    return (e.label in labels and (s is None or e.start_ns >= s)
            and box.min_lat <= e.lat <= box.max_lat and in_lon)


def test_box_pages_equal_a_plain_filter_of_every_event(store):
    rng = random.Random(8)
    store.devices.add_devices(["d"])
    spots = [(52.5, 13.4), (52.45, 13.35), (-33.9, 151.2), (0.0, 179.97), (0.02, -179.96), (89.99, 0.0)]
    recs = []
    for i in range(400):
        lat, lon = rng.choice(spots)
        lat += rng.choice([0.0, 0.049999, 0.05, 0.05001, rng.uniform(-0.2, 0.2)])
        lon = ((lon + rng.uniform(-0.1, 0.1) + 180.0) % 360.0) - 180.0
        lat = max(-90.0, min(90.0, lat))
        label = rng.choice(["shout", "siren", "speech"])
        t = T0 + rng.randrange(0, 10**13)
        recs.append(rec(i + 1, "event", start(uuid.uuid4().hex, label, t, lat=lat, lon=lon)))
    store.ingest.commit([BatchIn("d", 1, recs)])
    every = store.queries.list_events(EventFilter(limit=10000))
    boxes = [BBox(52.4, 13.3, 52.55, 13.45), BBox(52.45, 13.35, 52.5, 13.4), BBox(-0.1, 179.9, 0.1, -179.9),
             BBox(-34.0, 151.0, -33.8, 151.4), BBox(89.9, -1.0, 90.0, 1.0), BBox(-10.0, -10.0, 60.0, 20.0)]
    checked = 0
    for box in boxes:
        for labels in (["shout"], ["shout", "speech"]):
            for s in (None, T0 + 3 * 10**12):
                f = EventFilter(start_ns=s, labels=labels, bbox=box, limit=25)

                want = sorted(e.id for e in every if _inside(e, box, labels, s))[:25]
                assert [e.id for e in store.queries.list_events(f)] == want, (box, labels, s)
                checked += bool(want)
    assert checked >= 8


def test_cells_of_a_box():
    assert cell_ranges(BBox(-10.0, -10.0, 60.0, 20.0)) is None  # too many: the box filter alone
    small = cell_ranges(BBox(52.45, 13.35, 52.5, 13.4))
    assert small is not None and len(small) == 3 * 3
    across = cell_ranges(BBox(-0.1, 179.9, 0.1, -179.9))
    assert across is not None and 900 * 4000 + 3599 in across and 900 * 4000 + 0 in across
