"""The dashboard's offline base map: country outlines and cities as GeoJSON, built from Natural Earth.

Provenance: Natural Earth 1:110m cultural vectors (Admin 0 countries, populated places), which are in the
public domain, as the geopandas 0.14.4 wheel on PyPI carries them (geopandas/datasets/naturalearth_lowres
and naturalearth_cities; geopandas moved Crimea from Russia's polygon to Ukraine's). The wheel is fetched at
build time with `pip download --no-deps` and checked against the sha256 in dashboard/basemap.lock.json; its
shapefiles are read with pyshp, never imported as geopandas. Properties are cut to name and ISO code,
coordinates rounded to 3 decimals, rings wound as RFC 7946 asks, two city names that the source's Latin-1
encoding lost ("?saka") spelt as Natural Earth's ASCII names, and the JSON written with sorted keys in a
stable feature order, so every build gives the same bytes; the lock holds their sha256 too.

Nothing here touches the network at run time: the dashboard reads the built files through `path()` and
`cities_path()`. `make setup` (or `python -m dashboard.basemap build`) makes them; `verify()` checks them.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"  # git-ignored: the built GeoJSON
CACHE_DIR = STATIC_DIR / ".cache"  # git-ignored: the downloaded wheel, so a rebuild needs no network
LOCK_PATH = PACKAGE_DIR / "basemap.lock.json"  # committed: the source wheel's and the outputs' sha256

BUILD_HINT = "build it with `make setup` (or `python -m dashboard.basemap build`)"
DECIMALS = 3  # about 110 m at the equator, finer than a 1:110m map is drawn to
NO_ISO = "-99"  # Natural Earth's "no code" (Kosovo); written as null
# geopandas wrote its shapefiles in Latin-1, which turned the letters it lacks into "?"; these names get
# Natural Earth's own ASCII spelling (its NAMEASCII field) back.
NAME_FIXES = {"?saka": "Osaka", "Chi?in?u": "Chisinau"}


class BasemapError(Exception):
    """The base map cannot be built or read; the message says what to do."""


class BasemapMissingError(BasemapError, FileNotFoundError):
    """A built base map file does not exist."""


class BasemapIntegrityError(BasemapError):
    """The source wheel or a built file is not the one the lock names."""


@dataclass(frozen=True)
class Layer:
    """One output file: which shapefile of the wheel it comes from and which of its fields it keeps."""

    output: str  # file name under the output folder
    member: str  # shapefile path inside the wheel, without extension
    fields: tuple[tuple[str, str], ...]  # (property written, source field)
    description: str


LAYERS = (
    Layer("countries.geojson", "geopandas/datasets/naturalearth_lowres/naturalearth_lowres",
          (("name", "name"), ("iso_a3", "iso_a3")), "Natural Earth 1:110m Admin 0 - Countries"),
    Layer("cities.geojson", "geopandas/datasets/naturalearth_cities/naturalearth_cities",
          (("name", "name"),), "Natural Earth 1:110m Populated Places (capitals and major cities)"),
)
COUNTRIES, CITIES = LAYERS


@dataclass(frozen=True)
class Lock:
    """dashboard/basemap.lock.json: what the build reads and the bytes it must produce."""

    requirement: str  # e.g. "geopandas==0.14.4"
    wheel: str  # file name pip saves
    wheel_sha256: str
    outputs: dict[str, str]  # output file name -> sha256
    tools: dict[str, str]


def load_lock(lock_path: Path = LOCK_PATH) -> Lock:
    try:
        raw = json.loads(lock_path.read_text())
        src = raw["source"]
        return Lock(requirement=src["requirement"], wheel=src["wheel"], wheel_sha256=src["sha256"],
                    outputs={n: e["sha256"] for n, e in raw.get("outputs", {}).items()},
                    tools=dict(raw.get("tools", {})))
    except FileNotFoundError as exc:
        raise BasemapError(f"the base map lock {lock_path} is missing; it is committed with the code") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BasemapError(f"the base map lock {lock_path} is malformed ({exc!r})") from exc


def _write_lock(lock: Lock, shas: dict[str, str], sizes: dict[str, int], lock_path: Path) -> None:
    body = {
        "comment": "what `python -m dashboard.basemap build` reads (a PyPI wheel carrying Natural Earth, public "
                   "domain) and the sha256 of the files it must produce; outputs are rewritten by --update-lock",
        "source": {"requirement": lock.requirement, "wheel": lock.wheel, "sha256": lock.wheel_sha256,
                   "data": "Natural Earth 1:110m cultural vectors, public domain",
                   "members": [f"{layer.member}.shp" for layer in LAYERS]},
        "tools": {"pyshp": _pyshp_version()},
        "outputs": {n: {"sha256": shas[n], "bytes": sizes[n]} for n in sorted(shas)},
    }
    lock_path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")


def sha256_file(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def _shapefile() -> Any:
    """pyshp, a build-time tool only: the dashboard never needs it to serve the map."""
    try:
        import shapefile
    except ImportError as exc:
        raise BasemapError("pyshp is not installed: it is pinned in requirements.lock (`make setup` installs it)"
                           ) from exc
    return shapefile


def _pyshp_version() -> str:
    return str(_shapefile().__version__)


# -- paths the dashboard reads ------------------------------------------------------------------------------

def _built(layer: Layer, out_dir: Path | None) -> Path:
    p = (out_dir or STATIC_DIR) / layer.output
    if not p.is_file():
        raise BasemapMissingError(f"the offline base map {p} does not exist: {BUILD_HINT}")
    return p


def path(out_dir: Path | None = None) -> Path:
    """The built countries GeoJSON (a FeatureCollection of Polygon/MultiPolygon features: name, iso_a3)."""
    return _built(COUNTRIES, out_dir)


def cities_path(out_dir: Path | None = None) -> Path:
    """The built cities GeoJSON (a FeatureCollection of Point features: name)."""
    return _built(CITIES, out_dir)


# -- fetch --------------------------------------------------------------------------------------------------

def check_wheel(wheel: Path, lock: Lock) -> None:
    """Raise unless `wheel` is byte for byte the one the lock names."""
    actual = sha256_file(wheel)
    if actual != lock.wheel_sha256:
        raise BasemapIntegrityError(
            f"{wheel} has sha256 {actual}, but {LOCK_PATH.name} expects {lock.wheel_sha256} for "
            f"{lock.requirement}; refusing to build the base map from it (delete it to download it again)")


def fetch_wheel(cache_dir: Path, lock: Lock) -> Path:
    """The source wheel in `cache_dir`: downloaded with `pip download --no-deps` when absent or not the locked one."""
    wheel = cache_dir / lock.wheel
    if not (wheel.is_file() and sha256_file(wheel) == lock.wheel_sha256):
        cache_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--only-binary=:all:", "-d", str(cache_dir), lock.requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not wheel.is_file():
            raise BasemapError(f"could not download {lock.requirement} from PyPI:\n{proc.stderr.strip()}")
    check_wheel(wheel, lock)
    return wheel


# -- convert ------------------------------------------------------------------------------------------------

def _num(v: float) -> float:
    return round(float(v), DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0, so the bytes do not depend on the sign


def _signed_area(ring: list[list[float]]) -> float:
    """Shoelace area of a closed ring; positive when it runs counterclockwise."""
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:])) / 2.0


def _ring(points: Any, exterior: bool) -> list[list[float]] | None:
    """A rounded ring without repeated vertices, wound RFC 7946's way (exterior ccw, holes cw); None if it collapsed."""
    ring: list[list[float]] = []
    for p in points:
        q = [_num(p[0]), _num(p[1])]
        if not ring or q != ring[-1]:
            ring.append(q)
    if len(ring) > 1 and ring[0] != ring[-1]:
        ring.append(list(ring[0]))
    area = _signed_area(ring) if len(ring) >= 4 else 0.0
    if area == 0.0:
        return None
    return ring if (area > 0) == exterior else ring[::-1]


