"""The notify settings: defaults, bounds and the checks that keep a bad topic root or label out."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgert import labels
from edgert.notify.config import DiscoveryConfig, MqttConfig, NotifyConfig, WebhookConfig


def test_defaults_are_off_and_discovery_covers_the_distress_labels():
    cfg = NotifyConfig()
    assert cfg.mqtt.broker is None and cfg.webhook.url is None
    assert cfg.mqtt.prefix == "edgert" and cfg.mqtt.discovery.prefix == "homeassistant"
    assert cfg.mqtt.discovery.labels == labels.distress_labels()
    assert cfg.mqtt.discovery.on_s == 30.0


@pytest.mark.parametrize("prefix", ["", "a/+", "a/#", "/edgert", "edgert/", "a//b", "a\x00b"])
def test_a_prefix_that_is_not_a_plain_topic_root_is_refused(prefix):
    with pytest.raises(ValidationError, match="prefix"):
        MqttConfig(prefix=prefix)
    with pytest.raises(ValidationError, match="prefix"):
        DiscoveryConfig(prefix=prefix)


def test_a_nested_prefix_is_accepted():
    assert MqttConfig(prefix="site/a").prefix == "site/a"


def test_discovery_labels_must_be_taxonomy_labels_once_each():
    assert DiscoveryConfig(labels=["siren", "dog_bark"]).labels == ["siren", "dog_bark"]
    with pytest.raises(ValidationError, match="taxonomy does not have.*'meow'"):
        DiscoveryConfig(labels=["siren", "meow"])
    with pytest.raises(ValidationError, match="repeat"):
        DiscoveryConfig(labels=["siren", "siren"])


@pytest.mark.parametrize("on_s", [0.5, 86401])
def test_on_time_out_of_range_is_refused(on_s):
    with pytest.raises(ValidationError, match="on_s"):
        DiscoveryConfig(on_s=on_s)


def test_unknown_keys_are_refused():
    with pytest.raises(ValidationError, match="brokr"):
        MqttConfig.model_validate({"brokr": "mqtt://x"})


def test_tls_cert_needs_its_key_and_retry_bounds_are_ordered():
    with pytest.raises(ValidationError, match="tls_cert and mqtt.tls_key"):
        MqttConfig(tls_cert="c.pem")
    with pytest.raises(ValidationError, match="retry_initial_s"):
        MqttConfig(retry_initial_s=5, retry_max_s=1)
    with pytest.raises(ValidationError, match="retry_initial_s"):
        WebhookConfig(retry_initial_s=5, retry_max_s=1)


def test_urls_must_be_http_and_link_base_loses_its_trailing_slash():
    with pytest.raises(ValidationError, match="http"):
        WebhookConfig(url="ftp://x")
    with pytest.raises(ValidationError, match="link_base"):
        MqttConfig(link_base="dashboard:8050")
    assert MqttConfig(link_base="http://d:8050/").link_base == "http://d:8050"


@pytest.mark.parametrize("typed", ["123456", "0123", "1e3", "0x1F", "true", "~", "null", "'quoted'", "a: b"])
def test_credentials_from_env_variables_are_taken_exactly_as_typed(typed):
    """A password that looks like a YAML number (or null, or a mapping) is the text the user typed, on both sides;
    other fields still read their variables as YAML."""
    from cloud_svc import config as cloud_config
    from edge_rt import config as edge_config

    cloud = cloud_config.load(None, env={"CLOUD_SVC__NOTIFY__MQTT__PASSWORD": typed,
                                         "CLOUD_SVC__NOTIFY__MQTT__USERNAME": typed,
                                         "CLOUD_SVC__NOTIFY__WEBHOOK__SECRET": typed,
                                         "CLOUD_SVC__NOTIFY__MQTT__STATUS_S": "60"})
    assert (cloud.notify.mqtt.password, cloud.notify.mqtt.username, cloud.notify.webhook.secret) == (typed,) * 3
    assert cloud.notify.mqtt.status_s == 60.0
    edge = edge_config.load(None, env={"EDGE_RT__NOTIFY__MQTT__PASSWORD": typed,
                                       "EDGE_RT__NOTIFY__WEBHOOK__SECRET": typed})
    assert (edge.notify.mqtt.password, edge.notify.webhook.secret) == (typed,) * 2


def test_a_number_for_a_credential_in_a_yaml_file_is_refused_with_how_to_quote_it(tmp_path):
    """YAML has already turned an unquoted 0123 into 83 by the time the model sees it: guessing back is wrong, so
    the message says to quote it, without showing the value."""
    from cloud_svc import config as cloud_config
    from cloud_svc.errors import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("notify:\n  mqtt:\n    password: 987654\n")
    with pytest.raises(ConfigError, match=r"notify.mqtt.password: Value error, must be text.*quote it") as err:
        cloud_config.load(bad)
    assert "987654" not in str(err.value)
    good = tmp_path / "good.yaml"
    good.write_text("notify:\n  mqtt:\n    password: '0123'\n  webhook:\n    secret: \"1e3\"\n")
    cfg = cloud_config.load(good)
    assert (cfg.notify.mqtt.password, cfg.notify.webhook.secret) == ("0123", "1e3")
