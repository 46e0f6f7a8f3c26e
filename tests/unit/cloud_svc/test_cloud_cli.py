"""`python -m cloud_svc`: the device admin contract, help with examples, and the query client's output."""
from __future__ import annotations

import json

import pytest

from cloud_svc import config
from cloud_svc.__main__ import parse_time, table
from cloud_svc.server import ServerThread
from support import add_device, cloud_cli


def test_devices_add_prints_the_token_as_its_last_line_and_stores_only_its_hash(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    token = add_device(url, "lamp-9")
    assert token.startswith("ert_") and len(token) > 40
    from cloud_svc.store import Store

    store = Store.open(url)
    assert store.devices.authenticate(token) == "lamp-9"
    store.close()
    dup = cloud_cli("devices", "add", "lamp-9", "--db", url, check=False)
    assert dup.returncode == 2 and "exists" in dup.stderr
    bad = cloud_cli("devices", "add", "no spaces", "--db", url, check=False)
    assert bad.returncode == 2


def test_help_shows_examples():
    out = cloud_cli("--help").stdout
    assert "examples:" in out and "serve --db" in out and "devices add" in out


def test_events_and_devices_print_tables_or_json(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    cfg = config.load(None, {"db": url, "listen": "127.0.0.1:0", "clips": str(tmp_path / "clips")})
    with ServerThread(cfg) as srv:
        srv.app.store.devices.add_device("lamp-1")
        token = cloud_cli("users", "add", "ann", "--role", "reader", "--db", url).stdout.strip().splitlines()[-1]
        target = f"127.0.0.1:{srv.port}"
        refused = cloud_cli("events", "--server", target, "--json", check=False)
        assert refused.returncode == 2 and "users add" in refused.stderr  # no token: what to do
        q = ("--server", target, "--token", token)
        assert json.loads(cloud_cli("events", *q, "--json").stdout) == []
        devs = json.loads(cloud_cli("devices", *q, "--json").stdout)
        assert devs[0]["device_id"] == "lamp-1" and devs[0]["health"] == "never"
        out = cloud_cli("devices", "list", *q).stdout
        assert out.splitlines()[0].startswith("DEVICE") and "lamp-1" in out
        assert cloud_cli("alerts", *q, "--json").stdout.strip() == "[]"
        users = json.loads(cloud_cli("users", "--db", url, "--json").stdout)
        assert [(u["name"], u["role"], u["revoked"]) for u in users] == [("ann", "reader", False)]
    down = cloud_cli("events", "--server", "127.0.0.1:1", check=False)
    assert down.returncode == 2 and "UNAVAILABLE" in down.stderr


def test_time_arguments():
    assert parse_time("1732550000000000000") == 1732550000000000000
    assert parse_time("2024-11-25T16:00:00Z") == 1732550400 * 10**9
    assert abs(parse_time("-1h") - (parse_time("-0s") - 3600 * 10**9)) < 10**9
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        parse_time("yesterday")


def test_tables_align_columns():
    out = table([{"a": 1, "b": None}, {"a": 22.5, "b": ["x", "y"]}], [("A", "a"), ("B", "b")])
    assert out.splitlines() == ["A       B", "------  ---", "1       -", "22.500  x,y"]
