// Functions the map's GeoJSON layers call by name (dash-leaflet resolves {"variable": "edgert.x"} props). The
// markers are made here, in the browser, from one GeoJSON prop per layer: thousands of them cost one React
// component, not one each. Tooltip texts arrive escaped from the server.
window.edgert = Object.assign({}, window.edgert, {
    cityPoint: function (feature, latlng) {
        return L.circleMarker(latlng, {radius: 2, color: "#55657a", weight: 1, fillOpacity: 0.8, interactive: true,
                                       pane: "base"});
    },
    cityTooltip: function (feature, layer) {
        if (feature.properties && feature.properties.name) { layer.bindTooltip(feature.properties.name); }
    },
    eventPoint: function (feature, latlng) {
        var p = feature.properties;
        if (p.count === 1) {
            return L.circleMarker(latlng, {
                radius: 7, fillColor: p.color, fillOpacity: 0.9, color: p.distress ? "#222" : "#ffffff",
                weight: p.distress ? 2 : 1,
                className: "ev-point ev-label-" + p.label + (p.distress ? " ev-distress" : "")});
        }
        var size = 26 + Math.min(22, 4 * String(p.count).length);
        var cls = p.distress ? "ev-cluster ev-cluster-distress" : "ev-cluster";
        return L.marker(latlng, {icon: L.divIcon({
            html: '<div class="' + cls + '" data-count="' + p.count + '" style="border-color:' + p.color +
                  '"><span>' + p.count + '</span></div>',
            className: "ev-cluster-icon", iconSize: [size, size]})});
    },
    devicePoint: function (feature, latlng) {
        var p = feature.properties;
        return L.marker(latlng, {icon: L.divIcon({
            html: '<div class="dev dev-' + p.state + '" data-device="' + p.device_id + '" style="background:' +
                  p.color + '"></div>',
            className: "dev-icon", iconSize: [14, 14], iconAnchor: [-4, -4]})});
    },
    tooltip: function (feature, layer) {
        if (feature.properties && feature.properties.tooltip) { layer.bindTooltip(feature.properties.tooltip); }
    }
});
