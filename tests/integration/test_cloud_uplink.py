"""The edge uplink against the real server over loopback: acks trim the outbox, chunked clips, clips over the
server's limits (dropped, the events kept), outbox gaps, ack deadlines, non-retryable refusals, TLS and mTLS."""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import time

import pytest
import sqlalchemy as sa

from cloud_svc import config
from cloud_svc.client import QueryClient
from cloud_svc.domain import EventFilter
from cloud_svc.server import ServerThread
from edge_rt.config import CloudConfig
from edge_rt.outbox import Outbox
from edge_rt.uplink import Uplink, UplinkError
from support import edge_run, event_id_of, put_event, wait_for

FAST = dict(backoff_initial_s=0.05, backoff_max_s=0.5, poll_s=0.005, heartbeat_s=0.5, connect_timeout_s=2.0)


@pytest.fixture
def server(tmp_path):
    cfg = config.load(None, {"db": f"sqlite:///{tmp_path / 'cloud.db'}", "listen": "127.0.0.1:0",
                             "clips": str(tmp_path / "clips"), "fleet.enabled": False, "open_query": True})
    with ServerThread(cfg) as s:
        yield s


def test_acks_trim_the_outbox_and_everything_arrives_once(server, tmp_path):
    token = server.app.store.devices.add_device("lamp-1")
    ob = Outbox(tmp_path / "outbox.db")
    for _ in range(150):
        put_event(ob)
    beats = []
    up = Uplink(ob, f"127.0.0.1:{server.port}", "lamp-1", token, heartbeat=lambda: beats.append(1) or {"rtf": 42.0},
                options=CloudConfig(batch_records=40, **FAST)).start()
    assert wait_for(up.drained)
    assert ob.stats()["acked"] == 300 and ob.stats()["depth"] == 0
    up.stop()
    assert server.app.store.queries.count_events("lamp-1") == 150 and up.failed is None
    assert beats and server.app.store.queries.list_devices()[0].figures.get("rtf") == 42.0


def test_a_large_clip_is_chunked_and_arrives_byte_exact(server, tmp_path):
    token = server.app.store.devices.add_device("lamp-1")
    ob = Outbox(tmp_path / "outbox.db")
    big, small = os.urandom(3 * (1 << 20) + 17), os.urandom(20_000)
    s_big, *_ = put_event(ob, clip=big)
    s_small, *_ = put_event(ob, clip=small)
    up = Uplink(ob, f"127.0.0.1:{server.port}", "lamp-1", token,
                options=CloudConfig(inline_clip_bytes=64 << 10, chunk_bytes=256 << 10, **FAST)).start()
    assert wait_for(up.drained)
    up.stop()
    with QueryClient(f"127.0.0.1:{server.port}") as q:
        meta, data = q.clip("lamp-1", seq=s_big)
        assert data == big and meta["sha256"] == hashlib.sha256(big).hexdigest()
        assert q.clip("lamp-1", seq=s_small)[1] == small


def test_clips_over_the_servers_limits_cost_only_the_clips_and_the_uplink_counts_them(tmp_path):
    cfg = config.load(None, {"db": f"sqlite:///{tmp_path / 'cloud.db'}", "listen": "127.0.0.1:0",
                             "clips": str(tmp_path / "clips"), "fleet.enabled": False,
                             "ingest.max_inline_clip_bytes": 4096, "ingest.max_clip_bytes": 8192})
    with ServerThread(cfg) as srv:
        token = srv.app.store.devices.add_device("lamp-1")
        ob = Outbox(tmp_path / "outbox.db")
        small, inline_big, huge = os.urandom(2000), os.urandom(10_000), os.urandom(40_000)
        ids = {name: put_event(ob, clip=clip)[2] for name, clip in
               [("small", small), ("inline_big", inline_big), ("huge", huge)]}
        # the edge sends clips up to 16 KiB inline (more than this server takes), larger ones in 4 KiB chunks
        up = Uplink(ob, f"127.0.0.1:{srv.port}", "lamp-1", token,
                    options=CloudConfig(inline_clip_bytes=16 << 10, chunk_bytes=4 << 10, **FAST)).start()
        assert wait_for(up.drained)  # every record acked: nothing stalls on a clip
        up.stop()
        assert up.failed is None and up.clip_rejects == 2
        assert up.rejects == 10  # the huge clip's 10 chunks, each over max_clip_bytes (the upload is abandoned)
        by_id = {e.event_id: e for e in srv.app.store.queries.list_events(EventFilter())}
        assert set(by_id) == set(ids.values()) and all(e.end_ns for e in by_id.values())
        assert by_id[ids["small"]].clip is not None and by_id[ids["small"]].clip.size == len(small)
        assert by_id[ids["inline_big"]].clip is None
        assert "max_inline_clip_bytes 4096" in by_id[ids["inline_big"]].clip_dropped
        assert by_id[ids["huge"]].clip is None and "max_clip_bytes 8192" in by_id[ids["huge"]].clip_dropped


