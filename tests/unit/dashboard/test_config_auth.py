"""The dashboard's config refuses to listen beyond loopback without users and takes only hashed passwords; the
hash-password command makes hashes werkzeug accepts; and a real `python -m dashboard` with users asks every
page, file and callback for them."""
from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from email.message import Message
from pathlib import Path
from typing import Iterator, Optional

import pytest
import yaml
from browser.harness import free_port
from werkzeug.security import check_password_hash

from dashboard import config
from dashboard.auth import hash_password
from dashboard.errors import ConfigError
from support import REPO, env_with_repo

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def alice_hash() -> str:
    return hash_password(PASSWORD)  # scrypt: slow on purpose, so made once


# ---------------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.7", "dashboard.example.org"])
def test_listening_beyond_loopback_without_users_is_refused_naming_auth_users(host):
    with pytest.raises(ConfigError, match=r"auth\.users") as err:
        config.load(None, {"host": host}, env={})
    assert host in str(err.value)


def test_a_host_from_the_environment_or_a_file_is_checked_the_same_way(tmp_path):
    with pytest.raises(ConfigError, match=r"auth\.users"):
        config.load(None, env={"DASHBOARD__HOST": "0.0.0.0"})
    p = tmp_path / "d.yaml"
    p.write_text("host: 0.0.0.0\nport: 8080\n")
    with pytest.raises(ConfigError, match=r"auth\.users"):
        config.load(p, env={})


def test_listening_beyond_loopback_with_users_is_accepted(alice_hash, tmp_path):
    cfg = config.load(None, {"host": "0.0.0.0", "auth.users": {"alice": alice_hash}}, env={})
    assert cfg.host == "0.0.0.0" and not cfg.loopback and cfg.auth.users == {"alice": alice_hash}
    p = tmp_path / "d.yaml"
    p.write_text(yaml.safe_dump({"host": "192.168.1.20", "auth": {"users": {"alice": alice_hash}}}))
    assert config.load(p, env={}).auth.users == {"alice": alice_hash}


def test_a_pbkdf2_hash_is_accepted_too():
    from werkzeug.security import generate_password_hash

    h = generate_password_hash(PASSWORD, method="pbkdf2:sha256")
    assert config.load(None, {"host": "0.0.0.0", "auth.users": {"bob": h}}, env={}).auth.users["bob"] == h


@pytest.mark.parametrize("password", ["hunter22", "sha256$abc", "SCRYPT:upper", ""])
def test_a_clear_text_password_is_refused_naming_its_user(password, alice_hash):
    with pytest.raises(ConfigError) as err:
        config.load(None, {"auth.users": {"alice": alice_hash, "bob": password}}, env={})
    msg = str(err.value)
    assert "auth.users" in msg and "'bob'" in msg and "hash-password" in msg
    assert "'alice'" not in msg
    if password:
        assert password not in msg  # the error never echoes what may be a real password


@pytest.mark.parametrize("name", ["", "a:b"])
def test_a_user_name_that_basic_auth_cannot_carry_is_refused(name, alice_hash):
    with pytest.raises(ConfigError, match=r"auth\.users"):
        config.load(None, {"auth.users": {name: alice_hash}}, env={})


@pytest.mark.parametrize("overrides, key", [
    ({"nope": 1}, "nope"),
    ({"auth.userz": {}}, "auth.userz"),
    ({"map.tile": "https://x/{z}/{x}/{y}.png"}, "map.tile"),
])
def test_an_unknown_key_is_an_error_naming_it(overrides, key):
    with pytest.raises(ConfigError, match="invalid dashboard config") as err:
        config.load(None, overrides, env={})
    assert key in str(err.value) and "Extra inputs" in str(err.value)


def test_an_unknown_key_in_a_file_names_the_file_and_the_key(tmp_path):
    p = tmp_path / "d.yaml"
    p.write_text("refresh: 5\n")
    with pytest.raises(ConfigError) as err:
        config.load(p, env={})
    assert str(p) in str(err.value) and "refresh" in str(err.value)


@pytest.mark.parametrize("overrides, key", [
    ({"port": 70000}, "port"), ({"refresh_s": 0.1}, "refresh_s"), ({"page_size": 1}, "page_size"),
    ({"stale_heartbeats": 0}, "stale_heartbeats"), ({"map.zoom": 19}, "map.zoom"),
    ({"map.center": (95.0, 0.0)}, "map.center"),
])
def test_a_value_out_of_range_is_an_error_naming_the_field(overrides, key):
    with pytest.raises(ConfigError) as err:
        config.load(None, overrides, env={})
    assert f"{key}:" in str(err.value)


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.53", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("dashboard.example.org", False),
])
def test_loopback_detection(host, loopback, alice_hash):
    users = {} if loopback else {"alice": alice_hash}
    assert config.load(None, {"host": host, "auth.users": users}, env={}).loopback is loopback


# --------------------------------------------------------------------------------------------- hash-password
def _hash_password_cli(text: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dashboard", "hash-password"], input=text, capture_output=True,
                          text=True, cwd=REPO, env=env_with_repo(), timeout=60)


