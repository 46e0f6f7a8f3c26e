"""The cloud's outbound notifications: a bridge that follows the stored events, alerts and device states and
publishes them to MQTT (with Home Assistant discovery) and POSTs alerts to a webhook, in the shared payloads of
edgert.notify. `python -m cloud_svc mqtt` runs it on its own, `serve --mqtt` inside the server."""
from __future__ import annotations

from typing import TYPE_CHECKING

from cloud_svc.notify.bridge import Bridge
from cloud_svc.notify.transports import MqttTransport, Transport, WebhookTransport

if TYPE_CHECKING:
    from cloud_svc.config import CloudConfig
    from cloud_svc.store import Store

__all__ = ["Bridge", "MqttTransport", "Transport", "WebhookTransport", "build_bridge", "wanted"]

SW_VERSION = "cloud_svc"


def wanted(cfg: "CloudConfig") -> bool:
    """Whether the config asks for any notification at all."""
    return bool(cfg.notify.mqtt.broker or cfg.notify.webhook.url)


def build_bridge(cfg: "CloudConfig", store: "Store") -> Bridge:
    """The bridge the config asks for, over `store`: an MQTT transport when notify.mqtt.broker is set, a webhook
    transport when notify.webhook.url is, each relaying while it holds its lease (cfg.bridge). Bad settings raise
    NotifyError here."""
    from edgert import labels

    transports: list[Transport] = []
    if cfg.notify.mqtt.broker:
        transports.append(MqttTransport(cfg.notify.mqtt, all_labels=list(labels.scoring(calibrated=False).labels),
                                        sw_version=SW_VERSION))
    if cfg.notify.webhook.url:
        transports.append(WebhookTransport(cfg.notify.webhook))
    return Bridge(store.outbound, transports, stale_after_s=cfg.ingest.stale_after_s,
                  link_base=cfg.notify.mqtt.link_base, poll_s=cfg.bridge.poll_s, lease_s=cfg.bridge.lease_s)
