#!/usr/bin/env python3
"""Regenerate tests/data/proj_reference.csv: reference conversions computed by PROJ (pyproj).

The builtin engine in src/convert/crs.rs is checked against this table by
tests/it/crs_reference.rs (agreement within 1 mm on every line).

Usage (from anywhere):  python3 tools/proj_reference.py
Needs pyproj (written with pyproj 3.7.2 / PROJ 9.5.1). Always uses the default (best) operation
PROJ picks for each pair, with GIS axis order (always_xy=True): x = easting or longitude,
y = northing or latitude.
"""

import csv
import os
import sys

import pyproj
from pyproj import CRS, Transformer

# The CRSs the reference covers (each in both directions against EPSG:4326).
CODES = [4326, 4737, 3857, 2097, 5174, 5178, 5179, 5181, 5185, 5186, 5187, 5188, 32651, 32652]

# CRS -> CRS pairs that do not go through EPSG:4326 in the table.
PAIRS = [(5174, 5186), (5179, 5174), (2097, 3857), (5186, 32652)]

# Where each source CRS accepts input positions (WGS84 lon/lat), mirroring Crs::area() in the
# builtin engine: reference inputs must lie inside it.
KOREA = (122.71, 28.60, 134.28, 40.27)


def accepted_area(code):
    if 32601 <= code <= 32660 or 32701 <= code <= 32760:
        zone = code % 100
        west = zone * 6 - 186
        south, north = (0.0, 84.0) if code < 32700 else (-80.0, 0.0)
        return (west - 3, south, west + 9, north)
    if code == 4326:
        return (-180.0, -90.0, 180.0, 90.0)
    if code == 3857:
        return (-180.0, -85.06, 180.0, 85.06)
    return KOREA


def points():
    """WGS84 lon/lat positions over South Korea."""
    pts = []
    # A 6 x 5 grid over 124.5..131 E, 33..38.6 N.
    for i in range(6):
        for j in range(5):
            lon = 124.5 + (131.0 - 124.5) * i / 5
            lat = 33.0 + (38.6 - 33.0) * j / 4
            pts.append((lon, lat))
    # Belt edges, islands and the corners of the national extent.
    pts += [
        (124.53, 37.0),  # West Belt, west edge
        (126.0, 35.0),  # West / Central belt boundary
        (126.0, 37.5),
        (128.0, 34.8),  # Central / East belt boundary
        (128.0, 38.3),
        (129.65, 36.0),  # East Belt, east edge
        (130.71, 37.5),  # East Sea Belt
        (131.01, 37.6),
        (130.9053, 37.4846),  # Ulleungdo
        (131.8694, 37.2417),  # Dokdo
        (126.5312, 33.4996),  # Jeju
        (126.2669, 33.1140),  # Marado
        (126.9780, 37.5665),  # Seoul City Hall
        (129.0756, 35.1796),  # Busan
        (122.80, 28.70),  # corners of the national extent
        (134.20, 40.20),
    ]
    return pts


def inside(area, lon, lat):
    west, south, east, north = area
    return west <= lon <= east and south <= lat <= north


def fmt(code, v):
    return f"{v:.12f}" if CRS.from_epsg(code).is_geographic else f"{v:.6f}"


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_path = os.path.join(root, "tests", "data", "proj_reference.csv")
    to_wgs84 = {}

    def projected_inputs(code):
        """The WGS84 points inside `code`'s accepted area, as input strings in `code`."""
        t = to_wgs84.setdefault(code, Transformer.from_crs(4326, code, always_xy=True))
        area = accepted_area(code)
        rows = []
        for lon, lat in points():
            if not inside(area, lon, lat):
                continue
            x, y = t.transform(lon, lat, errcheck=True)
            rows.append((fmt(code, x), fmt(code, y)))
        return rows

    def emit(writer, src, dst, inputs):
        t = Transformer.from_crs(src, dst, always_xy=True)
        for xs, ys in inputs:
            ex, ey = t.transform(float(xs), float(ys), errcheck=True)
            writer.writerow([src, dst, xs, ys, fmt(dst, ex), fmt(dst, ey)])

    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["from", "to", "x", "y", "expected_x", "expected_y"])
        wgs84_inputs = [(fmt(4326, lon), fmt(4326, lat)) for lon, lat in points()]
        for code in CODES:
            emit(w, code, 4326, projected_inputs(code))
            if code != 4326:
                emit(w, 4326, code, wgs84_inputs)
        for src, dst in PAIRS:
            emit(w, src, dst, projected_inputs(src))

    print(f"wrote {out_path} (pyproj {pyproj.__version__}, PROJ {pyproj.proj_version_str})",
          file=sys.stderr)


if __name__ == "__main__":
    main()
