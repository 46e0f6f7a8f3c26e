"""The S3 clip store against an S3-compatible HTTP server on loopback (moto's server; boto3 speaks real HTTP to
it): content addressing, uploads in pieces, a missing clip, an outage told apart from a missing clip, and the
whole edge -> cloud -> GetClip round trip with clips in the bucket."""
from __future__ import annotations

import hashlib
import os
import socket
import time

import pytest

from cloud_svc import config
from cloud_svc.client import QueryClient
from cloud_svc.clipstore import S3ClipStore, open_store
from cloud_svc.errors import ClipMissing, ClipStoreError, ConfigError
from cloud_svc.server import ServerThread
from edge_rt.config import CloudConfig
from edge_rt.outbox import Outbox
from edge_rt.uplink import Uplink
from support import put_event

boto3 = pytest.importorskip("boto3", reason="boto3 is pinned in requirements.lock; make setup installs it")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is pinned in requirements.lock")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3(monkeypatch):
    """http://127.0.0.1:PORT of a fresh S3-compatible server with an empty bucket 'clips'."""
    for k, v in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(k, v)
    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    srv.start()
    host, port = srv.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="clips")
    yield endpoint
    srv.stop()


def test_put_get_and_exists_go_through_the_bucket(s3):
    store = open_store(f"s3://clips/edge?endpoint={s3}", "sqlite://")
    assert isinstance(store, S3ClipStore)
    data = os.urandom(50_000)
    sha = store.put(data)
    assert sha == hashlib.sha256(data).hexdigest() and store.put(data) == sha  # idempotent
    assert store.exists(sha) and store.get(sha) == data
    assert store.uri(sha) == f"s3://clips/edge/{sha[:2]}/{sha}"
    raw = boto3.client("s3", endpoint_url=s3).get_object(Bucket="clips", Key=f"edge/{sha[:2]}/{sha}")["Body"].read()
    assert raw == data  # really in the bucket, under the content address


def test_an_upload_in_pieces_lands_in_the_bucket_once_complete(s3):
    store = open_store(f"s3://clips?endpoint={s3}", "sqlite://")
    data = os.urandom(300_000)
    sha = hashlib.sha256(data).hexdigest()
    up = store.begin_upload(sha, len(data))
    assert not up.write(0, data[:100_000]) and not store.exists(sha)
    assert up.write(100_000, data[100_000:])
    assert store.get(sha) == data


def test_a_missing_clip_and_an_outage_are_different_errors(s3):
    store = open_store(f"s3://clips?endpoint={s3}", "sqlite://")
    absent = "ab" * 32
    assert not store.exists(absent)
    with pytest.raises(ClipMissing):
        store.get(absent)
    down = S3ClipStore(f"s3://clips?endpoint=http://127.0.0.1:{_free_port()}")  # nobody listens there
    down._client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(ClipStoreError) as e:
        down.get(absent)
    assert not isinstance(e.value, ClipMissing) and "cannot read clip" in str(e.value)
    with pytest.raises(ClipStoreError, match="cannot reach"):
        down.exists(absent)


def test_a_bucketless_url_is_refused():
    with pytest.raises(ConfigError, match="needs a bucket"):
        open_store("s3:///prefix", "sqlite://")


def _clip_event(ob: Outbox, device: str, data: bytes) -> int:
    """An event and its end with a clip; returns the event's seq (clips are looked up by it)."""
    seq, _, _ = put_event(ob, "glass_break", clip=data)
    return seq


def _drain(up: Uplink, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not up.drained() and time.monotonic() < deadline and up.failed is None:
        time.sleep(0.05)
    return up.drained()


FAST = dict(inline_clip_bytes=64 << 10, chunk_bytes=256 << 10, backoff_initial_s=0.05, backoff_max_s=0.5,
            poll_s=0.005, connect_timeout_s=2.0)


def test_a_bucket_outage_is_retried_and_loses_nothing(tmp_path, monkeypatch):
    for k, v in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_DEFAULT_REGION", "us-east-1"),
                 ("AWS_MAX_ATTEMPTS", "1")):
        monkeypatch.setenv(k, v)
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    cfg = config.load(None, {"db": f"sqlite:///{tmp_path / 'cloud.db'}", "listen": "127.0.0.1:0",
                             "clips": f"s3://clips?endpoint={endpoint}", "fleet.enabled": False,
                             "open_query": True})
    with ServerThread(cfg) as srv:
        token = srv.app.store.devices.add_device("lamp-s3")
        ob = Outbox(tmp_path / "outbox.db")
        data = os.urandom(30_000)
        seq = _clip_event(ob, "lamp-s3", data)
        up = Uplink(ob, f"127.0.0.1:{srv.port}", "lamp-s3", token, options=CloudConfig(**FAST)).start()
        try:
            time.sleep(2.0)  # the bucket is down: the batch is refused as UNAVAILABLE and kept
            assert not up.drained() and up.failed is None and ob.stats()["depth"] == 2
            assert srv.app.store.queries.count_events("lamp-s3") == 0
            s3srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
            s3srv.start()
            try:
                boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="clips")
                assert _drain(up, 30), up.failed
                with QueryClient(f"127.0.0.1:{srv.port}") as q:
                    assert q.clip("lamp-s3", seq=seq)[1] == data
                assert srv.app.store.queries.count_events("lamp-s3") == 1
            finally:
                s3srv.stop()
        finally:
            up.stop()


def test_clips_sent_by_an_edge_round_trip_byte_exact_through_the_bucket(s3, tmp_path):
    cfg = config.load(None, {"db": f"sqlite:///{tmp_path / 'cloud.db'}", "listen": "127.0.0.1:0",
                             "clips": f"s3://clips/prod?endpoint={s3}", "fleet.enabled": False,
                             "open_query": True})
    with ServerThread(cfg) as srv:
        token = srv.app.store.devices.add_device("lamp-s3")
        ob = Outbox(tmp_path / "outbox.db")
        clips = {}
        for size in (20_000, 2 * (1 << 20) + 5):  # one inline, one chunked
            data = os.urandom(size)
            clips[_clip_event(ob, "lamp-s3", data)] = data
        up = Uplink(ob, f"127.0.0.1:{srv.port}", "lamp-s3", token, options=CloudConfig(**FAST)).start()
        drained = _drain(up, 30)
        up.stop()
        assert drained and up.failed is None
        listing = boto3.client("s3", endpoint_url=s3).list_objects_v2(Bucket="clips", Prefix="prod/")
        assert {o["Key"].rsplit("/", 1)[1] for o in listing.get("Contents", [])} == \
            {hashlib.sha256(d).hexdigest() for d in clips.values()}
        with QueryClient(f"127.0.0.1:{srv.port}") as q:
            for seq, data in clips.items():
                meta, got = q.clip("lamp-s3", seq=seq)
                assert got == data and meta["sha256"] == hashlib.sha256(data).hexdigest()
