// Functions the map's GeoJSON layers call by name (dash-leaflet resolves {"variable": "edgert.x"} props).
window.edgert = Object.assign({}, window.edgert, {
    cityPoint: function (feature, latlng) {
        return L.circleMarker(latlng, {radius: 2, color: "#55657a", weight: 1, fillOpacity: 0.8, interactive: true});
    },
    cityTooltip: function (feature, layer) {
        if (feature.properties && feature.properties.name) { layer.bindTooltip(feature.properties.name); }
    }
});
