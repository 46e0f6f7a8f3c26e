"""The cloud process's one pydantic config: defaults in the model, a YAML file, CLOUD_SVC__ env and CLI overrides."""
from __future__ import annotations

import ipaddress
import json
import os
import zlib
from typing import Any, Optional

from pydantic import Field, model_validator

from cloud_svc.errors import ConfigError
from edgert import labels
from edgert.notify.config import NotifyConfig
from edgert.settings import Strict, load_layers

ENV_PREFIX = "CLOUD_SVC__"


def loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class IngestConfig(Strict):
    max_message_bytes: int = Field(4 << 20, ge=64 << 10, le=64 << 20,
                                   description="largest gRPC message accepted or sent; bigger clips are chunked")
    max_batch_records: int = Field(1000, ge=1, le=10000, description="records per RecordBatch")
    max_inline_clip_bytes: int = Field(1 << 20, ge=0, le=64 << 20, description="largest clip sent inline")
    max_clip_bytes: int = Field(64 << 20, ge=1 << 10, le=1 << 30, description="largest clip accepted")
    max_uploads_per_stream: int = Field(8, ge=1, le=256, description="clip uploads in progress on one stream")
    commit_max_records: int = Field(5000, ge=1, le=100000, description="records in one group commit")
    commit_linger_ms: float = Field(0.0, ge=0.0, le=5000.0,
                                    description="wait this long for more batches before a commit")
    committers: int = Field(2, ge=1, le=32,
                            description="commit threads on MySQL (devices are spread over them); SQLite uses 1")
    commit_retries: int = Field(3, ge=0, le=20, description="retries of a group commit on a transient DB error")
    auth_cache_s: float = Field(5.0, ge=0.0, le=3600.0,
                                description="token lookups are cached this long; revocation takes effect after it")
    drain_timeout_s: float = Field(10.0, ge=0.0, le=600.0, description="shutdown waits this long for commits")
    stale_after_s: float = Field(120.0, gt=0.0, description="a device without a heartbeat this long is stale")
    health_sample_s: float = Field(60.0, ge=0.0, le=86400.0,
                                   description="a device's health history keeps one heartbeat per this many seconds")
    keepalive_s: float = Field(60.0, gt=0.0, le=7200.0, description="the server pings idle connections this often ...")
    keepalive_timeout_s: float = Field(20.0, gt=0.0, le=600.0,
                                       description="... and drops those that do not answer within this")
    min_client_ping_s: float = Field(5.0, gt=0.0, le=600.0,
                                     description="devices may ping an idle connection this often, or less")


class VerifyConfig(Strict):
    distress_labels: list[str] = Field(default_factory=labels.distress_labels,
                                       description="events with these labels are always verified")
    sample_rate: float = Field(0.05, ge=0.0, le=1.0, description="share of the other events verified")
    verifier: str = Field("yamnet", description="yamnet | vggish: what `verify` workers run by default")
    workers: int = Field(0, ge=0, le=64, description="verification threads inside `serve` (0: separate processes)")
    batch: int = Field(4, ge=1, le=256, description="jobs one worker claims at a time")
    lease_s: float = Field(300.0, gt=0.0, description="a claimed job not finished within this is claimed again")
    poll_s: float = Field(0.5, gt=0.0, le=60.0, description="idle workers look for jobs this often")
    max_attempts: int = Field(3, ge=1, le=20, description="a job failing this often is marked failed")


class FleetConfig(Strict):
    enabled: bool = True
    process: bool = Field(False, description="run the correlator in a child process of `serve` (its own GIL, so "
                                             "its work never delays acks); Subscribe sees its alerts within 1 s")
    radius_m: float = Field(500.0, gt=0.0, le=1e6, description="devices this close hear the same thing")
    window_s: float = Field(10.0, gt=0.0, le=3600.0, description="... within this many seconds")
    min_devices: int = Field(2, ge=2, le=1000, description="distinct devices that make a fleet alert")
    poll_s: float = Field(0.5, gt=0.0, le=60.0, description="the correlator looks for new events this often")
    batch: int = Field(5000, ge=1, le=100000, description="events read per correlator step")
    settle_s: float = Field(1.0, ge=0.0, le=60.0,
                            description="events are correlated once they are this old (commits may finish late)")
    horizon_s: float = Field(120.0, gt=0.0, le=86400.0,
                             description="recent events kept in memory; older late arrivals are matched in the DB")

    @model_validator(mode="after")
    def _horizon(self):
        if self.horizon_s < 2 * self.window_s:
            raise ValueError("fleet.horizon_s must be at least twice fleet.window_s")
        return self


class RollupConfig(Strict):
    """The follower that keeps the events' rollup (cloud_svc.store.rollup), one per database at a time."""
    enabled: bool = Field(True, description="run the rollup follower in `serve` (the dashboard's aggregates read "
                                            "what it has rolled up, and the events past it)")
    poll_s: float = Field(1.0, gt=0.0, le=60.0, description="it looks for new events and reviews this often")
    batch: int = Field(20000, ge=1, le=1_000_000, description="events (and reviews) rolled up per step at most")
    settle_s: float = Field(1.0, ge=0.0, le=60.0,
                            description="events are rolled up once they are this old (commits may finish late)")


