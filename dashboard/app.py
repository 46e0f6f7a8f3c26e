"""The Dash app: the shell (header, navigation, live-update tick), the file routes (clip audio, spectrogram, CSV,
offline base map) and basic auth. Pages live in dashboard/pages, one module each; they never import this."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import dash
import flask
from dash import dcc, html

from dashboard import auth, basemap, data, ids
from dashboard.config import DashboardConfig
from dashboard.errors import ConfigError
from dashboard.filters import Filters

log = logging.getLogger("dashboard")
HERE = Path(__file__).resolve().parent
PAGES = [("/", "Map"), ("/events", "Events"), ("/stats", "Statistics"), ("/devices", "Devices")]


def _shell() -> html.Div:
    return html.Div([
        dcc.Location(id=ids.URL, refresh=False),
        html.Header(className="top", children=[
            html.Div([html.Span("edgert", className="brand"), html.Span(" acoustic events", className="sub")]),
            html.Nav(id=ids.NAV, children=[dcc.Link(name, href=path, id={"type": ids.NAV_LINK, "page": path},
                                                    className="nav-link") for path, name in PAGES]),
            html.Div(id=ids.WHO, className="who"),
        ]),
        dcc.Interval(id=ids.TICK, interval=int(data.get().cfg.refresh_s * 1000)),
        dcc.Store(id=ids.F_STATE),
        dcc.Store(id=ids.URL_SYNC),
        html.Main(dash.page_container, className="page"),
    ])


def _routes(server: flask.Flask, cfg: DashboardConfig) -> None:
    from cloud_svc.errors import ClipStoreError, NotFound
    from edgert.errors import CoreError

    def fail(code: int, text: str) -> flask.Response:
        return flask.Response(text + "\n", code, {"Content-Type": "text/plain; charset=utf-8"})

    @server.route("/clip/<int:pk>")
    def _clip(pk: int):
        try:
            body, mime = data.get().clip(pk)
        except NotFound as exc:
            return fail(404, str(exc))
        except ClipStoreError as exc:
            return fail(503, f"the clip store cannot be read: {exc}")
        resp = flask.Response(body, 200, {"Content-Type": mime, "Cache-Control": "private, max-age=86400"})
        return resp.make_conditional(flask.request)  # Range requests: the audio element seeks

    @server.route("/spectrogram/<int:pk>.png")
    def _spectrogram(pk: int):
        try:
            png = data.get().spectrogram_png(pk)
        except NotFound as exc:
            return fail(404, str(exc))
        except ClipStoreError as exc:
            return fail(503, f"the clip store cannot be read: {exc}")
        except CoreError as exc:  # undecodable clip
            return fail(422, str(exc))
        return flask.Response(png, 200, {"Content-Type": "image/png", "Cache-Control": "private, max-age=86400"})

    @server.route("/export.csv")
    def _csv():
        f = Filters.from_query(flask.request.query_string.decode())
        if f.problems:
            return fail(400, "; ".join(f.problems))
        rows = data.get().csv_rows(f)
        return flask.Response(flask.stream_with_context(rows), 200, {
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="events.csv"'})

    @server.route("/basemap/<name>.geojson")
    def _basemap(name: str):
        paths = {"countries": basemap.path, "cities": basemap.cities_path}
        if name not in paths:
            return fail(404, f"no base map layer {name!r}")
        return flask.send_file(paths[name](), mimetype="application/geo+json", max_age=86400)

    @server.route("/healthz")
    def _health():
        data.get().store.ping()
        return "ok\n"


def create_app(cfg: DashboardConfig, d: Optional[data.Data] = None) -> dash.Dash:
    """The app over the cloud's store. Raises ConfigError when the offline base map is missing and no tile URL is
    configured (a map without land would look like a broken page)."""
    if cfg.map.tiles is None:
        try:
            basemap.path()
        except basemap.BasemapError as exc:
            raise ConfigError(str(exc)) from None
    data.configure(d or data.Data.open(cfg))
    app = dash.Dash(__name__, use_pages=True, pages_folder=str(HERE / "pages"), assets_folder=str(HERE / "assets"),
                    serve_locally=True, suppress_callback_exceptions=True, title="edgert · acoustic events",
                    update_title="")
    app.layout = _shell
    auth.install(app.server, cfg.auth)
    _routes(app.server, cfg)
    return app
