"""The edge config checks its backend against the registry, with precision as the backend's parameter."""
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
