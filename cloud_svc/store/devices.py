"""The device registry: devices, their bearer tokens (only hashes are stored) and their watermarks."""
from __future__ import annotations

import hashlib
import secrets
import time
from typing import Optional, Sequence

import sqlalchemy as sa

from cloud_svc.domain import DeviceConfigView
from cloud_svc.errors import AlreadyExists, NotFound, Unauthenticated
from cloud_svc.schema import device_configs, devices
from cloud_svc.store.base import Database, chunks

TOKEN_BYTES = 32          # 256 random bits: a plain sha256 of the token is a safe thing to store
TOKEN_PREFIX = "ert_"
DEVICE_VERSION_BASE = 1 << 32  # per-device config versions start above this; cloud-wide ones stay below


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


class DeviceStore:
    """Registering, rotating and revoking devices; token checks; the watermark a device may trim its outbox to.

    Its updates of a device's row race the ingest's (acked_seq, heartbeats) from another replica, on Galera from
    another node; each is one statement, run again when it loses (Database.transact)."""

    def __init__(self, db: Database):
        self.db = db

    def add_device(self, device_id: str) -> str:
        """Register a device and return its new token (only the token's hash is stored)."""
        token = new_token()
        now = time.time_ns()
        with self.db.write() as conn:
            if conn.execute(sa.select(devices.c.id).where(devices.c.id == device_id)).first() is not None:
                raise AlreadyExists(f"device {device_id!r} exists; use `devices rotate {device_id}` for a new token")
            conn.execute(devices.insert().values(id=device_id, token_hash=hash_token(token), token_issued_ns=now,
                                                 created_ns=now, acked_seq=0))
        return token

    def add_devices(self, device_ids: Sequence[str]) -> dict[str, str]:
        """Bulk registration (fleet provisioning, benchmarks): id -> token."""
        now = time.time_ns()
        tokens = {d: new_token() for d in device_ids}
        with self.db.write() as conn:
            conn.execute(devices.insert(), [{"id": d, "token_hash": hash_token(t), "token_issued_ns": now,
                                             "created_ns": now, "acked_seq": 0} for d, t in tokens.items()])
        return tokens

    def rotate_token(self, device_id: str) -> str:
        """Issue a new token; the old one stops working at once. A revoked device is reinstated."""
        token = new_token()
        n = self.db.transact(lambda conn: conn.execute(devices.update().where(devices.c.id == device_id).values(
            token_hash=hash_token(token), token_issued_ns=time.time_ns(), revoked_ns=None)).rowcount)
        if not n:
            raise NotFound(f"no device {device_id!r}")
        return token

    def revoke_device(self, device_id: str) -> None:
        n = self.db.transact(lambda conn: conn.execute(devices.update().where(devices.c.id == device_id).values(
            revoked_ns=time.time_ns(), token_hash=None)).rowcount)
        if not n:
            raise NotFound(f"no device {device_id!r}")

    def authenticate(self, token: str) -> str:
        """The device a bearer token belongs to; Unauthenticated for unknown tokens and revoked devices."""
        if not token:
            raise Unauthenticated("missing bearer token")
        with self.db.read() as conn:
            row = conn.execute(sa.select(devices.c.id, devices.c.revoked_ns).where(
                devices.c.token_hash == hash_token(token))).first()
        if row is None:
            raise Unauthenticated("unknown or revoked token")
        if row.revoked_ns is not None:
            raise Unauthenticated(f"device {row.id!r} is revoked")
        return row.id

    def active_tokens(self, token_hashes: Sequence[str]) -> dict[str, str]:
        """token hash -> device, for those of the given hashes that still belong to a device that is not revoked."""
        out: dict[str, str] = {}
        with self.db.read() as conn:
            for part in chunks(sorted(token_hashes)):
                for h, d, revoked in self.db.bulk.select_in(conn, "devices", ("token_hash", "id", "revoked_ns"),
                                                            "token_hash", part):
                    if revoked is None:
                        out[h] = d
        return out

    def watermark(self, device_id: str) -> int:
        with self.db.read() as conn:
            v = conn.scalar(sa.select(devices.c.acked_seq).where(devices.c.id == device_id))
        if v is None:
            raise NotFound(f"no device {device_id!r}")
        return int(v)

    def hello(self, device_id: str, agent: str = "") -> int:
        """A device connected: its watermark (what it may trim); its agent string is noted when it changed."""
        with self.db.read() as conn:
            row = conn.execute(sa.select(devices.c.acked_seq, devices.c.agent).where(devices.c.id == device_id)).first()
        if row is None:
            raise NotFound(f"no device {device_id!r}")
        if agent and agent[:128] != row.agent:
            self.db.transact(lambda conn: conn.execute(devices.update().where(devices.c.id == device_id)
                                                       .values(agent=agent[:128])))
        return int(row.acked_seq)

    def set_config(self, device_id: str, thresholds: dict[str, float], set_by: str) -> DeviceConfigView:
        """Detector thresholds for one device, pushed to it (ConfigPush) when it next connects or heartbeats.
        Each change gets a new version, higher than any this device was given before."""
        now = time.time_ns()
        with self.db.write() as conn:
            if conn.scalar(sa.select(devices.c.id).where(devices.c.id == device_id)) is None:
                raise NotFound(f"no device {device_id!r}")
            old = conn.scalar(sa.select(device_configs.c.version).where(device_configs.c.device_id == device_id)
                              .with_for_update())
            # versions above the cloud-wide ones (which are < 2**31): a device never mistakes one for the other
            version = max(int(old or 0) + 1, DEVICE_VERSION_BASE + 1)
            row = {"thresholds": dict(thresholds), "version": version, "set_by": set_by[:128], "set_ns": now}
            if old is None:
                conn.execute(device_configs.insert().values(device_id=device_id, **row))
            else:
                conn.execute(device_configs.update().where(device_configs.c.device_id == device_id).values(**row))
        return DeviceConfigView(device_id, dict(thresholds), version, set_by[:128], now)

    def config_for(self, device_id: str) -> Optional[DeviceConfigView]:
        with self.db.read() as conn:
            r = conn.execute(sa.select(device_configs).where(device_configs.c.device_id == device_id)).first()
        if r is None:
            return None
        return DeviceConfigView(r.device_id, {str(k): float(v) for k, v in dict(r.thresholds).items()},
                                int(r.version), r.set_by, int(r.set_ns))

    def configs(self) -> dict[str, DeviceConfigView]:
        """Every device's own pushed thresholds, by device id."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(device_configs)).all()
        return {r.device_id: DeviceConfigView(r.device_id, {str(k): float(v) for k, v in dict(r.thresholds).items()},
                                              int(r.version), r.set_by, int(r.set_ns)) for r in rows}
