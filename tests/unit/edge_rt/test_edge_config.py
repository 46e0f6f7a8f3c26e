"""The edge config: the backend checked against the registry (precision its parameter), and the cloud link as one
section reached by the one environment convention."""
import pytest

from edge_rt import config
from edge_rt.errors import ConfigError


@pytest.mark.parametrize("over", [{"backend": "tflite", "precision": "fp16"}, {"backend": "tflite-fp16"},
                                  {"backend": "auto"}, {"backend": "tensorrt", "precision": "int8"}])
def test_registered_backends_and_their_precisions_are_accepted(over):
    cfg = config.load(overrides=over, env={})
    assert (cfg.backend, cfg.precision) == (over["backend"], over.get("precision"))


@pytest.mark.parametrize("over, why", [({"backend": "onnxrt"}, "unknown backend 'onnxrt'; choose one of: auto, "),
                                       ({"backend": "onnxruntime", "precision": "fp16"}, "no precision 'fp16'"),
                                       ({"backend": "auto", "precision": "int8"}, "needs a named backend")])
def test_an_unknown_backend_or_precision_is_refused_when_the_config_loads(over, why):
    with pytest.raises(ConfigError, match=why):
        config.load(overrides=over, env={})


def test_the_env_convention_reaches_the_precision():
    assert config.load(env={"EDGE_RT__BACKEND": "tflite", "EDGE_RT__PRECISION": "fp16"}).precision == "fp16"


def test_the_cloud_link_is_one_section_of_the_edge_config_reached_by_the_one_env_convention(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = config.load(env={"EDGE_RT__CLOUD__ADDRESS": "ingest.example:50051", "EDGE_RT__CLOUD__TOKEN": "ert_x",
                           "EDGE_RT__CLOUD__TLS_CA": str(ca), "EDGE_RT__CLOUD__HEARTBEAT_S": "5"})
    assert (cfg.cloud.address, cfg.cloud.token, cfg.cloud.tls_ca, cfg.cloud.heartbeat_s) == (
        ("ingest.example:50051",), "ert_x", str(ca), 5.0)
    assert cfg.cloud.backoff.step(10) == cfg.cloud.backoff_max_s


@pytest.mark.parametrize("env, why", [({"EDGE_RT__CLOUD__ADDRESS": "no-port"}, "cloud.address"),
                                      ({"EDGE_RT__CLOUD__TLS_CA": "/nope/ca.pem"}, "TLS file /nope/ca.pem does not"),
                                      ({"EDGE_RT__CLOUD__BACKOFF_MAX_S": "0.1"}, "backoff_max_s must be at least"),
                                      ({"EDGE_RT__RUNTIME__HEARTBEAT_S": "5"}, "runtime.heartbeat_s")])
def test_a_bad_cloud_setting_is_named_when_the_config_loads(env, why):
    with pytest.raises(ConfigError, match=why):
        config.load(env=env)
