"""One event: what the edge and the verifier said, the clip with its pre-roll, its log-mel spectrogram from our
own front end, where it was heard, and the review buttons (each decision stored with who and when)."""
from __future__ import annotations

import dash
import dash_leaflet as dl
from dash import Input, Output, State, ctx, dcc, html

from dashboard import auth, data, ids
from dashboard.filters import iso
from dashboard.layers import base_layers
from dashboard.style import label_color

dash.register_page(__name__, path_template="/event/<pk>", name="Event", title="edgert · event")


def _facts(e) -> html.Table:
    rows = [("device", e.device_id), ("start", iso(e.start_ns)),
            ("end", iso(e.end_ns) if e.end_ns else "still going (no end yet)"),
            ("duration", f"{(e.end_ns - e.start_ns) / 1e9:.2f} s" if e.end_ns else "–"),
            ("score", f"{e.score:.3f}"), ("backend", e.backend or "–"), ("model", (e.model_sha256 or "–")[:16]),
            ("position", f"{e.lat:.5f}, {e.lon:.5f}" if e.lat is not None and e.lon is not None else "none"),
            ("seq / id", f"{e.seq} / {e.event_id}")]
    return html.Table([html.Tr([html.Td(k), html.Td(v)]) for k, v in rows], className="facts", id=ids.D_FACTS)


def _verification(e) -> html.Div:
    v = e.verification
    if v is None:
        body = [html.B("not verified"), html.Span(": its label is not one the cloud always verifies, and it was not "
                                                  "in the random sample")]
    elif v.status in ("pending", "running"):
        body = [html.B("not verified yet"), html.Span(f": a {v.reason} job is {v.status}")]
    elif v.status == "failed":
        body = [html.B("not verified"), html.Span(f": the verifier failed ({v.error or 'no reason given'})")]
    elif v.status == "skipped":
        body = [html.B("not verified"), html.Span(f": skipped ({v.error or 'no clip'})")]
    else:
        verdict = "agrees" if v.agree else "disagrees" if v.agree is False else "has no opinion"
        top = sorted(v.scores.items(), key=lambda kv: -kv[1])[:5]
        body = [html.B(f"the {v.verifier} verifier {verdict}"),
                html.Span(f" (it heard: {', '.join(v.labels) or 'nothing it knows'}; {v.reason})"),
                html.Ul([html.Li(f"{k}: {s:.3f}") for k, s in top])]
    return html.Div(body, id=ids.D_VERIFICATION)


def _reviews(pk: int) -> list:
    found = data.get().reviews(pk)
    if not found:
        return [html.P("not reviewed yet", className="hint")]
    items = []
    for r in reversed(found):
        what = f"wrong label → {r.label}" if r.decision == "wrong_label" else r.decision.replace("_", " ")
        items.append(html.Li([html.B(what), f" by {r.reviewer}, {iso(r.created_ns)}"],
                             className=f"review review-{r.decision}"))
    return [html.Ul(items)]


def layout(pk: str = "", **_query):
    try:
        e = data.get().event(int(pk))
    except (ValueError, data.NotFound):
        return html.Div([html.H2("No such event"), html.P(f"There is no event {pk!r}."),
                         dcc.Link("← the map", href="/")])
    d = data.get()
    user = auth.current_user()
    where = ([dl.MapContainer(id=ids.D_MAP, center=[e.lat, e.lon], zoom=9, style={"height": "220px"},
                              children=base_layers() + [dl.CircleMarker(center=[e.lat, e.lon], radius=9,
                                                                        fillColor=label_color(e.label), color="#222",
                                                                        fillOpacity=0.9)])]
             if e.lat is not None and e.lon is not None else [html.P("no position", className="hint")])
    if e.clip is not None:
        clip = [html.Audio(id=ids.D_AUDIO, src=f"/clip/{e.id}", controls=True, preload="metadata"),
                html.P(f"{e.clip.format.upper()}, {e.clip.sample_rate} Hz, {e.clip.size / 1024:.0f} KiB, with "
                       f"{e.clip.preroll_s:g} s of pre-roll", className="hint"),
                html.Img(id=ids.D_SPECTROGRAM, src=f"/spectrogram/{e.id}.png", className="spectrogram",
                         alt="log-mel spectrogram of the clip")]
    else:
        clip = [html.P(f"no clip ({e.clip_dropped or 'the device sent none'})", className="hint")]
    # signed in: the user is the reviewer (and the field is only shown); on loopback without users: typed in
    reviewer = html.Div([html.Label("reviewer "),
                         dcc.Input(id=ids.D_REVIEWER, value=user or auth.local_user(), disabled=bool(user),
                                   persistence=None if user else True, persistence_type="local", debounce=True)])
    return html.Div([
        dcc.Store(id=ids.D_PK, data=e.id),
        html.H2([html.Span(className="swatch", style={"background": label_color(e.label)}), e.label,
                 html.Span(f" · {e.device_id} · {iso(e.start_ns)}", className="muted")], id=ids.D_TITLE),
        html.Div(className="detail", children=[
            html.Div([html.H4("clip"), *clip,
                      html.H4("top AudioSet classes"),
                      html.Ol([html.Li(f"{n}: {s:.3f}") for n, s in e.classes[:10]], id=ids.D_CLASSES),
                      html.H4("verification"), _verification(e)]),
            html.Div([_facts(e), html.H4("where"), *where,
                      html.H4("review"), reviewer,
                      html.Button("real event", id=ids.D_REAL, className="real"),
                      html.Button("false alarm", id=ids.D_FALSE, className="false"),
                      html.Div([html.Button("wrong label →", id=ids.D_WRONG),
                                dcc.Dropdown(id=ids.D_WRONG_LABEL, options=[x for x in d.label_names if x != e.label],
                                             placeholder="the right label", style={"minWidth": "180px"})],
                               style={"display": "flex", "alignItems": "center"}),
                      html.Div(id=ids.D_REVIEW_MSG, className="review-msg"),
                      html.Div(_reviews(e.id), id=ids.D_REVIEWS)]),
        ]),
    ])


@dash.callback(Output(ids.D_REVIEW_MSG, "children"), Output(ids.D_REVIEW_MSG, "className"),
               Output(ids.D_REVIEWS, "children"),
               Input(ids.D_REAL, "n_clicks"), Input(ids.D_FALSE, "n_clicks"), Input(ids.D_WRONG, "n_clicks"),
               State(ids.D_PK, "data"), State(ids.D_WRONG_LABEL, "value"), State(ids.D_REVIEWER, "value"),
               prevent_initial_call=True)
def _review(_real, _false, _wrong, pk, wrong_label, reviewer):
    from cloud_svc.errors import CloudError

    decision = {ids.D_REAL: "real", ids.D_FALSE: "false_alarm", ids.D_WRONG: "wrong_label"}.get(ctx.triggered_id)
    if decision is None:
        raise dash.exceptions.PreventUpdate
    who = auth.current_user() or (reviewer or "").strip()
    try:
        r = data.get().review(int(pk), decision, who, label=wrong_label if decision == "wrong_label" else None)
    except CloudError as exc:
        return f"not stored: {exc}", "review-msg error", dash.no_update
    what = f"wrong label → {r.label}" if r.decision == "wrong_label" else r.decision.replace("_", " ")
    return f"stored: {what} by {r.reviewer}", "review-msg ok", _reviews(int(pk))
