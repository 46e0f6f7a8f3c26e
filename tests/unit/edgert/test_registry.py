"""edgert.registry.Registry: register by name, look up by a checked name, refuse a second target for a name."""
import pytest

from edgert.errors import SettingsError
from edgert.registry import Registry


def test_a_registered_class_is_found_by_its_name_and_listed():
    r: Registry[type] = Registry("verifier")

    @r.register("b")
    class B:
        pass

    @r.register("a")
    class A:
        pass

    assert r.get("a") is A and r.get("b") is B
    assert r.names() == ["a", "b"] and "a" in r and "c" not in r and list(r) == ["a", "b"]


def test_an_unknown_name_is_an_error_listing_the_choices():
    r: Registry[int] = Registry("backend")
    r.register("tflite")(1)
    r.register("onnxruntime")(2)
    with pytest.raises(SettingsError, match=r"unknown backend 'onnxrt'; choose one of: onnxruntime, tflite"):
        r.get("onnxrt")


def test_one_name_cannot_name_two_things():
    r: Registry[str] = Registry("backend")
    r.register("x")("first")
    r.register("x")("first")  # the same object again is harmless (a module imported twice)
    with pytest.raises(SettingsError, match="registered twice"):
        r.register("x")("second")
    with pytest.raises(SettingsError, match="non-empty name"):
        r.register(" x")
