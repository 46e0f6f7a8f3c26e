"""The notification settings both processes embed as `notify`: the MQTT broker and topics, Home Assistant
discovery, and the webhook."""
from __future__ import annotations

from typing import Optional

from pydantic import Field, field_validator, model_validator

from edgert import labels
from edgert.settings import Strict, Verbatim

# Characters MQTT gives a meaning to in a topic filter, and the one it forbids outright.
TOPIC_FORBIDDEN = ("+", "#", "\x00")


def _clean_topic_root(value: str, what: str) -> str:
    if not value or any(c in value for c in TOPIC_FORBIDDEN) or "" in value.split("/"):
        raise ValueError(f"{what} {value!r} must be non-empty topic levels without '+', '#', NUL or '//'")
    return value


class DiscoveryConfig(Strict):
    enabled: bool = Field(True, description="publish Home Assistant discovery configs for each device")
    prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix")
    labels: list[str] = Field(default_factory=labels.distress_labels, description=(
        "one binary_sensor per label, on for on_s after an event of that label starts"))
    on_s: float = Field(30.0, ge=1.0, le=86400.0, description=(
        "a label's binary_sensor stays on this long after an event starts (Home Assistant's off_delay)"))

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return _clean_topic_root(v, "discovery prefix")

    @field_validator("labels")
    @classmethod
    def _known_labels(cls, v: list[str]) -> list[str]:
        known = set(labels.scoring(calibrated=False).labels)
        unknown = sorted(set(v) - known)
        if unknown:
            raise ValueError(f"discovery labels the taxonomy does not have: {unknown}; known: {sorted(known)}")
        if len(set(v)) != len(v):
            raise ValueError(f"discovery labels repeat a label: {v}")
        return v


class MqttConfig(Strict):
    broker: Optional[str] = Field(None, description=(
        "mqtt://[user[:password]@]host[:port] or mqtts://...; unset: no MQTT"))
    prefix: str = Field("edgert", description="topic root: PREFIX/DEVICE/event and so on")
    username: Verbatim = Field(None, description="overrides the broker URL's user (an env variable is taken as "
                                                 "typed; quote a number in YAML)")
    password: Verbatim = Field(None, description="overrides the broker URL's password (an env variable is taken "
                                                 "as typed; quote a number in YAML)")
    client_id: Optional[str] = Field(None, max_length=128, description=(
        "MQTT client id; unset: derived from the process (edgert-bridge-PREFIX-RANDOM, edgert-DEVICE); bridges "
        "on one database need their own"))
    tls_ca: Optional[str] = Field(None, description="PEM CA bundle that signed the broker's certificate (enables TLS)")
    tls_cert: Optional[str] = Field(None, description="PEM client certificate")
    tls_key: Optional[str] = Field(None, description="PEM client key")
    tls_insecure: bool = Field(False, description="do not check the broker's host name against its certificate")
    keepalive_s: float = Field(30.0, ge=5.0, le=3600.0, description="MQTT keepalive")
    publish_timeout_s: float = Field(10.0, gt=0.0, le=600.0, description=(
        "a publish not acknowledged (PUBACK) within this is retried"))
    retry_initial_s: float = Field(0.5, gt=0.0, le=60.0, description="first reconnect wait")
    retry_max_s: float = Field(10.0, gt=0.0, le=600.0, description="longest reconnect wait")
    status_s: float = Field(30.0, ge=1.0, le=86400.0, description="device status is republished this often, "
                                                                   "and on every change")
    link_base: Optional[str] = Field(None, description=(
        "base URL of the dashboard; an event's clip.url is LINK_BASE/event/PK"))
    discovery: DiscoveryConfig = DiscoveryConfig()

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return _clean_topic_root(v, "MQTT prefix")

    @field_validator("link_base")
    @classmethod
    def _link_base(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"link_base must be an http(s) URL, got {v!r}")
        return v.rstrip("/") if v else v

    @model_validator(mode="after")
    def _consistent(self):
        if self.retry_initial_s > self.retry_max_s:
            raise ValueError("mqtt.retry_initial_s must not exceed mqtt.retry_max_s")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("mqtt.tls_cert and mqtt.tls_key go together")
        return self


class WebhookConfig(Strict):
    url: Optional[str] = Field(None, description="alerts are POSTed here as JSON; unset: no webhook")
    secret: Verbatim = Field(None, description="HMAC-SHA256 key of the signature header; unset: unsigned (an env "
                                               "variable is taken as typed; quote a number in YAML)")
    timeout_s: float = Field(5.0, gt=0.0, le=300.0, description="one POST's timeout")
    retry_initial_s: float = Field(0.5, gt=0.0, le=60.0, description="first retry wait")
    retry_max_s: float = Field(30.0, gt=0.0, le=3600.0, description="longest retry wait")

    @field_validator("url")
    @classmethod
    def _http(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http:// or https://, got {v!r}")
        return v

    @model_validator(mode="after")
    def _retry_order(self):
        if self.retry_initial_s > self.retry_max_s:
            raise ValueError("webhook.retry_initial_s must not exceed webhook.retry_max_s")
        return self


class NotifyConfig(Strict):
    mqtt: MqttConfig = MqttConfig()
    webhook: WebhookConfig = WebhookConfig()
