"""The dashboard's one data module over a real SQLite store: the CSV export, the events table's pages, the map's
clusters, pushing thresholds to a device, a device's staleness by its own heartbeat, and the spectrogram."""
from __future__ import annotations

import csv
import io
import math
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from browser.harness import bulk_events

from cloud_svc.clipstore import open_store
from cloud_svc.domain import BatchIn, ClipIn, EventFilter, EventIn, HeartbeatIn, RecordIn
from cloud_svc.errors import InvalidMessage, NotFound
from cloud_svc.schema import devices as devices_table
from cloud_svc.store import Store
from cloud_svc.store.devices import DEVICE_VERSION_BASE
from dashboard import config
from dashboard.data import CSV_COLUMNS, Data
from dashboard.filters import Filters, iso

S = 10**9
BULK_EVENTS = 2300          # more than two of csv_rows' 1000-row pages
BULK_DEVICES = 40
NO_POSITION = 3             # events of the bulk store without a position


def migrated(folder: Path) -> str:
    url = f"sqlite:///{folder / 'cloud.db'}"
    store = Store.open(url)
    store.upgrade()
    store.close()
    return url


def data_for(url: str, clips: Path, **overrides) -> Data:
    return Data.open(config.load(None, {"db": url, "clips": str(clips), **overrides}, env={}))


def commit_events(store: Store, device_id: str, events: list[dict]) -> None:
    """Each dict: label, start_ns and optionally lat, lon, score (the start's), end_score, clip (a ClipIn): the
    event's start and its end, committed through the store's ingest path after the device's watermark."""
    seq = store.devices.watermark(device_id)
    recs = []
    for e in events:
        eid = uuid.uuid4().hex
        start = EventIn(eid, e["label"], e["start_ns"], None, e.get("score", 0.5), [(e["label"], 0.5)],
                        e.get("lat"), e.get("lon"), "onnxruntime", "ab" * 32, 1.0)
        end = replace(start, end_ns=e["start_ns"] + 700_000_000, score=e.get("end_score", start.score),
                      clip=e.get("clip"))
        recs += [RecordIn(seq + 1, e["start_ns"], "event", start), RecordIn(seq + 2, e["start_ns"], "event_end", end)]
        seq += 2
    store.ingest.commit([BatchIn(device_id, recs[0].seq, recs)])


def all_events(store: Store) -> list:
    return store.queries.list_events(EventFilter(limit=100_000))


@pytest.fixture(scope="module")
def bulk(tmp_path_factory):
    """A store of BULK_EVENTS events over 30 days on BULK_DEVICES devices, and NO_POSITION without a position."""
    folder = tmp_path_factory.mktemp("bulk")
    url = migrated(folder)
    seeded = bulk_events(url, BULK_EVENTS, BULK_DEVICES, seed=3)
    store = Store.open(url)
    now = time.time_ns()
    commit_events(store, seeded.device_ids[0], [{"label": "siren", "start_ns": now - (i + 1) * 3600 * S}
                                                for i in range(NO_POSITION)])
    events = all_events(store)
    assert len(events) == BULK_EVENTS + NO_POSITION
    yield url, folder / "clips", store, events, seeded
    store.close()


@pytest.fixture
def data(bulk):
    url, clips, *_ = bulk
    d = data_for(url, clips)
    yield d
    d.close()


def newest_first(events):
    return sorted(events, key=lambda e: (e.start_ns, e.id), reverse=True)


def parse_csv(chunks) -> list[dict]:
    text = "".join(chunks)
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    return [dict(zip(CSV_COLUMNS, r)) for r in rows[1:]]


