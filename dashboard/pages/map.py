"""The map (home page): events clustered on the server, alerts, fleet alerts as lines between the devices that
heard them, and the devices with their health; the offline Natural Earth outlines underneath."""
from __future__ import annotations

import math
import time
from html import escape

import dash
import dash_leaflet as dl
from dash import Input, Output, State, dcc, html

from dashboard import data, filterbar, ids
from dashboard.filters import Filters, iso
from dashboard.layers import base_layers
from dashboard.style import STATE_COLORS, label_color

dash.register_page(__name__, path="/", name="Map", title="edgert · map")

CLUSTER_LIST = 12  # events listed for a clicked cluster


def JS(name: str) -> dict:
    """A function of assets/edgert.js, by name, for a dash-leaflet function prop."""
    return {"variable": f"edgert.{name}"}


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
                                dl.GeoJSON(id=ids.MAP_EVENTS, pointToLayer=JS("eventPoint"),
                                           onEachFeature=JS("tooltip")),
                                dl.LayerGroup(id=ids.MAP_ALERTS),
                                dl.GeoJSON(id=ids.MAP_DEVICES, pointToLayer=JS("devicePoint"),
                                           onEachFeature=JS("tooltip"))]),
            html.Aside(id=ids.MAP_PANEL, className="panel",
                       children=html.P("Click an event or a cluster on the map.", className="hint")),
        ]),
        dcc.Store(id=ids.MAP_SELECTED),
    ])


def _feature(lat: float, lon: float, **props) -> dict:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": props}


def _cell_feature(c, deg: float) -> dict:
    # the grid cell the server grouped it in (the same floor((x + offset) / deg) as the query): the panel lists it
    gy, gx = math.floor((c.lat + 90.0) / deg), math.floor((c.lon + 180.0) / deg)
    box = [gy * deg - 90.0, gx * deg - 180.0, (gy + 1) * deg - 90.0, (gx + 1) * deg - 180.0]
    if c.count == 1:
        tip = escape(c.label)
    else:
        top = ", ".join(f"{k} {v}" for k, v in sorted(c.labels.items(), key=lambda kv: -kv[1])[:4])
        tip = escape(f"{c.count} events: {top}")
    return _feature(c.lat, c.lon, pk=c.event_pk, count=c.count, label=c.label, color=label_color(c.label),
                    distress=bool(c.distress), tooltip=tip, box=box)


@dash.callback(Output(ids.MAP_EVENTS, "data"), Output(ids.MAP_SUMMARY, "children"),
               Input(ids.F_STATE, "data"), Input(ids.TICK, "n_intervals"), Input(ids.MAP, "zoom"))
def _events(q, _tick, zoom):
    if q is None:
        raise dash.exceptions.PreventUpdate
    d = data.get()
    f = Filters.from_query(q)
    zoom = 2 if zoom is None else zoom
    cells, missing, total = d.map_cells(f, zoom)
    deg = d.cell_deg(zoom)
    markers = {"type": "FeatureCollection", "features": [_cell_feature(c, deg) for c in cells]}
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


@dash.callback(Output(ids.MAP_DEVICES, "data"), Input(ids.TICK, "n_intervals"), Input(ids.F_STATE, "data"))
def _devices(_tick, q):
    f = Filters.from_query(q or "")
    out = []
    for r in data.get().devices():
        if r.lat is None or r.lon is None or (f.devices and r.device_id not in f.devices):
            continue
        seen = iso(r.last_heartbeat_ns) if r.last_heartbeat_ns else "never"
        rtf = f"RTF {r.rtf:g}x" if r.rtf is not None else "RTF –"
        backlog = f"backlog {r.backlog}" if r.backlog is not None else "backlog –"
        tip = (f"<b>{escape(r.device_id)}</b> · {escape(r.state)}<br>last heartbeat {seen} (every {r.heartbeat_s:g} s)"
               f"<br>{rtf} · {backlog}<br>{escape(r.backend or 'backend ?')} · model "
               f"{escape(r.model_sha256[:12] or '?')}")
        out.append(_feature(r.lat, r.lon, device_id=escape(r.device_id), state=r.state,
                            color=STATE_COLORS.get(r.state, "#777"), tooltip=tip))
    return {"type": "FeatureCollection", "features": out}


@dash.callback(Output(ids.MAP_SELECTED, "data"), Input(ids.MAP_EVENTS, "clickData"), prevent_initial_call=True)
def _select(feature):
    if not feature or "pk" not in (feature.get("properties") or {}):
        raise dash.exceptions.PreventUpdate
    p = feature["properties"]
    return {"pk": int(p["pk"]), "n": int(p.get("count", 1)), "box": p.get("box")}


@dash.callback(Output(ids.MAP_PANEL, "children"), Input(ids.MAP_SELECTED, "data"), State(ids.F_STATE, "data"))
def _panel(sel, q):
    if not sel:
        raise dash.exceptions.PreventUpdate
    d = data.get()
    if sel.get("n", 1) > 1 and sel.get("box"):
        return _cluster_panel(sel, Filters.from_query(q or ""))
    try:
        e = d.event(int(sel["pk"]))
    except data.NotFound:
        return html.P("That event is gone.", className="hint")
    v = e.verification
    verdict = ("not verified" if v is None else
               f"verifier: {'agrees' if v.agree else 'disagrees' if v.agree is False else v.status}")
    r = e.review
    return [
        html.H3([html.Span(className="swatch", style={"background": label_color(e.label)}), e.label]),
        html.P(f"{e.device_id} · {iso(e.start_ns)} · score {e.score:.2f}"),
        html.P(verdict),
        html.P(f"review: {r.decision.replace('_', ' ')} by {r.reviewer}" if r else "not reviewed"),
        dcc.Link("open the event →", href=f"/event/{e.id}", className="button", id="map-open-event"),
    ]


def _cluster_panel(sel, f: Filters) -> list:
    """A cluster: its newest events (under the filter), each linked; zooming in splits clusters of places."""
    from cloud_svc.domain import BBox

    lat0, lon0, lat1, lon1 = sel["box"]
    found = data.get().cluster_events(f, BBox(lat0, lon0, lat1, lon1), CLUSTER_LIST)
    rows = [html.Li([html.Span(className="swatch", style={"background": label_color(e.label)}),
                     dcc.Link(e.label, href=f"/event/{e.id}"),
                     html.Span(f" · {e.device_id} · {iso(e.start_ns)[11:19]}", className="muted")])
            for e in found]
    return [html.P(f"A cluster of {sel['n']} events; its newest {len(found)}:", className="hint"),
            html.Ul(rows, className="cluster-list"),
            dcc.Link("open the newest →", href=f"/event/{found[0].id}", className="button", id="map-open-event")
            if found else html.Span()]
