"""Timeline and statistics: events per label over time, how often the verifier and the reviewers agree with the
edge per label, and the reviewed false-alarm rate per device."""
from __future__ import annotations

import dash
import plotly.graph_objects as go
from dash import Input, Output, dcc, html

from dashboard import data, filterbar, ids
from dashboard.filters import Filters
from dashboard.style import label_color

dash.register_page(__name__, path="/stats", name="Statistics", title="edgert · statistics")

EMPTY = {  # what an empty chart says, by its title
    "false-alarm rate per device (from reviews)": "no reviews in this filter yet: review events on their pages",
    "agreement with the edge, per label": "no verified or reviewed events in this filter yet",
}
GRAPH = {"displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}


def layout(**query):
    f = Filters.from_query(query)
    return html.Div([
        filterbar.bar(f),
        dcc.Graph(id=ids.S_TIMELINE, config=GRAPH),
        html.Div(className="graphs", children=[dcc.Graph(id=ids.S_AGREEMENT, config=GRAPH),
                                               dcc.Graph(id=ids.S_FALSE_ALARMS, config=GRAPH)]),
    ])


def _layout(title: str, **kw) -> dict:
    return {"title": {"text": title, "font": {"size": 14}}, "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
            "plot_bgcolor": "#fff", "paper_bgcolor": "#f6f7f9", "legend": {"orientation": "h"}, **kw}


@dash.callback(Output(ids.S_TIMELINE, "figure"), Output(ids.S_AGREEMENT, "figure"),
               Output(ids.S_FALSE_ALARMS, "figure"),
               Input(ids.F_STATE, "data"), Input(ids.TICK, "n_intervals"))
def _figures(q, _tick):
    if q is None:
        raise dash.exceptions.PreventUpdate
    d = data.get()
    f = Filters.from_query(q)
    rows, bucket = d.timeline(f)
    by_label: dict[str, dict[int, int]] = {}
    for t, label, n in rows:
        by_label.setdefault(label, {})[t] = n
    timeline = go.Figure([go.Bar(x=[_ts(t) for t in sorted(v)], y=[v[t] for t in sorted(v)], name=label,
                                 marker_color=label_color(label)) for label, v in sorted(by_label.items())])
    timeline.update_layout(**_layout(f"events per label, per {_span(bucket)}", barmode="stack",
                                     yaxis={"title": "events"}))

    ver = {a.label: a for a in d.verifier_agreement(f)}
    rev = {r.label: r for r in d.review_stats(f)}
    labels = sorted(set(ver) | set(rev))
    agreement = go.Figure([
        go.Bar(x=labels, y=[ver[x].rate if x in ver else None for x in labels], name="verifier agrees",
               text=[f"{ver[x].agreed}/{ver[x].verified}" if x in ver else "" for x in labels],
               marker_color="#4363d8"),
        go.Bar(x=labels, y=[rev[x].agreement if x in rev else None for x in labels], name="reviewers say real",
               text=[f"{rev[x].real}/{rev[x].reviewed}" if x in rev else "" for x in labels],
               marker_color="#2e9e44")])
    agreement.update_layout(**_layout("agreement with the edge, per label", barmode="group",
                                      yaxis={"title": "share", "range": [0, 1.05], "tickformat": ".0%"}))

    fa = d.false_alarms(f)
    devices = [x.device_id for x in fa]
    false_alarms = go.Figure([
        go.Bar(x=devices, y=[x.false_alarms / x.reviewed if x.reviewed else None for x in fa],
               text=[f"{x.false_alarms}/{x.reviewed} reviewed ({x.events} events)" for x in fa],
               name="false alarms among reviewed", marker_color="#c62828")])
    false_alarms.update_layout(**_layout("false-alarm rate per device (from reviews)",
                                         yaxis={"title": "share", "range": [0, 1.05], "tickformat": ".0%"}))
    for fig, empty in ((timeline, not rows), (agreement, not labels), (false_alarms, not any(x.reviewed for x in fa))):
        if empty:
            fig.add_annotation(text=EMPTY.get(fig.layout.title.text, "nothing in this filter yet"),
                               showarrow=False, font={"size": 14, "color": "#7a8795"}, xref="paper", yref="paper",
                               x=0.5, y=0.5)
    return timeline, agreement, false_alarms


def _ts(ns: int):
    import datetime as dt

    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc)


def _span(seconds: int) -> str:
    for n, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % n == 0:
            k = seconds // n
            return unit if k == 1 else f"{k} {unit}s"
    return f"{seconds} s"
