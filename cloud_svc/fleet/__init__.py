"""Fleet correlation: the in-memory grid index (algorithm) and the correlator's storage beside it (store)."""
from cloud_svc.fleet.algorithm import FleetIndex, Placed, haversine_m
from cloud_svc.fleet.store import FleetStore

__all__ = ["FleetIndex", "FleetStore", "Placed", "haversine_m"]
