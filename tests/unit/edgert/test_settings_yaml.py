"""parse_yaml (libyaml's parser where PyYAML has it) reads what yaml.safe_load reads, and refuses what it refuses."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgert.errors import SettingsError
from edgert.settings import parse_yaml, read_yaml

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = sorted(p for d in ("edgert", "edge_rt", "cloud_svc") for p in (ROOT / d).rglob("*.y*ml"))


def test_pyyaml_has_libyaml():
    # Without it parse_yaml falls back to the pure-Python parser: correct, but the start is slower.
    assert yaml.__with_libyaml__


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_yaml_reads_the_same(path):
    text = path.read_text()
    assert parse_yaml(text) == yaml.safe_load(text)


@pytest.mark.parametrize("raw, value", [("true", True), ("30", 30), ("0123", 83), ("[a, b]", ["a", "b"]),
                                        ("1e3", "1e3"), ("~", None), ("2026-12-05", None)])
def test_scalars_read_as_safe_load_reads_them(raw, value):
    got = parse_yaml(raw)
    assert got == yaml.safe_load(raw)
    if value is not None:
        assert got == value


def test_unsafe_tags_are_refused():
    with pytest.raises(yaml.constructor.ConstructorError):
        parse_yaml("!!python/object/apply:os.system ['true']")


def test_bad_yaml_names_the_file_and_the_place(tmp_path):
    p = tmp_path / "edge.yaml"
    p.write_text("runtime:\n  commit_s: [0.05\n")
    with pytest.raises(SettingsError, match=r"(?s)edge\.yaml is not valid YAML.*line 2, column 13"):
        read_yaml(p, SettingsError)
