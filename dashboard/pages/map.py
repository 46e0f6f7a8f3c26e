"""The map (home page): events clustered on the server, alerts, fleet alerts as lines between the devices that
heard them, and the devices with their health; the offline Natural Earth outlines underneath."""
from __future__ import annotations

import time

import dash
import dash_leaflet as dl
from dash import ALL, Input, Output, State, ctx, dcc, html

from dashboard import data, filterbar, ids
from dashboard.filters import Filters, iso
from dashboard.layers import base_layers
from dashboard.style import STATE_COLORS, label_color

dash.register_page(__name__, path="/", name="Map", title="edgert · map")

def layout(**query):
    f = Filters.from_query(query)
    cfg = data.get().cfg.map
    return html.Div(className="map-page", children=[
        filterbar.bar(f),
        html.Div(id=ids.MAP_SUMMARY, className="summary"),
        html.Div(className="map-row", children=[
            dl.MapContainer(id=ids.MAP, center=list(cfg.center), zoom=cfg.zoom, trackViewport=True,
                            style={"height": "68vh", "width": "100%"}, worldCopyJump=True, minZoom=1,
                            children=base_layers() + [
                                dl.LayerGroup(id=ids.MAP_EVENTS), dl.LayerGroup(id=ids.MAP_ALERTS),
                                dl.LayerGroup(id=ids.MAP_DEVICES)]),
            html.Aside(id=ids.MAP_PANEL, className="panel",
                       children=html.P("Click an event or a cluster on the map.", className="hint")),
        ]),
        dcc.Store(id=ids.MAP_SELECTED),
    ])


def _event_marker(c) -> dl.CircleMarker:
    return dl.CircleMarker(
        id={"type": ids.EVENT_MARKER, "pk": c.event_pk, "n": 1}, center=[c.lat, c.lon], radius=7,
        color="#222" if c.distress else "#ffffff", weight=2 if c.distress else 1, fillColor=label_color(c.label),
        fillOpacity=0.9, className=f"ev-point ev-label-{c.label}" + (" ev-distress" if c.distress else ""),
        children=dl.Tooltip(c.label))


def _cluster_marker(c, cell: float) -> dl.DivMarker:
    size = 26 + min(22, 4 * len(str(c.count)))
    kind = "ev-cluster ev-cluster-distress" if c.distress else "ev-cluster"
    top = ", ".join(f"{k} {v}" for k, v in sorted(c.labels.items(), key=lambda kv: -kv[1])[:4])
    return dl.DivMarker(
        id={"type": ids.EVENT_MARKER, "pk": c.event_pk, "n": c.count}, position=[c.lat, c.lon],
        iconOptions={"html": f'<div class="{kind}" data-count="{c.count}" style="border-color:'
                             f'{label_color(c.label)}"><span>{c.count}</span></div>',
                     "className": "ev-cluster-icon", "iconSize": [size, size]},
        children=dl.Tooltip(f"{c.count} events: {top}"))


@dash.callback(Output(ids.MAP_EVENTS, "children"), Output(ids.MAP_SUMMARY, "children"),
               Input(ids.F_STATE, "data"), Input(ids.TICK, "n_intervals"), Input(ids.MAP, "zoom"))
def _events(q, _tick, zoom):
    if q is None:
        raise dash.exceptions.PreventUpdate
    d = data.get()
    f = Filters.from_query(q)
    zoom = 2 if zoom is None else zoom
    cells, missing, total = d.map_cells(f, zoom)
    cell = d.cell_deg(zoom)
    markers = [_event_marker(c) if c.count == 1 else _cluster_marker(c, cell) for c in cells]
    points = sum(1 for c in cells if c.count == 1)
    summary = [
        html.Span(f"{total} events", id="map-total", **{"data-total": str(total)}),
        html.Span(f" · {points} single, {len(cells) - points} clusters on the map"),
        html.Span(f" · {missing} without a position" if missing else ""),
        html.Span(f" · updated {iso(time.time_ns())}", className="muted"),
    ]
    return markers, summary