class BridgeConfig(Strict):
    """How the notification bridges over one database share the work (notify says what they publish)."""
    lease_s: float = Field(10.0, ge=1.0, le=600.0, description=(
        "one bridge per transport and prefix relays at a time, under a lease it renews as it polls; when it dies "
        "or stalls, another takes over this long after its last renewal (a clean stop hands over at once)"))
    poll_s: float = Field(0.5, gt=0.0, le=60.0, description=(
        "a bridge looks for new rows, and one standing by at the lease, this often"))

    @model_validator(mode="after")
    def _polls_per_lease(self):
        if self.poll_s * 3 > self.lease_s:
            raise ValueError("bridge.lease_s must last at least three bridge.poll_s")
        return self


class TlsConfig(Strict):
    cert: Optional[str] = Field(None, description="PEM certificate chain of the server")
    key: Optional[str] = Field(None, description="PEM private key of the server")
    client_ca: Optional[str] = Field(None, description="PEM CA bundle; when set, clients must present a cert (mTLS)")

    @model_validator(mode="after")
    def _pairs(self):
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls.cert and tls.key go together")
        if self.client_ca and not self.cert:
            raise ValueError("tls.client_ca (mTLS) needs tls.cert and tls.key")
        return self


class CloudConfig(Strict):
    db: str = Field("sqlite:///cloud.db", min_length=1, description="SQLAlchemy URL (sqlite:/// or mysql+pymysql://)")
    listen: str = Field("127.0.0.1:50051", pattern=r"^.+:\d{1,5}$", description="HOST:PORT; port 0 picks one")
    clips: Optional[str] = Field(None, description="clip store: a folder (default: clips/ beside a SQLite file, "
                                                   "else ./clips) or s3://bucket/prefix")
    open_query: bool = Field(False, description=(
        "let Query calls in without a user's token; only with a loopback `listen` (a test or demo server). "
        "Otherwise Query needs a user (`users add NAME --role reader|admin`) and `serve` refuses to start "
        "without one"))
    edge_thresholds: dict[str, float] = Field(default_factory=dict, description=(
        "label -> threshold pushed to devices on connect; they apply it without a restart and keep it"))
    edge_config_version: Optional[int] = Field(None, ge=1, description=(
        "the version of edge_thresholds that devices report back in their heartbeat; unset: derived from the "
        "thresholds, so any change is a new version"))
    ingest: IngestConfig = IngestConfig()
    verify: VerifyConfig = VerifyConfig()
    fleet: FleetConfig = FleetConfig()
    rollup: RollupConfig = RollupConfig()
    tls: TlsConfig = TlsConfig()
    notify: NotifyConfig = Field(NotifyConfig(), description=(
        "MQTT (with Home Assistant discovery) and webhook notifications of the bridge (`mqtt`, `serve --mqtt`)"))
    bridge: BridgeConfig = BridgeConfig()

    @model_validator(mode="after")
    def _open_query_on_loopback_only(self):
        if self.open_query and not loopback(self.listen.rsplit(":", 1)[0]):
            raise ValueError(f"open_query needs a loopback listen address (127.0.0.1, ::1, localhost), not "
                             f"{self.listen!r}: anyone who reaches the port could read every event; create a "
                             "Query user instead (`python -m cloud_svc users add NAME --role reader`)")
        return self

    @model_validator(mode="after")
    def _thresholds_in_range(self):
        bad = {k: v for k, v in self.edge_thresholds.items() if not 0.0 < v <= 1.0}
        if bad:
            raise ValueError(f"edge_thresholds must be in (0, 1]: {bad}")
        known = set(labels.scoring(calibrated=False).labels)
        unknown = sorted(set(self.edge_thresholds) - known)
        if unknown:
            raise ValueError(f"edge_thresholds names labels the taxonomy does not have: {unknown}; "
                             f"known: {sorted(known)}")
        return self

    @property
    def pushed_version(self) -> int:
        """The version pushed with edge_thresholds: the configured one, else a number derived from the thresholds
        (never 0, which means "nothing pushed"); 0 when there are no thresholds to push."""
        if not self.edge_thresholds:
            return 0
        if self.edge_config_version is not None:
            return self.edge_config_version
        canonical = json.dumps(self.edge_thresholds, sort_keys=True).encode()
        return zlib.crc32(canonical) or 1


def load(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None,
         env: dict[str, str] | None = None) -> CloudConfig:
    """Model defaults <- YAML file <- CLOUD_SVC__A__B env vars <- overrides {"a.b": value}."""
    return load_layers(CloudConfig, what="cloud config", error=ConfigError, env_prefix=ENV_PREFIX, path=path,
                       overrides=overrides, env=env)
