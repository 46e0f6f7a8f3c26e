"""The MQTT topic names: one place builds PREFIX/DEVICE/event and its siblings, and refuses names that would
make a topic mean something else (a wildcard, an empty level, a device that shadows the fleet or bridge topics)."""
from __future__ import annotations

from edgert.errors import NotifyError

FLEET = "fleet"
BRIDGE = "bridge"
RESERVED_DEVICES = (FLEET, BRIDGE)
# '+' and '#' are wildcards in a subscription; NUL is forbidden in any MQTT string.
FORBIDDEN = ("+", "#", "\x00")


def check_prefix(prefix: str) -> str:
    """`prefix` when it is a usable topic root (levels separated by '/', none empty, no wildcard); else NotifyError."""
    if not isinstance(prefix, str) or not prefix:
        raise NotifyError(f"MQTT topic prefix {prefix!r} is empty")
    bad = [c for c in FORBIDDEN if c in prefix]
    if bad:
        raise NotifyError(f"MQTT topic prefix {prefix!r} contains {', '.join(map(repr, bad))}")
    if "" in prefix.split("/"):
        raise NotifyError(f"MQTT topic prefix {prefix!r} has an empty level (a leading, trailing or double '/')")
    return prefix


def check_device(device_id: str) -> str:
    """`device_id` when it can be one topic level of its own; else NotifyError naming it."""
    if not isinstance(device_id, str) or not device_id:
        raise NotifyError(f"device id {device_id!r} cannot be an MQTT topic level: it is empty")
    bad = [c for c in FORBIDDEN + ("/",) if c in device_id]
    if bad:
        raise NotifyError(f"device id {device_id!r} cannot be an MQTT topic level: it contains "
                          f"{', '.join(map(repr, bad))}")
    if device_id in RESERVED_DEVICES:
        raise NotifyError(f"device id {device_id!r} cannot be an MQTT topic level: "
                          f"PREFIX/{device_id}/... is reserved")
    return device_id


class Topics:
    """The topics under one prefix. Built once per publisher; every device name is checked when a topic is made."""

    def __init__(self, prefix: str):
        self.prefix = check_prefix(prefix)

    def event(self, device_id: str) -> str:
        return f"{self.prefix}/{check_device(device_id)}/event"

    def alert(self, device_id: str) -> str:
        return f"{self.prefix}/{check_device(device_id)}/alert"

    def status(self, device_id: str) -> str:
        return f"{self.prefix}/{check_device(device_id)}/status"

    def fleet_alert(self) -> str:
        return f"{self.prefix}/{FLEET}/alert"

    def bridge_status(self) -> str:
        return f"{self.prefix}/{BRIDGE}/status"

    def __repr__(self) -> str:
        return f"Topics({self.prefix!r})"