def test_hash_password_prints_a_hash_that_werkzeug_accepts_and_the_config_takes():
    r = _hash_password_cli(PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    h = r.stdout.strip()
    assert len(r.stdout.splitlines()) == 1 and h.startswith("scrypt:")
    assert check_password_hash(h, PASSWORD)
    assert not check_password_hash(h, PASSWORD + "!")
    assert PASSWORD not in r.stdout + r.stderr
    assert config.load(None, {"host": "0.0.0.0", "auth.users": {"alice": h}}, env={}).auth.users["alice"] == h


def test_hash_password_refuses_a_short_password():
    r = _hash_password_cli("short12\n")
    assert r.returncode == 2
    assert r.stdout == ""
    assert "at least 8 characters" in r.stderr


# ------------------------------------------------------------------------------------------- a real server
def _get(url: str, auth: Optional[tuple[str, str]] = None) -> tuple[int, Message, bytes]:
    """(status, headers (case-insensitive: waitress writes Www-Authenticate), body)."""
    req = urllib.request.Request(url)
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@contextmanager
def _dashboard(args: list[str], log_dir: Path, timeout: float = 60.0) -> Iterator[str]:
    """`python -m dashboard ARGS --host 127.0.0.1 --port FREE` until the block ends; yields its base URL once it
    answers HTTP at all (with auth, GET / is a 401). Stopped with SIGINT; not stopping is a failure."""
    port = free_port()
    cmd = [sys.executable, "-m", "dashboard", *args, "--host", "127.0.0.1", "--port", str(port)]
    log_dir.mkdir(parents=True, exist_ok=True)
    err_path = log_dir / f"dashboard-{port}.err"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env_with_repo(), stdout=subprocess.DEVNULL, stderr=err)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"the dashboard exited with {proc.returncode}:\n{_tail(err_path)}"
            try:
                _get(base + "/healthz")
                break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, f"the dashboard did not answer in {timeout:g} s:\n{_tail(err_path)}"
            time.sleep(0.1)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                raise AssertionError(f"the dashboard did not stop on SIGINT:\n{_tail(err_path)}") from None


@pytest.fixture(scope="module")
def empty_cloud(tmp_path_factory) -> tuple[str, Path]:
    from cloud_svc.store import Store

    folder = tmp_path_factory.mktemp("cloud")
    url = f"sqlite:///{folder / 'cloud.db'}"
    store = Store.open(url)
    store.upgrade()
    store.close()
    return url, folder / "clips"


@pytest.fixture(scope="module")
def authed_dashboard(empty_cloud, alice_hash, tmp_path_factory) -> Iterator[str]:
    url, clips = empty_cloud
    folder = tmp_path_factory.mktemp("dash")
    cfg = folder / "dashboard.yaml"
    cfg.write_text(yaml.safe_dump({"auth": {"users": {"alice": alice_hash}, "realm": "test realm"}}))
    with _dashboard(["--config", str(cfg), "--db", url, "--clips", str(clips)], folder) as base:
        yield base


ALICE = ("alice", PASSWORD)
PROTECTED = ["/", "/events", "/devices", "/event/1", "/clip/1", "/spectrogram/1.png", "/export.csv",
             "/export.csv?window=3y", "/_dash-layout", "/_dash-dependencies", "/basemap/countries.geojson",
             "/healthz"]


@pytest.mark.parametrize("path", PROTECTED)
def test_every_page_file_and_callback_asks_for_credentials(authed_dashboard, path):
    status, headers, body = _get(authed_dashboard + path)
    assert status == 401, (status, body[:200])
    assert headers.get("WWW-Authenticate", "").startswith('Basic realm="test realm"')
    assert b"auth.users" in body
    assert b"<html" not in body.lower() and b"event" not in body.lower()


@pytest.mark.parametrize("who", [("alice", "wrong password"), ("alice", ""), ("mallory", PASSWORD),
                                 ("ALICE", PASSWORD), ("alice", PASSWORD + " ")])
def test_a_wrong_user_or_password_is_refused(authed_dashboard, who):
    for path in ("/", "/clip/1", "/export.csv", "/_dash-layout"):
        status, headers, _ = _get(authed_dashboard + path, who)
        assert status == 401, (path, who)
        assert headers.get("WWW-Authenticate", "").startswith("Basic ")


def test_a_callback_post_without_credentials_is_refused(authed_dashboard):
    req = urllib.request.Request(authed_dashboard + "/_dash-update-component", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 401


def test_the_right_user_and_password_get_the_pages_files_and_callbacks(authed_dashboard):
    status, headers, body = _get(authed_dashboard + "/", ALICE)
    assert status == 200 and b"<html" in body.lower()
    status, headers, body = _get(authed_dashboard + "/_dash-layout", ALICE)
    assert status == 200 and "json" in headers["Content-Type"]
    assert json.loads(body)["props"]  # the shell's layout
    status, headers, body = _get(authed_dashboard + "/export.csv", ALICE)
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert body.decode().splitlines()[0].startswith("id,device_id,seq,event_id,label")
    # the file routes run behind the check: an empty store has no event 1, and a bad filter is named
    status, _, body = _get(authed_dashboard + "/clip/1", ALICE)
    assert status == 404 and b"no event 1" in body
    status, _, body = _get(authed_dashboard + "/export.csv?window=3y", ALICE)
    assert status == 400 and b"window='3y'" in body
    assert _get(authed_dashboard + "/healthz", ALICE)[:1] == (200,)


def test_the_server_refuses_to_listen_beyond_loopback_without_users(empty_cloud):
    url, clips = empty_cloud
    port = free_port()
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "dashboard", "--host", "0.0.0.0", "--port", str(port), "--db", url,
                        "--clips", str(clips)], capture_output=True, text=True, cwd=REPO, env=env_with_repo(),
                       timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: ") and "auth.users" in r.stderr and "0.0.0.0" in r.stderr
    assert "Traceback" not in r.stderr
    assert "dashboard: http://" not in r.stdout  # it never got as far as serving
    assert time.monotonic() - t0 < 30
    with socket.socket() as s:  # and nothing listens on the port it was given
        assert s.connect_ex(("127.0.0.1", port)) != 0
