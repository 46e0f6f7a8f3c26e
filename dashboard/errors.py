"""The dashboard's exception hierarchy."""
from __future__ import annotations


class DashboardError(Exception):
    """Base class of every deliberate dashboard error."""


class ConfigError(DashboardError):
    """The configuration has an unknown key, a value out of range, or is unsafe (open on a network)."""