def _polygon(rings: Any) -> list[list[list[float]]] | None:
    ext = _ring(rings[0], exterior=True)
    if ext is None:
        return None
    return [ext] + [h for h in (_ring(r, exterior=False) for r in rings[1:]) if h is not None]


def _geometry(geo: dict[str, Any]) -> dict[str, Any] | None:
    """Shapefile geometry (pyshp's __geo_interface__, shapefile winding) -> rounded RFC 7946 geometry."""
    kind = geo["type"]
    if kind == "Point":
        return {"type": "Point", "coordinates": [_num(geo["coordinates"][0]), _num(geo["coordinates"][1])]}
    if kind in ("Polygon", "MultiPolygon"):
        polys = [geo["coordinates"]] if kind == "Polygon" else list(geo["coordinates"])
        kept = [p for p in (_polygon(rings) for rings in polys) if p is not None]
        if not kept:
            return None
        return {"type": "Polygon", "coordinates": kept[0]} if len(kept) == 1 else \
            {"type": "MultiPolygon", "coordinates": kept}
    raise BasemapError(f"unexpected geometry type {kind!r} in the source shapefile")


def _read_layer(zf: zipfile.ZipFile, layer: Layer) -> list[dict[str, Any]]:
    shapefile = _shapefile()

    def member(ext: str) -> bytes:
        try:
            return zf.read(f"{layer.member}.{ext}")
        except KeyError as exc:
            raise BasemapError(f"the source wheel has no {layer.member}.{ext}") from exc

    encoding = member("cpg").decode("ascii").strip() or "utf-8"
    with shapefile.Reader(shp=io.BytesIO(member("shp")), shx=io.BytesIO(member("shx")),
                          dbf=io.BytesIO(member("dbf")), encoding=encoding) as reader:
        features: list[dict[str, Any]] = []
        for rec in reader.iterShapeRecords():
            geometry = _geometry(dict(rec.shape.__geo_interface__))
            if geometry is None:
                continue
            values = rec.record.as_dict()
            props: dict[str, Any] = {}
            for out_name, src in layer.fields:
                v = values[src]
                props[out_name] = None if v in (None, "", NO_ISO) else NAME_FIXES.get(v, v)
            features.append({"type": "Feature", "properties": props, "geometry": geometry})
    # Stable order whatever the shapefile's: by name, then by the geometry's text.
    features.sort(key=lambda f: (str(f["properties"].get("name")), json.dumps(f["geometry"], sort_keys=True)))
    return features