def test_records_the_outbox_dropped_do_not_stall_the_acks(server, tmp_path):
    token = server.app.store.devices.add_device("lamp-1")
    ob = Outbox(tmp_path / "outbox.db", max_bytes=1 << 16)  # small: the oldest records get dropped
    for _ in range(200):
        put_event(ob)
    st = ob.stats()
    survivors = ob.pending(limit=10_000)
    assert st["dropped"] > 0 and survivors[0].seq > 1
    up = Uplink(ob, f"127.0.0.1:{server.port}", "lamp-1", token, options=CloudConfig(**FAST)).start()
    assert wait_for(up.drained)
    up.stop()
    assert server.app.store.devices.watermark("lamp-1") == st["next_seq"] - 1
    with server.app.store.engine.connect() as c:
        stored = set(c.scalars(sa.text("SELECT event_id FROM events WHERE device_id='lamp-1'")))
    assert stored == {event_id_of(r.body) for r in survivors}  # every surviving event, once


def test_a_late_ack_times_the_session_out_and_the_replay_is_idempotent(tmp_path):
    cfg = config.load(None, {"db": f"sqlite:///{tmp_path / 'cloud.db'}", "listen": "127.0.0.1:0",
                             "clips": str(tmp_path / "clips"), "fleet.enabled": False,
                             "ingest.commit_linger_ms": 1500})  # every commit waits 1.5 s
    with ServerThread(cfg) as srv:
        token = srv.app.store.devices.add_device("lamp-1")
        ob = Outbox(tmp_path / "outbox.db")
        for _ in range(20):
            put_event(ob)
        up = Uplink(ob, f"127.0.0.1:{srv.port}", "lamp-1", token,
                    options=CloudConfig(ack_timeout_s=0.5, batch_records=10, **FAST)).start()
        assert wait_for(up.drained, 60)
        up.stop()
        assert up.retries >= 1 and "DEADLINE_EXCEEDED" in up.last_error
        assert srv.app.store.queries.count_events("lamp-1") == 20


def test_a_refused_token_stops_the_uplink_and_keeps_the_records(server, tmp_path):
    server.app.store.devices.add_device("lamp-1")
    ob = Outbox(tmp_path / "outbox.db")
    put_event(ob)
    up = Uplink(ob, f"127.0.0.1:{server.port}", "lamp-1", "ert_not-a-token", options=CloudConfig(**FAST)).start()
    assert wait_for(lambda: up.failed is not None, 10)
    assert "UNAUTHENTICATED" in str(up.failed) and up.retries == 0
    assert ob.stats()["depth"] == 2
    up.stop()
    with pytest.raises(UplinkError):
        Uplink(ob, f"127.0.0.1:{server.port}", "lamp-1", "")  # no token at all: refused before connecting


def test_an_unreachable_cloud_is_retried_with_growing_jittered_backoff():
    o = CloudConfig(backoff_initial_s=0.5, backoff_max_s=8.0)
    rng = random.Random(1)
    for attempt, cap in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 8.0)]:
        delays = [o.backoff.delay(attempt, rng) for _ in range(300)]
        assert max(delays) <= cap and min(delays) >= 0.0
        assert max(delays) > 0.8 * cap and min(delays) < 0.2 * cap  # full jitter spreads over [0, cap]