@dash.callback(Output(ids.MAP_ALERTS, "children"), Input(ids.F_STATE, "data"), Input(ids.TICK, "n_intervals"))
def _alerts(q, _tick):
    if q is None:
        raise dash.exceptions.PreventUpdate
    out = []
    for a in data.get().alerts(Filters.from_query(q)):
        text = f"{a.kind} alert · {a.rule}: {', '.join(a.labels)} · {iso(a.start_ns)}"
        if a.kind == "fleet":
            spots = []
            for e in a.events:
                if e.lat is not None and e.lon is not None and [e.lat, e.lon] not in spots:
                    spots.append([e.lat, e.lon])
            if len(spots) >= 2:
                out.append(dl.Polyline(positions=spots, color="#c62828", weight=3, dashArray="6 4",
                                       className="fleet-line", children=dl.Tooltip(text)))
        if a.lat is not None and a.lon is not None:
            out.append(dl.CircleMarker(center=[a.lat, a.lon], radius=16, color="#c62828", weight=3, fill=False,
                                       className=f"alert-ring alert-{a.kind}", children=dl.Tooltip(text)))
    return out


@dash.callback(Output(ids.MAP_DEVICES, "children"), Input(ids.TICK, "n_intervals"), Input(ids.F_STATE, "data"))
def _devices(_tick, q):
    f = Filters.from_query(q or "")
    out = []
    for r in data.get().devices():
        if r.lat is None or r.lon is None or (f.devices and r.device_id not in f.devices):
            continue
        seen = iso(r.last_heartbeat_ns) if r.last_heartbeat_ns else "never"
        tip = html.Div([
            html.B(r.device_id), html.Span(f" · {r.state}"), html.Br(),
            f"last heartbeat {seen} (every {r.heartbeat_s:g} s)", html.Br(),
            f"RTF {r.rtf:g}x" if r.rtf is not None else "RTF –", " · ",
            f"backlog {r.backlog}" if r.backlog is not None else "backlog –", html.Br(),
            f"{r.backend or 'backend ?'} · model {r.model_sha256[:12] or '?'}"])
        out.append(dl.DivMarker(
            id=f"dev-{r.device_id}", position=[r.lat, r.lon],
            iconOptions={"html": f'<div class="dev dev-{r.state}" data-device="{r.device_id}" '
                                 f'style="background:{STATE_COLORS.get(r.state, "#777")}"></div>',
                         "className": "dev-icon", "iconSize": [14, 14], "iconAnchor": [-4, -4]},  # beside its events
            children=dl.Tooltip(tip)))
    return out


@dash.callback(Output(ids.MAP_SELECTED, "data"), Input({"type": ids.EVENT_MARKER, "pk": ALL, "n": ALL}, "n_clicks"),
               prevent_initial_call=True)
def _select(clicks):
    t = ctx.triggered_id
    if not t or not any(x for x in clicks if x):
        raise dash.exceptions.PreventUpdate
    hit = [c for c in ctx.triggered if c.get("value")]
    if not hit:
        raise dash.exceptions.PreventUpdate
    return {"pk": t["pk"], "n": t["n"]}


@dash.callback(Output(ids.MAP_PANEL, "children"), Input(ids.MAP_SELECTED, "data"), State(ids.F_STATE, "data"))
def _panel(sel, q):
    if not sel:
        raise dash.exceptions.PreventUpdate
    d = data.get()
    try:
        e = d.event(int(sel["pk"]))
    except data.NotFound:
        return html.P("That event is gone.", className="hint")
    head = []
    if sel.get("n", 1) > 1:
        head = [html.P(f"A cluster of {sel['n']} events; zoom in to split it. Its first event:", className="hint")]
    v = e.verification
    verdict = ("not verified" if v is None else
               f"verifier: {'agrees' if v.agree else 'disagrees' if v.agree is False else v.status}")
    r = e.review
    return head + [
        html.H3([html.Span(className="swatch", style={"background": label_color(e.label)}), e.label]),
        html.P(f"{e.device_id} · {iso(e.start_ns)} · score {e.score:.2f}"),
        html.P(verdict),
        html.P(f"review: {r.decision.replace('_', ' ')} by {r.reviewer}" if r else "not reviewed"),
        dcc.Link("open the event →", href=f"/event/{e.id}", className="button", id="map-open-event"),
    ]
