"""The filter bar's URL state: it survives a round trip through the query string, a bad value falls back to its
default and is named, the window and slider become the right time range, and the range becomes the store's
EventFilter."""
from __future__ import annotations

import datetime as dt

import pytest

from cloud_svc.domain import EventFilter, Reviewed, Verified
from dashboard.filters import DEFAULT_WINDOW, OPEN_END, WINDOWS, Filters

S = 10**9
NOW = 1_700_000_000 * S           # 2023-11-14T22:13:20Z
T0 = 1_699_000_000 * S            # whole seconds: the URL writes instants to the second
T1 = 1_699_500_000 * S


def _utc(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns // S, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


ROUND_TRIPS = [
    Filters(),
    Filters(window="1h"),
    Filters(window="all", lo=10, hi=90),
    Filters(lo=0, hi=40),
    Filters(lo=55, hi=100),
    Filters(start_ns=T0, end_ns=T1),
    Filters(start_ns=T0),
    Filters(end_ns=T1, window="7d"),
    Filters(labels=("glass_break",)),
    Filters(labels=("shout", "scream", "glass_break"), devices=("lamp-1", "lamp 2/ü"), verified="disagree"),
    Filters(verified="pending", reviewed="none"),
    Filters(reviewed="false_alarm", devices=("a&b=c",)),
    Filters(window="15m", lo=25, hi=75, start_ns=T0, end_ns=T1, labels=("siren",), devices=("x",),
            verified="agree", reviewed="wrong_label"),
]


@pytest.mark.parametrize("f", ROUND_TRIPS, ids=lambda f: f.to_query() or "(defaults)")
def test_a_filter_survives_the_round_trip_through_its_query_string(f):
    q = f.to_query()
    back = Filters.from_query(q)
    assert back == f
    assert back.problems == ()
    assert Filters.from_query(q.lstrip("?")) == f  # with or without the '?'


def test_the_default_filter_writes_no_query_and_only_what_differs_is_written():
    assert Filters().to_query() == ""
    assert Filters(window="1h").to_query() == "?window=1h"
    assert Filters(labels=("a", "b")).to_query() == "?label=a&label=b"
    assert Filters(lo=10).to_query() == "?lo=10&hi=100"
    assert Filters(start_ns=T0).to_query() == f"?from={_utc(T0).replace(':', '%3A')}"
    assert Filters.from_query("") == Filters() == Filters.from_query(None) == Filters.from_query({})


@pytest.mark.parametrize("query, key", [
    ("window=3y", "window"),
    ("lo=abc", "lo"),
    ("hi=1e2", "hi"),
    ("lo=-5", "lo"),
    ("hi=101", "hi"),
    ("lo=80&hi=20", "lo=80"),
    ("from=garbage", "from"),
    ("to=2024-13-45", "to"),
    ("verified=maybe", "verified"),
    ("reviewed=yes", "reviewed"),
])
def test_a_bad_value_falls_back_to_its_default_and_is_named_in_problems(query, key):
    f = Filters.from_query("?" + query + "&label=siren")
    assert len(f.problems) == 1, f.problems
    assert f.problems[0].startswith(key), f.problems
    d = Filters()
    assert (f.window, f.lo, f.hi, f.start_ns, f.end_ns, f.verified, f.reviewed) == \
        (d.window, d.lo, d.hi, d.start_ns, d.end_ns, d.verified, d.reviewed)
    assert f.labels == ("siren",)  # the rest of the link still applies


def test_several_bad_values_are_each_named_and_the_good_ones_kept():
    f = Filters.from_query("window=3y&lo=abc&hi=60&from=garbage&verified=maybe&reviewed=real&device=d1")
    assert [p.split("=")[0] for p in f.problems] == ["window", "lo", "from", "verified"]
    assert (f.window, f.lo, f.hi, f.start_ns, f.verified, f.reviewed, f.devices) == \
        (DEFAULT_WINDOW, 0, 60, None, "any", "real", ("d1",))


def test_from_and_to_accept_iso_8601_with_or_without_zone_and_epoch_milliseconds():
    assert Filters.from_query("from=2023-11-14T22:13:20Z").start_ns == NOW
    assert Filters.from_query("from=2023-11-14T22:13:20").start_ns == NOW       # naive is UTC
    assert Filters.from_query("from=2023-11-14T23:13:20%2B01:00").start_ns == NOW
    assert Filters.from_query("to=1700000000123").end_ns == NOW + 123_000_000  # epoch milliseconds
    assert Filters.from_query("to=2023-11-14").end_ns == 1_699_920_000 * S


def test_dash_page_keyword_arguments_give_lists_or_strings_and_comma_lists_split():
    want = Filters(window="1h", labels=("a", "b"), devices=("d1",), verified="done")
    assert Filters.from_query({"window": "1h", "label": ["a", "b"], "device": "d1", "verified": "done"}) == want
    assert Filters.from_query({"window": ["1h"], "label": "a,b", "device": ["d1"], "verified": ["done"]}) == want
    assert Filters.from_query("window=1h&label=a,b&device=d1&verified=done") == want
    # a comma list and repeated keys mix, in order, each label once, empty parts dropped
    assert Filters.from_query({"label": ["b,a", "c", "a,,"]}).labels == ("b", "a", "c")
    # a repeated single-valued key: the last one counts
    assert Filters.from_query({"window": ["1h", "6h"]}).window == "6h"


def test_a_dash_query_dict_with_a_bad_value_is_reported_too():
    f = Filters.from_query({"lo": "abc", "window": ["3y"]})
    assert len(f.problems) == 2 and f.lo == 0 and f.window == DEFAULT_WINDOW


@pytest.mark.parametrize("window", [w for w, s in WINDOWS.items() if s is not None])
def test_a_preset_window_ends_now_and_is_open_ended_at_the_top_of_the_slider(window):
    f = Filters(window=window)
    start, end = f.window_ns(NOW, None)
    assert (start, end) == (NOW - WINDOWS[window] * S, NOW)
    # hi=100 without an explicit end includes events a device with a fast clock stamped after "now"
    assert f.range_ns(NOW, None) == (NOW - WINDOWS[window] * S, OPEN_END)


def test_the_slider_takes_its_percentages_of_the_window():
    f = Filters(window="1h", lo=25, hi=75)
    assert f.range_ns(NOW, None) == (NOW - 2700 * S, NOW - 900 * S)
    f = Filters(window="24h", lo=50, hi=100)
    assert f.range_ns(NOW, None) == (NOW - 43200 * S, OPEN_END)
    f = Filters(window="24h", lo=0, hi=0)
    assert f.range_ns(NOW, None) == (NOW - 86400 * S, NOW - 86400 * S)


def test_an_explicit_range_is_not_open_ended_and_the_slider_cuts_it():
    f = Filters(start_ns=T0, end_ns=T1)
    assert f.window_ns(NOW, None) == (T0, T1)
    assert f.range_ns(NOW, None) == (T0, T1)  # hi=100 with an explicit 'to' stops at 'to'
    f = Filters(start_ns=T0, end_ns=T1, lo=10, hi=20)
    span = T1 - T0
    assert f.range_ns(NOW, None) == (T0 + span // 10, T0 + span // 5)
    # only 'to': the window preset ends there
    assert Filters(window="1h", end_ns=T1).range_ns(NOW, None) == (T1 - 3600 * S, T1)
    # only 'from': the window runs from there to now, open-ended at the top
    assert Filters(start_ns=T0).range_ns(NOW, None) == (T0, OPEN_END)


def test_the_all_window_starts_at_the_first_event_or_is_empty_without_events():
    f = Filters(window="all")
    assert f.window_ns(NOW, T0) == (T0, NOW)
    assert f.range_ns(NOW, T0) == (T0, OPEN_END)
    assert f.window_ns(NOW, None) == (NOW, NOW + 1)
    # a first event stamped in our future does not turn the window around
    assert f.window_ns(NOW, NOW + 5 * S) == (NOW, NOW + 1)


def test_event_filter_carries_every_field_to_the_stores_event_filter():
    f = Filters(window="6h", lo=50, hi=100, labels=("glass_break", "shout"), devices=("lamp-1", "lamp-2"),
                verified="disagree", reviewed="false_alarm")
    ef = f.event_filter(NOW, T0, limit=25, offset=50, order="score", descending=True)
    assert isinstance(ef, EventFilter)
    assert (ef.start_ns, ef.end_ns) == (NOW - 3 * 3600 * S, OPEN_END)
    assert ef.labels == ["glass_break", "shout"] and ef.device_ids == ["lamp-1", "lamp-2"]
    assert ef.verified is Verified.DISAGREE and ef.reviewed is Reviewed.FALSE_ALARM
    assert (ef.limit, ef.offset, ef.order, ef.descending) == (25, 50, "score", True)
    assert ef.bbox is None and ef.ids is None and ef.after_id == 0

    d = Filters().event_filter(NOW, None)
    assert (d.start_ns, d.end_ns, d.labels, d.device_ids) == (NOW - 86400 * S, OPEN_END, [], [])
    assert d.verified is Verified.ANY and d.reviewed is Reviewed.ANY


@pytest.mark.parametrize("value", ["any", "done", "agree", "disagree", "pending", "none"])
def test_every_verified_choice_in_the_url_maps_to_the_stores_enum(value):
    assert Filters.from_query(f"verified={value}").event_filter(NOW, None).verified is Verified(value)


@pytest.mark.parametrize("value", ["any", "none", "reviewed", "real", "false_alarm", "wrong_label"])
def test_every_reviewed_choice_in_the_url_maps_to_the_stores_enum(value):
    assert Filters.from_query(f"reviewed={value}").event_filter(NOW, None).reviewed is Reviewed(value)
