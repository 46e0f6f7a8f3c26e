"""The dashboard process's one pydantic config: defaults in the model, a YAML file, DASHBOARD__ env and CLI
overrides. Passwords are stored as werkzeug hashes (`python -m dashboard hash-password`), never in clear."""
from __future__ import annotations

import ipaddress
import os
from typing import Any, Optional

from pydantic import Field, field_validator

from dashboard.errors import ConfigError
from edgert.settings import Strict, load_layers

ENV_PREFIX = "DASHBOARD__"
HASH_METHODS = ("scrypt:", "pbkdf2:")


class AuthConfig(Strict):
    users: dict[str, str] = Field(default_factory=dict, description=(
        "NAME: password hash (from `python -m dashboard hash-password`); HTTP basic auth on every page and file. "
        "Required when the dashboard listens on anything but loopback"))
    realm: str = Field("edgert dashboard", min_length=1, max_length=100)

    @field_validator("users")
    @classmethod
    def _hashed(cls, v: dict[str, str]) -> dict[str, str]:
        for name, h in v.items():
            if not name or ":" in name:
                raise ValueError(f"user name {name!r} must be non-empty and have no ':'")
            if not h.startswith(HASH_METHODS):
                raise ValueError(f"the password of {name!r} is not a hash (scrypt:... or pbkdf2:...); make one with "
                                 "`python -m dashboard hash-password`")
        return v


class MapConfig(Strict):
    tiles: Optional[str] = Field(None, description=(
        "a tile URL template (https://.../{z}/{x}/{y}.png) to draw under the events; unset: the shipped offline "
        "Natural Earth outlines, and no request leaves the host"))
    attribution: str = Field("", max_length=500, description="shown with the tiles")
    cities: bool = Field(True, description="draw the shipped cities over the outlines")
    center: tuple[float, float] = (30.0, 10.0)
    zoom: int = Field(2, ge=0, le=18)

    @field_validator("center")
    @classmethod
    def _center(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (-90 <= v[0] <= 90 and -180 <= v[1] <= 180):
            raise ValueError(f"center {v} is not a latitude, longitude")
        return v


class DashboardConfig(Strict):
    db: str = Field("sqlite:///cloud.db", min_length=1, description="the cloud's database (SQLAlchemy URL)")
    clips: Optional[str] = Field(None, description="the cloud's clip store (default as cloud_svc: clips/ beside a "
                                                   "SQLite file, else ./clips), or s3://bucket/prefix")
    host: str = Field("127.0.0.1", min_length=1, description="address to listen on; loopback unless auth is set")
    port: int = Field(8050, ge=0, le=65535)
    refresh_s: float = Field(5.0, ge=0.5, le=3600.0, description="live updates: the map and lists refresh this often")
    page_size: int = Field(25, ge=5, le=500, description="rows per page of the events table")
    csv_max_rows: int = Field(100_000, ge=1, le=10_000_000, description="the CSV export stops here")
    stale_heartbeats: float = Field(3.0, gt=0.0, le=100.0,
                                    description="a device silent for this many of its heartbeat intervals is stale")
    default_heartbeat_s: float = Field(30.0, gt=0.0, le=3600.0,
                                       description="the interval assumed for a device that does not report its own")
    max_map_cells: int = Field(3000, ge=10, le=50000, description="at most this many markers and clusters")
    auth: AuthConfig = Field(default_factory=AuthConfig)
    map: MapConfig = Field(default_factory=MapConfig)

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def load(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None,
         env: dict[str, str] | None = None) -> DashboardConfig:
    """Model defaults <- YAML file <- DASHBOARD__A__B env vars <- overrides {"a.b": value}; refuses a dashboard
    that listens beyond loopback without users."""
    cfg = load_layers(DashboardConfig, what="dashboard config", error=ConfigError, env_prefix=ENV_PREFIX, path=path,
                      overrides=overrides, env=env)
    if not cfg.loopback and not cfg.auth.users:
        raise ConfigError(f"the dashboard would listen on {cfg.host}, beyond this machine, without credentials: add "
                          "auth.users (NAME: hash from `python -m dashboard hash-password`) to the config, or listen "
                          "on 127.0.0.1")
    return cfg
