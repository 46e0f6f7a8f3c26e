"""The design's public names (`edge_rt.frontend`, `edge_rt.backends`) are the shared runtime's own objects."""
import edge_rt.backends as edge_backends
import edge_rt.frontend as edge_frontend
from edgert.yamnet import backends, frontend


def test_edge_rt_frontend_is_the_shared_front_end():
    for name in edge_frontend.__all__:
        assert getattr(edge_frontend, name) is getattr(frontend, name), name
    assert edge_frontend.IMPLEMENTATION in ("cython", "cuda", "numpy")


def test_edge_rt_backends_load_is_the_shared_loader():
    for name in edge_backends.__all__:
        assert getattr(edge_backends, name) is getattr(backends, name), name
    assert "onnxruntime" in edge_backends.names()
