"""The fleet: each device's health now and over time (sparklines), backend, model and config versions; and a
form that pushes detector thresholds to one device through ConfigPush (the device reports what it applied)."""
from __future__ import annotations

import dash
from dash import ALL, Input, Output, State, dcc, html

from dashboard import auth, data, ids
from dashboard.filters import iso
from dashboard.style import STATE_COLORS, sparkline

dash.register_page(__name__, path="/devices", name="Devices", title="edgert · devices")

THRESHOLD = "dev-threshold"  # pattern-matching id type of the form's inputs, one per label


def layout(**_query):
    d = data.get()
    devices = d.device_ids()
    return html.Div([
        html.H2("Devices"),
        html.Div(id=ids.DEV_TABLE),
        html.H3("Push detector thresholds to a device"),
        html.P("A score at or above its label's threshold is a hit. The device applies the push at once, keeps it "
               "across restarts, and reports the version it runs (the 'config' column).", className="hint"),
        html.Div([html.Label("device "), dcc.Dropdown(id=ids.DEV_PICK, options=devices,
                                                     value=devices[0] if devices else None, clearable=False,
                                                     style={"width": "260px"})]),
        html.Div(id=ids.DEV_THRESHOLDS, className="push-form"),
        html.Button("push", id=ids.DEV_PUSH),
        html.Div(id=ids.DEV_PUSH_MSG, className="review-msg"),
    ])


@dash.callback(Output(ids.DEV_TABLE, "children"), Input(ids.TICK, "n_intervals"))
def _table(_tick):
    d = data.get()
    rows = d.devices()
    history = d.health_history([r.device_id for r in rows])
    head = html.Tr([html.Th(x) for x in ("device", "state", "last heartbeat", "RTF", "RTF history", "backlog",
                                         "backlog history", "events", "backend", "model", "config")])
    body = []
    for r in rows:
        h = history.get(r.device_id, [])
        pushed = r.pushed.version if r.pushed else None
        if pushed is None:
            config = f"v{r.config_version}" if r.config_version else "shipped"
        elif r.config_version == pushed:
            config = f"v{pushed} applied"
        else:
            config = f"v{pushed} pushed, runs {r.config_version or 'shipped'}"
        if r.config_error:
            config += f" (refused: {r.config_error})"
        body.append(html.Tr([
            html.Td(r.device_id),
            html.Td(html.Span(r.state, className="state", style={"background": STATE_COLORS.get(r.state, "#777")})),
            html.Td(iso(r.last_heartbeat_ns) if r.last_heartbeat_ns else "never"),
            html.Td(f"{r.rtf:g}x" if r.rtf is not None else "–"),
            html.Td(html.Img(src=sparkline([s.figures.get("rtf") for s in h]), alt="RTF history")),
            html.Td("–" if r.backlog is None else str(r.backlog)),
            html.Td(html.Img(src=sparkline([float(s.outbox_depth) for s in h], color="#c62828"),
                             alt="backlog history")),
            html.Td(str(r.events)), html.Td(r.backend or "–"), html.Td((r.model_sha256 or "–")[:12]),
            html.Td(config, className="config"),
        ], id=f"dev-row-{r.device_id}"))
    return html.Table([html.Thead(head), html.Tbody(body)], className="fleet")


@dash.callback(Output(ids.DEV_THRESHOLDS, "children"), Input(ids.DEV_PICK, "value"))
def _form(device_id):
    d = data.get()
    current = d.thresholds()
    if device_id:
        own = d.store.devices.config_for(device_id)
        if own:
            current.update(own.thresholds)
    return [html.Div([html.Label(label), dcc.Input(id={"type": THRESHOLD, "label": label}, type="number", min=0.01,
                                                   max=1.0, step=0.01, value=round(v, 3), debounce=True,
                                                   className=f"thr thr-{label}")])
            for label, v in current.items()]


@dash.callback(Output(ids.DEV_PUSH_MSG, "children"), Output(ids.DEV_PUSH_MSG, "className"),
               Input(ids.DEV_PUSH, "n_clicks"), State(ids.DEV_PICK, "value"),
               State({"type": THRESHOLD, "label": ALL}, "value"), State({"type": THRESHOLD, "label": ALL}, "id"),
               prevent_initial_call=True)
def _push(_n, device_id, values, keys):
    from cloud_svc.errors import CloudError

    if not device_id:
        return "choose a device", "review-msg error"
    thresholds = {}
    for k, v in zip(keys, values):
        if v is None:
            return f"{k['label']}: a threshold in (0, 1] is needed", "review-msg error"
        thresholds[k["label"]] = float(v)
    d = data.get()
    shipped = d.thresholds()
    changed = {k: v for k, v in thresholds.items() if abs(v - shipped.get(k, -1)) > 1e-9}
    try:
        got = d.push_config(device_id, changed or thresholds, auth.current_user() or auth.local_user())
    except CloudError as exc:
        return f"not pushed: {exc}", "review-msg error"
    return (f"version {got.version} set for {device_id} ({len(got.thresholds)} thresholds); it reaches the device "
            "with its next heartbeat, and the table shows when it is applied"), "review-msg ok"
