"""The edge process's one pydantic config: shipped YAML defaults, a user YAML file, env and CLI overrides."""
from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from pydantic import Field, field_validator, model_validator

from edge_rt.errors import ConfigError
from edgert import labels
from edgert.backoff import Backoff
from edgert.errors import SettingsError
from edgert.labels import RuleConfig, ScoringConfig
from edgert.notify.config import NotifyConfig
from edgert.settings import Strict, load_layers, merge, parse_yaml
from edgert.yamnet import backends

ENV_PREFIX = "EDGE_RT__"
_HOST = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?|\[[0-9A-Za-z:.%]+\])$")  # name, IPv4, [IPv6]


def parse_addresses(value: Any) -> tuple[str, ...]:
    """The cloud's addresses from `value`: one HOST:PORT, several comma-separated in one string, or a list of them
    (an IPv6 host in brackets). ValueError naming the bad one: no port, a port outside 1-65535, an empty or
    doubled entry, a host that is not a name or an address."""
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise ValueError(f"must be HOST:PORT, several of them comma-separated, or a list of them; got {value!r}")
    out: list[str] = []
    for raw in items:
        item = raw.strip()
        if not item:
            raise ValueError(f"an empty address in {value!r}; give HOST:PORT[,HOST:PORT...]")
        host, sep, port = item.rpartition(":")
        if not sep or not host:
            raise ValueError(f"cloud address {item!r} is not HOST:PORT (no {'host' if sep else 'port'})")
        if not _HOST.match(host):
            if ":" in host and "/" not in host and not host.startswith("["):
                raise ValueError(f"cloud address {item!r}: an IPv6 host goes in brackets, e.g. [::1]:50051")
            raise ValueError(f"cloud address {item!r}: host {host!r} is not a host name or address")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"cloud address {item!r}: port {port!r} is not a number in 1-65535")
        if item in out:
            raise ValueError(f"cloud address {item!r} is listed twice")
        out.append(item)
    if not out:
        raise ValueError("needs at least one HOST:PORT")
    return tuple(out)


class DetectorConfig(ScoringConfig):
    """The detector: the shared label scoring (labels, head weight, veto) and its own mechanics."""

    loudness_gate_dbfs: float = Field(-55.0, ge=-140.0, le=0.0, description="windows quieter than this are ignored")
    start_window: int = Field(3, ge=1, le=20, description="windows over which min_hits are counted")
    quiet_s: float = Field(1.0, ge=0.0, le=60.0, description="silence that ends an event")
    max_event_s: float = Field(60.0, gt=1.0, le=3600.0, description="longest single event")
    top_k: int = Field(5, ge=1, le=20, description="top classes reported per event and frame")


class ClipConfig(Strict):
    enabled: bool = True
    preroll_s: float = Field(1.0, ge=0.0, le=10.0)
    max_s: float = Field(10.0, gt=0.0, le=120.0)
    privacy_drop_speech: bool = False
    speech_threshold: float = Field(0.5, gt=0.0, le=1.0)


class OutboxConfig(Strict):
    path: str = Field("spool/outbox.db", description="SQLite file of the durable outbox")
    max_bytes: int = Field(64 << 20, ge=1 << 16, description="size bound; oldest dropped beyond it")
    max_age_s: float = Field(7 * 86400, gt=0, description="age bound; older records are dropped")


class CloudConfig(Strict):
    """The uplink to cloud_svc: where, as whom, how securely, and how it batches, paces and retries."""

    address: Optional[tuple[str, ...]] = Field(
        None, description="HOST:PORT of cloud_svc, or several replicas (a list, or comma-separated in one string) that "
                          "the uplink fails over between; unset: no uplink, the outbox only fills")
    token: Optional[str] = Field(None, min_length=1, description="the device token (`python -m cloud_svc devices "
                                                                 "add ID`); keep it off command lines: "
                                                                 "EDGE_RT__CLOUD__TOKEN")
    tls: bool = Field(False, description="TLS with the system's roots (implied by tls_ca)")
    tls_ca: Optional[str] = Field(None, description="PEM CA of the server's certificate")
    tls_cert: Optional[str] = Field(None, description="PEM client certificate (mTLS)")
    tls_key: Optional[str] = Field(None, description="PEM client key (mTLS)")
    heartbeat_s: float = Field(30.0, gt=0.0, le=3600.0, description="heartbeat to the cloud (and to the log)")
    batch_records: int = Field(100, ge=1, le=10000, description="records per RecordBatch")
    max_inflight_records: int = Field(2000, ge=1, description="sent but not yet acked")
    ack_timeout_s: float = Field(10.0, gt=0.0, description="an ack later than this ends the session "
                                                           "(DEADLINE_EXCEEDED), which is retried")
    connect_timeout_s: float = Field(5.0, gt=0.0)
    stream_max_s: float = Field(3600.0, gt=0.0, description="deadline of one stream; then reconnect (spreads "
                                                            "devices over replicas)")
    backoff_initial_s: float = Field(0.5, gt=0.0)
    backoff_max_s: float = Field(10.0, gt=0.0)
    backoff_multiplier: float = Field(2.0, ge=1.0)
    keepalive_s: float = Field(20.0, gt=0.0, description="HTTP/2 pings on an idle connection ...")
    keepalive_timeout_s: float = Field(10.0, gt=0.0, description="... and how long to wait for their answer")
    max_message_bytes: int = Field(4 << 20, ge=64 << 10, le=64 << 20)
    inline_clip_bytes: int = Field(256 << 10, ge=0, description="larger clips are uploaded in chunks first")
    chunk_bytes: int = Field(256 << 10, ge=1 << 10)
    poll_s: float = Field(0.01, gt=0.0, le=5.0, description="how often an idle session looks for new records")
    stop_flush_s: float = Field(2.0, ge=0.0, description="on stop, wait this long for acks of what is in flight")

    @field_validator("address", mode="before")
    @classmethod
    def _addresses(cls, value: Any) -> Optional[tuple[str, ...]]:
        return None if value is None else parse_addresses(value)

    @property
    def backoff(self) -> Backoff:
        """Reconnect waits: full jitter, uniform in [0, min(max, initial * multiplier**attempt)]."""
        return Backoff(self.backoff_initial_s, self.backoff_max_s, self.backoff_multiplier, jitter=1.0)

    @model_validator(mode="after")
    def _consistent(self):
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("cloud.backoff_max_s must be at least cloud.backoff_initial_s")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("cloud.tls_cert and cloud.tls_key go together")
        if not self.chunk_bytes < self.max_message_bytes or self.inline_clip_bytes >= self.max_message_bytes:
            raise ValueError("cloud.chunk_bytes and cloud.inline_clip_bytes must stay below max_message_bytes")
        for path in (self.tls_ca, self.tls_cert, self.tls_key):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"TLS file {path} does not exist")
        return self


