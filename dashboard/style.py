"""Colours and small drawing helpers shared by the pages (no data access here)."""
from __future__ import annotations

import hashlib
from typing import Optional, Sequence
from urllib.parse import quote

LABEL_COLORS = {
    "glass_break": "#e6194b", "scream": "#f58231", "shout": "#ffb000", "gunshot": "#911eb4",
    "explosion": "#800000", "siren": "#4363d8", "alarm": "#42d4f4", "car_horn": "#469990",
    "dog_bark": "#9a6324", "baby_cry": "#f032e6", "speech": "#a9a9a9",
}
STATE_COLORS = {"ok": "#2e9e44", "degraded": "#e6a700", "stale": "#c62828", "never": "#7f7f7f",
                "revoked": "#444444"}


def label_color(label: str) -> str:
    c = LABEL_COLORS.get(label)
    if c:
        return c
    h = hashlib.sha1(label.encode()).hexdigest()
    return f"#{h[:6]}"


def sparkline(values: Sequence[Optional[float]], width: int = 140, height: int = 28, color: str = "#4363d8") -> str:
    """A tiny line chart as an SVG data: URL (no request leaves the page)."""
    pts = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(pts) < 2:
        body = f'<text x="2" y="{height - 8}" font-size="10" fill="#999">no history yet</text>'
    else:
        lo = min(v for _, v in pts)
        hi = max(v for _, v in pts)
        span = (hi - lo) or 1.0
        n = max(len(values) - 1, 1)
        xy = " ".join(f"{2 + i * (width - 4) / n:.1f},{height - 3 - (v - lo) / span * (height - 6):.1f}"
                      for i, v in pts)
        body = f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{xy}"/>'
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{body}</svg>'
    return "data:image/svg+xml;utf8," + quote(svg)