def test_a_spool_reset_below_the_clouds_watermark_is_refused_loudly(server, tmp_path):
    token = server.app.store.devices.add_device("lamp-1")
    ob = Outbox(tmp_path / "a.db")
    for _ in range(5):
        put_event(ob)
    up = Uplink(ob, f"127.0.0.1:{server.port}", "lamp-1", token, options=CloudConfig(**FAST)).start()
    assert wait_for(up.drained)
    up.stop()
    fresh = Outbox(tmp_path / "b.db")  # a re-imaged device: seqs start again at 1
    put_event(fresh)
    up = Uplink(fresh, f"127.0.0.1:{server.port}", "lamp-1", token, options=CloudConfig(**FAST)).start()
    assert wait_for(lambda: up.failed is not None, 10)
    assert "spool was reset" in str(up.failed)
    up.stop()


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path / "pki"
    d.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=test-ca", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                      ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return d


@pytest.mark.parametrize("mutual", [False, True])
def test_the_uplink_speaks_tls_and_mtls(tmp_path, pki, mutual):
    tls = {"tls.cert": str(pki / "server.pem"), "tls.key": str(pki / "server.key")}
    if mutual:
        tls["tls.client_ca"] = str(pki / "ca.pem")
    cfg = config.load(None, {"db": f"sqlite:///{tmp_path / 'cloud.db'}", "listen": "127.0.0.1:0",
                             "clips": str(tmp_path / "clips"), "fleet.enabled": False, **tls})
    with ServerThread(cfg) as srv:
        token = srv.app.store.devices.add_device("lamp-1")
        ob = Outbox(tmp_path / "outbox.db")
        put_event(ob)
        client = {"tls_cert": str(pki / "client.pem"), "tls_key": str(pki / "client.key")} if mutual else {}
        up = Uplink(ob, f"127.0.0.1:{srv.port}", "lamp-1", token,
                    options=CloudConfig(tls_ca=str(pki / "ca.pem"), **client, **FAST)).start()
        assert wait_for(up.drained, 20)
        up.stop()
        plain = Uplink(Outbox(tmp_path / "p.db"), f"127.0.0.1:{srv.port}", "lamp-1", token,
                       options=CloudConfig(**FAST))
        put_event(plain.outbox)
        plain.start()
        time.sleep(1.5)
        assert not plain.drained() and plain.connects == 0  # plaintext never gets through
        plain.stop()
        if mutual:  # TLS without a client certificate is refused too
            anon = Uplink(Outbox(tmp_path / "q.db"), f"127.0.0.1:{srv.port}", "lamp-1", token,
                          options=CloudConfig(tls_ca=str(pki / "ca.pem"), **FAST))
            put_event(anon.outbox)
            anon.start()
            time.sleep(1.5)
            assert not anon.drained()
            anon.stop()
        assert srv.app.store.queries.count_events("lamp-1") == 1


def test_edge_run_takes_mtls_from_its_flags(tmp_path, pki):
    cfg = config.load(None, {"db": f"sqlite:///{tmp_path / 'cloud.db'}", "listen": "127.0.0.1:0",
                             "clips": str(tmp_path / "clips"), "fleet.enabled": False,
                             "tls.cert": str(pki / "server.pem"), "tls.key": str(pki / "server.key"),
                             "tls.client_ca": str(pki / "ca.pem")})
    flags = ("--tls-ca", str(pki / "ca.pem"), "--tls-cert", str(pki / "client.pem"),
             "--tls-key", str(pki / "client.key"))
    with ServerThread(cfg) as srv:
        token = srv.app.store.devices.add_device("lamp-tls")
        r = edge_run("synth:distress", tmp_path / "spool", cloud=f"127.0.0.1:{srv.port}", device_id="lamp-tls",
                     token=token, extra=flags)
        assert r.returncode == 0, r.stderr[-3000:]
        ob = Outbox(tmp_path / "spool" / "outbox.db")
        st = ob.stats()
        ob.close()
        assert st["depth"] == 0 and st["next_seq"] > 1  # everything recorded was acked over mTLS
        assert srv.app.store.queries.count_events("lamp-tls") >= 2

        # A client certificate without its key is refused up front, by name, with no traceback.
        r = edge_run("synth:quiet", tmp_path / "spool2", cloud=f"127.0.0.1:{srv.port}", device_id="lamp-tls",
                     token=token, extra=flags[:4])
        assert r.returncode == 2 and "cloud.tls_cert and cloud.tls_key go together" in r.stderr
        assert "Traceback" not in r.stderr
