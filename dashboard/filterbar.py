"""The filter bar of the map, events and statistics pages: its layout (from the URL's filters) and the callbacks
that turn its controls into the one filter value (ids.F_STATE) and write that value back into the URL."""
from __future__ import annotations

import time
from dataclasses import replace

import dash
from dash import Input, Output, State, dcc, html

from dashboard import data, ids
from dashboard.filters import OPEN_END, REVIEWED, VERIFIED, WINDOWS, Filters, iso

WINDOW_NAMES = {"15m": "15 min", "1h": "1 hour", "6h": "6 hours", "24h": "24 hours", "7d": "7 days",
                "30d": "30 days", "all": "all time"}
VERIFIED_NAMES = {"any": "any", "done": "verified", "agree": "verifier agrees", "disagree": "verifier disagrees",
                  "pending": "verification pending", "none": "not verified"}
REVIEWED_NAMES = {"any": "any", "none": "not reviewed", "reviewed": "reviewed", "real": "real event",
                  "false_alarm": "false alarm", "wrong_label": "wrong label"}


def bar(f: Filters) -> html.Div:
    d = data.get()
    window = "custom" if f.start_ns is not None else f.window
    windows = [{"label": WINDOW_NAMES[w], "value": w} for w in WINDOWS]
    if window == "custom":
        windows.append({"label": "custom (from the link)", "value": "custom"})
    return html.Div(className="filters", children=[
        html.Div([html.Label("time"), dcc.Dropdown(id=ids.F_WINDOW, options=windows, value=window,
                                                   clearable=False, searchable=False)], className="f-window"),
        html.Div([dcc.RangeSlider(id=ids.F_SLIDER, min=0, max=100, step=1, value=[f.lo, f.hi],
                                  marks={0: "start", 50: "", 100: "now"}, allowCross=False, updatemode="mouseup",
                                  allow_direct_input=False),
                  html.Div(id=ids.F_RANGE_TEXT, className="f-range-text")], className="f-slider"),
        html.Div([html.Label("labels"), dcc.Dropdown(id=ids.F_LABELS, options=d.label_options(),
                                                     value=list(f.labels), multi=True, placeholder="all labels")],
                 className="f-labels"),
        html.Div([html.Label("devices"), dcc.Dropdown(id=ids.F_DEVICES, options=d.device_ids(),
                                                      value=list(f.devices), multi=True,
                                                      placeholder="all devices")], className="f-devices"),
        html.Div([html.Label("verification"), dcc.Dropdown(
            id=ids.F_VERIFIED, options=[{"label": VERIFIED_NAMES[v], "value": v} for v in VERIFIED],
            value=f.verified, clearable=False, searchable=False)], className="f-verified"),
        html.Div([html.Label("review"), dcc.Dropdown(
            id=ids.F_REVIEWED, options=[{"label": REVIEWED_NAMES[v], "value": v} for v in REVIEWED],
            value=f.reviewed, clearable=False, searchable=False)], className="f-reviewed"),
        html.Div([html.Span(p) for p in f.problems], className="f-problems"),
        dcc.Store(id=ids.F_STATE + "-custom", data=[f.start_ns, f.end_ns]),
    ])


@dash.callback(Output(ids.F_STATE, "data"),
               Input(ids.F_WINDOW, "value"), Input(ids.F_SLIDER, "value"), Input(ids.F_LABELS, "value"),
               Input(ids.F_DEVICES, "value"), Input(ids.F_VERIFIED, "value"), Input(ids.F_REVIEWED, "value"),
               State(ids.F_STATE + "-custom", "data"))
def _state(window, slider, labels, devices, verified, reviewed, custom):
    lo, hi = slider or (0, 100)
    f = Filters(labels=tuple(labels or ()), devices=tuple(devices or ()), verified=verified or "any",
                reviewed=reviewed or "any", lo=int(lo), hi=int(hi))
    if window == "custom" and custom and custom[0] is not None:
        f = replace(f, start_ns=custom[0], end_ns=custom[1])
    elif window in WINDOWS:
        f = replace(f, window=window)
    return f.to_query()


@dash.callback(Output(ids.F_RANGE_TEXT, "children"), Input(ids.F_STATE, "data"), Input(ids.TICK, "n_intervals"))
def _range_text(q, _tick):
    if q is None:
        raise dash.exceptions.PreventUpdate
    f = Filters.from_query(q)
    lo, hi = f.range_ns(time.time_ns(), data.get().first_event_ns())
    return f"{iso(lo)} → {'now' if hi == OPEN_END else iso(hi)}"


# The filter goes into the address bar without a navigation (replaceState), so the page and its map keep their
# state, and a copied link opens the same view.
dash.clientside_callback(
    """function(q) {
        if (q === null || q === undefined) { return window.dash_clientside.no_update; }
        var url = window.location.pathname + q;
        if (url !== window.location.pathname + window.location.search) { window.history.replaceState(null, '', url); }
        return q;
    }""",
    Output(ids.URL_SYNC, "data"), Input(ids.F_STATE, "data"))


@dash.callback(Output({"type": ids.NAV_LINK, "page": dash.ALL}, "href"), Input(ids.F_STATE, "data"),
               State({"type": ids.NAV_LINK, "page": dash.ALL}, "id"))
def _nav(q, links):
    """The filter travels with the links between the filtered pages."""
    keep = {"/", "/events", "/stats"}
    q = q or ""
    return [x["page"] + q if x["page"] in keep else x["page"] for x in links]