class RuntimeConfig(Strict):
    ring_seconds: float = Field(30.0, ge=2.0, le=600.0)
    max_batch: int = Field(8, ge=1, le=256, description="windows per inference call when the loop is behind")
    commit_s: float = Field(0.05, ge=0.0, le=1.0, description="while the loop is behind, the records of consecutive "
                            "batches are written in one transaction until the oldest has waited this long; "
                            "caught up, each batch's records are written at once")
    grace_s: float = Field(10.0, ge=0.0, le=3600.0)
    metrics_port: Optional[int] = Field(None, ge=0, le=65535)
    model_dir: Optional[str] = Field(None, description="model artifacts; unset: <repo>/models")


class EdgeConfig(Strict):
    device_id: str = Field("edge-dev", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    lat: Optional[float] = Field(None, ge=-90.0, le=90.0)
    lon: Optional[float] = Field(None, ge=-180.0, le=180.0)
    backend: str = Field("auto", description="auto, or a runtime (onnxruntime, tflite, tensorrt), optionally with its "
                                             "precision (tflite-fp16); checked against the backend registry")
    precision: Optional[str] = Field(None, description="the backend's precision (fp32, fp16, int8); unset: the "
                                                      "backend name's own, else the runtime's default")
    threads: int = Field(1, ge=1, le=64)
    detector: DetectorConfig
    rules: list[RuleConfig] = Field(default_factory=list)
    clips: ClipConfig = ClipConfig()
    outbox: OutboxConfig = OutboxConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    cloud: CloudConfig = CloudConfig()
    notify: NotifyConfig = Field(NotifyConfig(), description="MQTT (events, alerts, status, Home Assistant discovery) "
                                                            "and the alert webhook, straight from the device")

    @model_validator(mode="after")
    def _backend_is_registered(self):
        if self.backend == "auto":
            if self.precision is not None:
                raise ValueError("precision needs a named backend (auto picks the runtime and its precision)")
            return self
        try:
            backends.parse(self.backend, self.precision)
        except SettingsError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _rules_name_known_labels(self):
        known = set(self.detector.labels)
        for rule in self.rules:
            unknown = set(rule.labels) - known
            if unknown:
                raise ValueError(f"rule {rule.name!r} names unknown labels {sorted(unknown)}; known: {sorted(known)}")
            if rule.count > len(set(rule.labels)):
                raise ValueError(f"rule {rule.name!r} needs {rule.count} distinct labels but lists {len(rule.labels)}")
        return self


def _shipped(name: str) -> dict:
    return parse_yaml(resources.files("edge_rt.config").joinpath(name).read_text()) or {}


def calibration() -> dict:
    """The shipped calibration (`python -m edge_rt calibrate`): {"calibration": provenance, "detector": {...}}."""
    return labels.calibration()


def defaults(calibrated: bool = True) -> dict:
    """The shipped defaults: the core's label taxonomy (AudioSet groups, hand-set operating points, rules; unless
    `calibrated` is False, with the calibrated operating points laid over it) and defaults.yaml on top."""
    taxonomy = labels.shipped(calibrated)
    base = {"detector": {k: taxonomy[k] for k in ("head_weight", "head_veto_min", "labels") if k in taxonomy},
            "rules": taxonomy.get("rules", [])}
    return merge(base, _shipped("defaults.yaml"))


def load(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None,
         env: dict[str, str] | None = None, calibrated: bool = True) -> EdgeConfig:
    """Defaults <- YAML file <- EDGE_RT__A__B env vars <- overrides {"a.b": value}; clear error on any bad key."""
    return load_layers(EdgeConfig, what="edge config", error=ConfigError, env_prefix=ENV_PREFIX,
                       base=defaults(calibrated), path=path, overrides=overrides, env=env)