# ---------------------------------------------------------------------------------------------------- CSV
def test_csv_holds_a_header_and_exactly_the_events_of_an_explicit_range_and_labels(bulk, data):
    _, _, _, events, seeded = bulk
    lo, hi = seeded.end_ns - 20 * 86400 * S, seeded.end_ns - 5 * 86400 * S
    labels = ("glass_break", "siren", "speech")
    f = Filters(start_ns=lo // S * S, end_ns=hi // S * S, labels=labels)
    want = newest_first([e for e in events if f.start_ns <= e.start_ns < f.end_ns and e.label in labels])
    assert 100 < len(want) < BULK_EVENTS / 2  # the filter really narrows
    rows = parse_csv(data.csv_rows(f))
    assert [int(r["id"]) for r in rows] == [e.id for e in want]
    assert [(r["label"], r["device_id"], r["event_id"]) for r in rows] == [(e.label, e.device_id, e.event_id)
                                                                           for e in want]
    first, e = rows[0], want[0]
    assert first["start"] == iso(e.start_ns) and first["end"] == iso(e.end_ns)
    assert float(first["score"]) == pytest.approx(e.score, abs=1e-4)
    assert float(first["lat"]) == pytest.approx(e.lat, abs=1e-6)
    assert first["top_classes"].split("; ")[0].startswith(e.classes[0][0] + ":")


def test_csv_of_a_window_and_devices_matches_the_store(bulk, data):
    _, _, _, events, seeded = bulk
    picked = seeded.device_ids[:7]
    f = Filters(window="7d", devices=picked)
    t0 = time.time_ns()
    rows = parse_csv(data.csv_rows(f))
    start = t0 - 7 * 86400 * S
    want = newest_first([e for e in events if e.device_id in picked and e.start_ns >= start])
    assert len(want) > 10
    assert [int(r["id"]) for r in rows] == [e.id for e in want]
    assert {r["device_id"] for r in rows} <= set(picked)


def test_csv_of_everything_crosses_its_pages_without_loss_or_repeats(bulk, data):
    _, _, _, events, _ = bulk
    rows = parse_csv(data.csv_rows(Filters(window="all")))
    assert [int(r["id"]) for r in rows] == [e.id for e in newest_first(events)]
    # the events without a position have empty lat and lon, not "None"
    no_pos = [r for r in rows if r["lat"] == ""]
    assert len(no_pos) == NO_POSITION and all(r["lon"] == "" for r in no_pos)


def test_csv_stops_at_csv_max_rows_with_the_newest(bulk):
    url, clips, _, events, _ = bulk
    d = data_for(url, clips, csv_max_rows=1500)
    try:
        rows = parse_csv(d.csv_rows(Filters(window="all")))
    finally:
        d.close()
    assert [int(r["id"]) for r in rows] == [e.id for e in newest_first(events)[:1500]]


def test_csv_of_a_filter_that_matches_nothing_is_the_header_alone(data):
    rows = parse_csv(data.csv_rows(Filters(window="all", devices=("no-such-device",))))
    assert rows == []


# ------------------------------------------------------------------------------------------------ events
def test_events_pages_cover_the_filter_once_in_order_with_its_total(bulk, data):
    _, _, _, events, seeded = bulk
    f = Filters(window="all", devices=seeded.device_ids[:10])
    want = newest_first([e for e in events if e.device_id in f.devices])
    got, totals, page = [], set(), 0
    while True:
        rows, total = data.events_page(f, page, 25)
        totals.add(total)
        if not rows:
            break
        assert len(rows) == 25 or len(got) + len(rows) == len(want)
        got += rows
        page += 1
    assert totals == {len(want)}
    assert [e.id for e in got] == [e.id for e in want]
    assert page == math.ceil(len(want) / 25)


@pytest.mark.parametrize("order, descending", [("score", False), ("score", True), ("label", False),
                                               ("device_id", True), ("start_ns", False), ("id", False)])
def test_events_sort_by_a_column_either_way(bulk, data, order, descending):
    _, _, _, events, seeded = bulk
    f = Filters(window="all", devices=seeded.device_ids[:5])
    mine = [e for e in events if e.device_id in f.devices]
    want = sorted(mine, key=lambda e: (getattr(e, "start_ns" if order == "start_ns" else order), e.id),
                  reverse=descending)
    rows, total = data.events_page(f, 0, 500, order=order, descending=descending)
    assert total == len(mine) < 500
    assert [e.id for e in rows] == [e.id for e in want]


def test_sorting_by_score_uses_the_score_the_table_shows(tmp_path):
    """An event's shown score is its end's (final) score; sorting by score must order what is shown."""
    url = migrated(tmp_path)
    store = Store.open(url)
    store.devices.add_device("d1")
    now = time.time_ns()
    commit_events(store, "d1", [{"label": "siren", "start_ns": now - 3 * S, "score": 0.9, "end_score": 0.31},
                                {"label": "siren", "start_ns": now - 2 * S, "score": 0.4, "end_score": 0.62},
                                {"label": "siren", "start_ns": now - 1 * S, "score": 0.5, "end_score": 0.95}])
    d = data_for(url, tmp_path / "clips")
    try:
        rows, _ = d.events_page(Filters(), 0, 10, order="score", descending=True)
    finally:
        d.close()
        store.close()
    assert [round(e.score, 2) for e in rows] == [0.95, 0.62, 0.31]


def test_a_page_past_the_end_is_empty_with_the_total_and_an_unknown_order_is_refused(bulk, data):
    rows, total = data.events_page(Filters(window="all"), 10_000, 25)
    assert rows == [] and total == BULK_EVENTS + NO_POSITION
    with pytest.raises(InvalidMessage) as err:
        data.events_page(Filters(window="all"), 0, 25, order="lat")
    assert err.value.field == "order"


# ---------------------------------------------------------------------------------------------------- map
@pytest.mark.parametrize("zoom", [0, 2, 4.5, 8, 12, 16])
@pytest.mark.parametrize("query", ["window=all", "window=7d&label=siren&label=glass_break", "window=24h",
                                   "window=all&lo=20&hi=60"])
def test_map_cells_account_for_every_matching_event_at_every_zoom(bulk, data, zoom, query):
    _, _, _, events, _ = bulk
    f = Filters.from_query(query)
    ef = data.event_filter(f)
    cells, missing, total = data.map_cells(f, zoom)
    matching = [e for e in events if ef.start_ns <= e.start_ns < ef.end_ns and (not f.labels or e.label in f.labels)]
    assert total == data.store.queries.count_matching(ef) == len(matching)
    assert sum(c.count for c in cells) + missing == total
    assert missing == sum(1 for e in matching if e.lat is None)
    for c in cells:
        assert sum(c.labels.values()) == c.count and c.label in c.labels
        assert 0 <= c.distress <= c.count


def test_map_cells_cluster_coarser_when_zoomed_out(data):
    f = Filters(window="all")
    sizes = [len(data.map_cells(f, z)[0]) for z in (0, 4, 8, 14)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert sizes[-1] >= BULK_DEVICES  # zoomed in, no two devices share a marker


def test_the_map_total_counts_every_matching_event_even_beyond_max_map_cells(bulk):
    url, clips, store, events, _ = bulk
    d = data_for(url, clips, max_map_cells=10)
    try:
        cells, missing, total = d.map_cells(Filters(window="all"), 14)
    finally:
        d.close()
    assert len(cells) == 10  # the markers are capped...
    assert total == len(events)  # ...but the summary's "N events" is still every event that matches


# ------------------------------------------------------------------------------------------ push_config
@pytest.fixture
def fresh(tmp_path):
    url = migrated(tmp_path)
    store = Store.open(url)
    d = data_for(url, tmp_path / "clips")
    yield d, store, tmp_path
    d.close()
    store.close()


@pytest.mark.parametrize("thresholds, field", [
    ({"no_such_label": 0.5}, "thresholds.no_such_label"),
    ({"speech": 0}, "thresholds.speech"),
    ({"speech": 0.0}, "thresholds.speech"),
    ({"speech": -0.2}, "thresholds.speech"),
    ({"speech": 1.5}, "thresholds.speech"),
    ({"glass_break": 0.7, "speech": float("nan")}, "thresholds.speech"),
    ({"speech": float("inf")}, "thresholds.speech"),
    ({"speech": "0.5"}, "thresholds.speech"),
    ({"speech": None}, "thresholds.speech"),
    ({}, "thresholds"),
])
def test_push_config_refuses_a_bad_threshold_naming_the_field_and_stores_nothing(fresh, thresholds, field):
    d, store, _ = fresh
    store.devices.add_device("lamp-1")
    with pytest.raises(InvalidMessage) as err:
        d.push_config("lamp-1", thresholds, "tester")
    assert err.value.field == field
    assert store.devices.config_for("lamp-1") is None


def test_push_config_stores_a_valid_push_with_a_device_version_above_the_cloud_wide_ones(fresh):
    d, store, _ = fresh
    store.devices.add_devices(["lamp-1", "lamp-2"])
    got = d.push_config("lamp-1", {"speech": 0.9, "glass_break": 1}, "alice")
    assert got.version > DEVICE_VERSION_BASE
    kept = store.devices.config_for("lamp-1")
    assert kept.version == got.version and kept.set_by == "alice"
    assert kept.thresholds == {"speech": 0.9, "glass_break": 1.0}
    again = d.push_config("lamp-1", {"speech": 0.8}, "bob")
    assert again.version == got.version + 1  # each change a new version, the old thresholds replaced
    assert store.devices.config_for("lamp-1").thresholds == {"speech": 0.8}
    assert d.push_config("lamp-2", {"siren": 0.5}, "alice").version > DEVICE_VERSION_BASE
    assert [(r.device_id, r.pushed.version if r.pushed else None) for r in d.devices()] == \
        [("lamp-1", again.version), ("lamp-2", DEVICE_VERSION_BASE + 1)]


def test_push_config_to_an_unknown_device_is_not_found(fresh):
    d, _, _ = fresh
    with pytest.raises(NotFound):
        d.push_config("nobody", {"speech": 0.9}, "alice")


# ---------------------------------------------------------------------------------------------- devices
def _heartbeat(store: Store, device_id: str, figures: dict, info: dict | None = None, *, ago_s: float = 0.0):
    store.ingest.commit([], [HeartbeatIn(device_id, time.time_ns(), 0, 0, figures, info or {})])
    if ago_s:
        with store.engine.begin() as conn:
            conn.execute(devices_table.update().where(devices_table.c.id == device_id).values(
                last_heartbeat_ns=time.time_ns() - int(ago_s * S)))


def test_a_device_is_stale_after_stale_heartbeats_of_its_own_heartbeat_interval(fresh):
    d, store, _ = fresh
    store.devices.add_devices(["fast", "fast-ok", "slow", "slow-past-cloud", "default", "default-stale", "never",
                               "gone", "errors"])
    _heartbeat(store, "fast", {"heartbeat_s": 2.0}, ago_s=7)           # 3 x 2 s = 6 s < 7 s: stale
    _heartbeat(store, "fast-ok", {"heartbeat_s": 2.0}, ago_s=4)        # within 6 s
    _heartbeat(store, "slow", {"heartbeat_s": 60.0}, ago_s=100)        # within 180 s
    _heartbeat(store, "slow-past-cloud", {"heartbeat_s": 60.0}, ago_s=150)  # past the cloud's 120 s, not its 180 s
    _heartbeat(store, "default", {}, ago_s=60)                         # default_heartbeat_s 30: 90 s
    _heartbeat(store, "default-stale", {}, ago_s=95)
    _heartbeat(store, "gone", {"heartbeat_s": 2.0})
    store.devices.revoke_device("gone")
    _heartbeat(store, "errors", {"heartbeat_s": 5.0, "loop_errors": 2.0, "rtf": 40.0, "outbox_depth": 12.0,
                                 "config_version": 7.0}, {"backend": "onnxruntime", "config_error": "nope"})
    rows = {r.device_id: r for r in d.devices()}
    assert {k: r.state for k, r in rows.items()} == {
        "fast": "stale", "fast-ok": "ok", "slow": "ok", "slow-past-cloud": "ok", "default": "ok",
        "default-stale": "stale", "never": "never", "gone": "revoked", "errors": "degraded"}
    assert rows["fast"].heartbeat_s == 2.0 and rows["default"].heartbeat_s == 30.0
    e = rows["errors"]
    assert (e.rtf, e.backlog, e.backend, e.config_version, e.config_error) == (40.0, 12, "onnxruntime", 7, "nope")
    assert rows["never"].last_heartbeat_ns is None and rows["never"].config_version is None


def test_stale_heartbeats_is_the_configured_multiple(tmp_path):
    url = migrated(tmp_path)
    store = Store.open(url)
    store.devices.add_device("d")
    _heartbeat(store, "d", {"heartbeat_s": 10.0}, ago_s=25)
    strict, lenient = data_for(url, tmp_path / "c", stale_heartbeats=2), data_for(url, tmp_path / "c")
    try:
        assert [r.state for r in strict.devices()] == ["stale"]    # 2 x 10 s < 25 s
        assert [r.state for r in lenient.devices()] == ["ok"]      # 3 x 10 s > 25 s
    finally:
        strict.close()
        lenient.close()
        store.close()


# ------------------------------------------------------------------------------------------ spectrogram
def _flac(seconds: float = 1.5, rate: int = 16000) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    f = 300 + 2500 * t / seconds  # a rising chirp over faint noise: the image has structure, not one colour
    wave = 0.5 * np.sin(2 * np.pi * np.cumsum(f) / rate) + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, wave.astype(np.float32), rate, format="FLAC")
    return buf.getvalue()


def test_the_spectrogram_of_a_stored_flac_clip_is_a_png_with_structure(fresh):
    from PIL import Image

    d, store, folder = fresh
    clip = _flac()
    sha = open_store(str(folder / "clips"), d.cfg.db).put(clip)
    store.devices.add_device("lamp-1")
    now = time.time_ns()
    commit_events(store, "lamp-1", [
        {"label": "glass_break", "start_ns": now, "lat": 52.5, "lon": 13.4,
         "clip": ClipIn("flac", 16000, now - S // 2, 0.5, sha256=sha, size=len(clip))},
        {"label": "speech", "start_ns": now + S}])
    with_clip, without = sorted(all_events(store), key=lambda e: e.start_ns)
    assert with_clip.clip is not None and with_clip.clip.sha256 == sha
    assert d.clip(with_clip.id) == (clip, "audio/flac")

    png = d.spectrogram_png(with_clip.id)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(png))
    img.load()
    assert img.size == (900, 260)
    px = np.asarray(img.convert("L"), dtype=np.float32)
    assert px.std() > 10 and len(np.unique(px)) > 50  # a picture, not a blank or one-colour image

    with pytest.raises(NotFound, match="has no clip"):
        d.spectrogram_png(without.id)
    with pytest.raises(NotFound):
        d.spectrogram_png(10_000)


def test_a_device_past_the_clouds_stale_limit_but_within_its_own_still_shows_degraded(fresh):
    d, store, _ = fresh
    store.devices.add_device("slow-errors")
    _heartbeat(store, "slow-errors", {"heartbeat_s": 60.0, "loop_errors": 3.0}, ago_s=150)
    assert [r.state for r in d.devices()] == ["degraded"]
