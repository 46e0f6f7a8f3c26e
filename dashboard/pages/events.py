"""The events table: sorted and paged on the server, each row linked to its detail, with a CSV export of the
current filter."""
from __future__ import annotations

import dash
from dash import Input, Output, dash_table, html

from dashboard import data, filterbar, ids
from dashboard.filters import Filters, iso

dash.register_page(__name__, path="/events", name="Events", title="edgert · events")

COLUMNS = [("start", "start (UTC)", "start_ns"), ("label", "label", "label"), ("device", "device", "device_id"),
           ("score", "score", "score"), ("verification", "verification", None), ("review", "review", None),
           ("open", "", None)]
SORTABLE = {c: col for c, _, col in COLUMNS if col}


def layout(**query):
    f = Filters.from_query(query)
    cfg = data.get().cfg
    return html.Div([
        filterbar.bar(f),
        html.Div(className="summary", children=[
            html.Span(id=ids.EV_COUNT), " · ",
            html.A("download CSV of this filter", id=ids.EV_CSV, href="/export.csv" + f.to_query(),
                   download="events.csv"),
        ]),
        dash_table.DataTable(
            id=ids.EV_TABLE, columns=[{"name": n, "id": c, "presentation": "markdown" if c == "open" else "input"}
                                      for c, n, _ in COLUMNS],
            page_current=0, page_size=cfg.page_size, page_action="custom", sort_action="custom", sort_mode="single",
            sort_by=[{"column_id": "start", "direction": "desc"}], markdown_options={"link_target": "_self"},
            style_cell={"fontFamily": "inherit", "fontSize": "0.9rem", "textAlign": "left", "padding": "4px 8px"},
            style_header={"fontWeight": "600"}),
    ])


def _verification(e) -> str:
    v = e.verification
    if v is None:
        return "not verified"
    if v.status != "done":
        return v.status
    return "agrees" if v.agree else "disagrees" if v.agree is False else "done"


def _review(e) -> str:
    r = e.review
    if r is None:
        return ""
    what = f"wrong label → {r.label}" if r.decision == "wrong_label" else r.decision.replace("_", " ")
    return f"{what} ({r.reviewer}, {iso(r.created_ns)[:16].replace('T', ' ')})"


@dash.callback(Output(ids.EV_TABLE, "data"), Output(ids.EV_TABLE, "page_count"), Output(ids.EV_COUNT, "children"),
               Output(ids.EV_CSV, "href"),
               Input(ids.F_STATE, "data"), Input(ids.EV_TABLE, "page_current"), Input(ids.EV_TABLE, "page_size"),
               Input(ids.EV_TABLE, "sort_by"), Input(ids.TICK, "n_intervals"))
def _page(q, page, size, sort_by, _tick):
    if q is None:
        raise dash.exceptions.PreventUpdate
    f = Filters.from_query(q)
    order, desc = "start_ns", True
    if sort_by:
        order = SORTABLE.get(sort_by[0]["column_id"], "start_ns")
        desc = sort_by[0]["direction"] == "desc"
    rows, total = data.get().events_page(f, page or 0, size, order, desc)
    out = [{"start": iso(e.start_ns).replace("T", " ").rstrip("Z"), "label": e.label, "device": e.device_id,
            "score": round(e.score, 3), "verification": _verification(e), "review": _review(e),
            "open": f"[open](/event/{e.id})"} for e in rows]
    pages = max(1, -(-total // size))
    return out, pages, f"{total} events", "/export.csv" + q
