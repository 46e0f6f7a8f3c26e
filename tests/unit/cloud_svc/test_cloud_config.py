"""Cloud config: pydantic with extra="forbid", bounds, YAML file, CLOUD_SVC__ env and overrides."""
from __future__ import annotations

import pytest

from cloud_svc import config
from cloud_svc.errors import ConfigError


def test_defaults_are_valid_and_distress_labels_match_the_edge_rule():
    from edge_rt.config import defaults

    cfg = config.load(None, env={})
    rule = next(r for r in defaults()["rules"] if r["name"] == "distress")
    assert sorted(cfg.verify.distress_labels) == sorted(rule["labels"])
    assert cfg.ingest.max_message_bytes == 4 << 20


def test_an_unknown_key_is_an_error_naming_it(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("ingest:\n  max_mesage_bytes: 10\n")
    with pytest.raises(ConfigError, match="ingest.max_mesage_bytes"):
        config.load(f, env={})


def test_a_value_out_of_range_is_an_error():
    with pytest.raises(ConfigError, match="verify.sample_rate"):
        config.load(None, {"verify.sample_rate": 1.5}, env={})
    with pytest.raises(ConfigError, match="edge_thresholds"):
        config.load(None, {"edge_thresholds": {"glass_break": 0}}, env={})
    with pytest.raises(ConfigError, match="horizon_s"):
        config.load(None, {"fleet.window_s": 100, "fleet.horizon_s": 120}, env={})


def test_tls_key_and_cert_go_together():
    with pytest.raises(ConfigError, match="tls"):
        config.load(None, {"tls.cert": "a.pem"}, env={})


def test_yaml_then_env_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("fleet:\n  radius_m: 100\n  window_s: 5\nverify:\n  sample_rate: 0.2\n")
    cfg = config.load(f, {"fleet.window_s": 7}, env={"CLOUD_SVC__VERIFY__SAMPLE_RATE": "0.3",
                                                     "CLOUD_SVC__FLEET__WINDOW_S": "6"})
    assert (cfg.fleet.radius_m, cfg.fleet.window_s, cfg.verify.sample_rate) == (100, 7, 0.3)


def test_pushed_thresholds_carry_a_version_given_or_derived_and_name_only_taxonomy_labels():
    assert config.load(None, {}, env={}).pushed_version == 0  # nothing to push
    given = config.load(None, {"edge_thresholds": {"scream": 0.5}, "edge_config_version": 12}, env={})
    assert given.pushed_version == 12
    a = config.load(None, {"edge_thresholds": {"scream": 0.5}}, env={}).pushed_version
    b = config.load(None, {"edge_thresholds": {"scream": 0.6}}, env={}).pushed_version
    assert a and b and a != b and a == config.load(None, {"edge_thresholds": {"scream": 0.5}}, env={}).pushed_version
    with pytest.raises(ConfigError, match=r"labels the taxonomy does not have: \['screm'\]"):
        config.load(None, {"edge_thresholds": {"screm": 0.5}}, env={})


def test_the_servers_keepalives_come_from_its_config():
    from cloud_svc.server import server_options

    cfg = config.load(None, {"ingest.keepalive_s": 30, "ingest.keepalive_timeout_s": 5, "ingest.min_client_ping_s": 2},
                      env={})
    opts = dict(server_options(cfg.ingest))
    assert (opts["grpc.keepalive_time_ms"], opts["grpc.keepalive_timeout_ms"]) == (30_000, 5_000)
    assert opts["grpc.http2.min_ping_interval_without_data_ms"] == 2_000
    with pytest.raises(ConfigError, match="keepalive_timeout_s"):
        config.load(None, {"ingest.keepalive_timeout_s": 0}, env={})