def render(wheel: Path, layer: Layer, lock: Lock) -> bytes:
    """The GeoJSON bytes of one layer, read from the wheel; the wheel is checked against the lock first."""
    check_wheel(wheel, lock)
    with zipfile.ZipFile(wheel) as zf:
        features = _read_layer(zf, layer)
    doc = {
        "type": "FeatureCollection",
        "attribution": "Natural Earth (public domain)",
        "source": {
            "data": f"{layer.description}, public domain",
            "package": lock.requirement,
            "wheel_sha256": lock.wheel_sha256,
            "member": f"{layer.member}.shp",
            "changes": f"properties cut to {', '.join(n for n, _ in layer.fields)}; coordinates rounded to "
                       f"{DECIMALS} decimals; rings wound per RFC 7946; names that the source's Latin-1 encoding "
                       "lost given Natural Earth's ASCII spelling",
        },
        "features": features,
    }
    return (json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
            + "\n").encode("ascii")


def render_all(wheel: Path, lock: Lock) -> dict[str, bytes]:
    """output file name -> its bytes, for every layer."""
    return {layer.output: render(wheel, layer, lock) for layer in LAYERS}


def write_files(files: dict[str, bytes], out_dir: Path) -> None:
    """Write each file atomically, so a reader never sees half a GeoJSON."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out_dir)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the web server must read it
        os.replace(tmp, out_dir / name)


# -- build and verify ---------------------------------------------------------------------------------------

def verify(out_dir: Path | None = None, lock_path: Path = LOCK_PATH) -> dict[str, str]:
    """Check every built file against the lock; return output name -> sha256, or raise naming each problem."""
    out_dir = out_dir or STATIC_DIR
    lock = load_lock(lock_path)
    problems, shas = [], {}
    for layer in LAYERS:
        p = out_dir / layer.output
        expected = lock.outputs.get(layer.output)
        if not p.is_file():
            problems.append(f"{p} does not exist: {BUILD_HINT}")
            continue
        shas[layer.output] = actual = sha256_file(p)
        if expected is None:
            problems.append(f"{lock_path.name} has no sha256 for {layer.output}: "
                            "run `python -m dashboard.basemap build --update-lock` deliberately")
        elif actual != expected:
            problems.append(f"{p} has sha256 {actual[:16]}…, but {lock_path.name} expects {expected[:16]}…: "
                            "it was changed or built from another source; rebuild with "
                            "`python -m dashboard.basemap build --force`")
    if problems:
        raise BasemapIntegrityError("; ".join(problems))
    return shas


def build(force: bool = False, out_dir: Path | None = None, cache_dir: Path | None = None,
          update_lock: bool = False, lock_path: Path = LOCK_PATH, quiet: bool = False) -> Path:
    """Build the base map unless it is there and matches the lock; return the countries GeoJSON's path.

    The wheel is kept in `cache_dir`, so rebuilding needs no network. A build whose bytes differ from the lock
    raises (with update_lock, it rewrites the lock's output sha256 instead, after a deliberate change).
    """
    out_dir = out_dir or STATIC_DIR
    cache_dir = cache_dir or CACHE_DIR

    def say(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr)

    if not force and not update_lock:
        try:
            verify(out_dir, lock_path)
            say(f"base map up to date in {out_dir} (use --force to rebuild)")
            return path(out_dir)
        except BasemapError:
            pass
    lock = load_lock(lock_path)
    t0 = time.monotonic()
    wheel = fetch_wheel(cache_dir, lock)
    say(f"[1/3] fetch {lock.requirement} ({time.monotonic() - t0:.1f} s)")
    t = time.monotonic()
    files = render_all(wheel, lock)
    shas = {n: hashlib.sha256(data).hexdigest() for n, data in files.items()}
    say(f"[2/3] render {', '.join(files)} ({time.monotonic() - t:.1f} s)")
    # Checked before anything is written: a build that does not reproduce the lock leaves the old files alone.
    if update_lock:
        _write_lock(lock, shas, {n: len(data) for n, data in files.items()}, lock_path)
        say(f"updated {lock_path}")
    else:
        missing = [n for n in shas if n not in lock.outputs]
        if missing:
            raise BasemapIntegrityError(
                f"{lock_path.name} has no sha256 for {', '.join(missing)}: review the files, then run "
                "`python -m dashboard.basemap build --update-lock`")
        bad = [n for n, s in shas.items() if lock.outputs[n] != s]
        if bad:
            raise BasemapIntegrityError(
                f"the base map build is not reproducible here: sha256 of {', '.join(bad)} differs from "
                f"{lock_path.name} (pyshp {_pyshp_version()} here, {lock.tools.get('pyshp', '?')} in the lock); "
                "check the pin in requirements.lock")
    t = time.monotonic()
    write_files(files, out_dir)
    say(f"[3/3] write to {out_dir} ({time.monotonic() - t:.1f} s)")
    sizes = ", ".join(f"{n} {(out_dir / n).stat().st_size:,d} B" for n in shas)
    say(f"built the base map in {time.monotonic() - t0:.1f} s → {out_dir} ({sizes})")
    return path(out_dir)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashboard.basemap",
                                 description="Build or check the dashboard's offline Natural Earth base map.")
    ap.add_argument("--out-dir", type=Path, help=f"output folder (default {STATIC_DIR})")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="fetch the locked wheel (cached) and write the GeoJSON files")
    b.add_argument("--force", action="store_true", help="rebuild even when the files match the lock")
    b.add_argument("--update-lock", action="store_true",
                   help="record the produced sha256 in dashboard/basemap.lock.json (after a deliberate change)")
    sub.add_parser("verify", help="check the built files against dashboard/basemap.lock.json")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            build(force=args.force, out_dir=args.out_dir, update_lock=args.update_lock)
        else:
            for name, sha in verify(args.out_dir).items():
                print(f"ok  {name:18s} sha256 {sha[:16]}…")
        return 0
    except BasemapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
