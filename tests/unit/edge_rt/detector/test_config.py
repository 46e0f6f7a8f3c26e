"""The edge config: shipped defaults, YAML, env and CLI overrides, and clear errors."""
from __future__ import annotations

import pytest

from edge_rt import config
from edge_rt.errors import ConfigError


def test_shipped_defaults_have_the_designed_labels_and_distress_rule():
    cfg = config.load()
    assert set(cfg.detector.labels) == {"glass_break", "scream", "shout", "gunshot", "explosion", "siren", "alarm",
                                        "baby_cry", "dog_bark", "car_horn", "speech"}
    rule = {r.name: r for r in cfg.rules}["distress"]
    assert set(rule.labels) == {"glass_break", "scream", "shout", "gunshot"}
    assert rule.count == 2 and rule.window_s == 10.0


def test_yaml_file_overrides_defaults(tmp_path):
    f = tmp_path / "edge.yaml"
    f.write_text("device_id: lamp-17\ndetector:\n  labels:\n    glass_break:\n      threshold: 0.5\n"
                 "      classes: [Glass]\n")
    cfg = config.load(f)
    assert cfg.device_id == "lamp-17" and cfg.detector.labels["glass_break"].threshold == 0.5
    assert cfg.detector.labels["siren"].threshold == config.load().detector.labels["siren"].threshold


def test_env_then_cli_override_in_that_order():
    env = {"EDGE_RT__DETECTOR__QUIET_S": "2.5", "EDGE_RT__DEVICE_ID": "from-env"}
    cfg = config.load(env=env, overrides={"device_id": "from-cli"})
    assert cfg.detector.quiet_s == 2.5 and cfg.device_id == "from-cli"


@pytest.mark.parametrize("overrides,needle", [
    ({"detector.quiet": 1}, "detector.quiet"),
    ({"detector.labels.siren.threshold": 1.5}, "detector.labels.siren.threshold"),
    ({"lat": 123.0}, "lat"),
    ({"device_id": "has space"}, "device_id"),
])
def test_unknown_key_or_out_of_range_value_names_the_field(overrides, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        config.load(overrides=overrides)


def test_rule_with_unknown_label_is_refused():
    with pytest.raises(ConfigError, match="breaking_glass"):
        config.load(overrides={"rules": [{"name": "x", "labels": ["breaking_glass", "scream"]}]})


def test_bad_yaml_file_is_a_clear_error(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("detector: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(f)
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.yaml")
