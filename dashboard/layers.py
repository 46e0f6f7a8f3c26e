"""The map's base layers, shared by the map page and the event detail's small map: the shipped offline Natural
Earth outlines and cities (served by the app from dashboard/static), or a configured tile URL."""
from __future__ import annotations

import dash_leaflet as dl

from dashboard import data

OUTLINE_STYLE = {"color": "#8a9bb0", "weight": 0.8, "fillColor": "#eef1f5", "fillOpacity": 1.0}


BASE_PANE_Z = 300  # under Leaflet's overlay pane (400): outlines that arrive late never cover the markers


def base_layers() -> list:
    cfg = data.get().cfg.map
    if cfg.tiles:
        return [dl.TileLayer(url=cfg.tiles, attribution=cfg.attribution or None)]
    layers = [dl.GeoJSON(url="/basemap/countries.geojson", style=OUTLINE_STYLE, id="base-countries",
                         interactive=False, pane="base")]
    if cfg.cities:
        layers.append(dl.GeoJSON(url="/basemap/cities.geojson", id="base-cities",
                                 pointToLayer={"variable": "edgert.cityPoint"},
                                 onEachFeature={"variable": "edgert.cityTooltip"}, pane="base"))
    return [dl.Pane(name="base", style={"zIndex": BASE_PANE_Z}, children=layers)]
