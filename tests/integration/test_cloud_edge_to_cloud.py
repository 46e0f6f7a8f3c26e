"""Real edges (`python -m edge_rt run --source synth:...`) stream to a real `python -m cloud_svc serve` on port 0,
on SQLite and on MariaDB: events arrive and are stored, acks trim the outbox, clips round-trip byte-exact,
`events --json` returns them, and distress events get a verification row."""
from __future__ import annotations

import json
import time

from cloud_svc.client import QueryClient
from edge_rt.outbox import Outbox
from edge_rt.records import parse
from edgert.labels import distress_labels
from support import ServerProcess, add_device, cloud_cli, edge_run, event_id_of


def test_edges_stream_to_the_cloud_and_everything_is_stored_once(cloud_db, tmp_path):
    srv = ServerProcess(cloud_db, clips=str(tmp_path / "clips"), log_path=tmp_path / "server.log",
                        extra=("--verify-workers", "1"))
    srv.start()
    try:
        tok_a, tok_b = add_device(cloud_db, "lamp-a"), add_device(cloud_db, "lamp-b")

        # Edge A records while offline (nothing reaches a cloud), so the test can read what it will send...
        spool_a = tmp_path / "spool-a"
        r = edge_run("synth:distress", spool_a, device_id="lamp-a", lat=52.5200, lon=13.4050)
        assert r.returncode == 0, r.stderr
        ob = Outbox(spool_a / "outbox.db")
        sent = ob.pending(limit=10_000)
        ob.close()
        assert sent, "the distress scenario produced no records"
        clips = {event_id_of(x.body): x.clip for x in sent if x.kind == "event_end" and x.clip}
        # ... then comes online and drains the backlog while running a quiet scenario.
        r = edge_run("synth:quiet", spool_a, cloud=srv.target, device_id="lamp-a", token=tok_a)
        assert r.returncode == 0, r.stderr

        # Edge B streams live.
        spool_b = tmp_path / "spool-b"
        r = edge_run("synth:distress,seed=2", spool_b, cloud=srv.target, device_id="lamp-b", token=tok_b,
                     lat=52.5201, lon=13.4051)
        assert r.returncode == 0, r.stderr

        # Acks trimmed both outboxes.
        for spool, last in ((spool_a, max(x.seq for x in sent)), (spool_b, None)):
            ob = Outbox(spool / "outbox.db")
            st = ob.stats()
            ob.close()
            assert st["depth"] == 0 and st["acked"] == st["next_seq"] - 1
            if last is not None:
                assert st["acked"] >= last

        # `events --json` returns every event exactly once, keyed by (device_id, seq).
        out = cloud_cli("events", "--server", srv.target, "--json").stdout
        events = json.loads(out)
        by_key = {(e["device_id"], e["seq"]): e for e in events}
        assert len(by_key) == len(events) == len({e["event_id"] for e in events})
        starts_a = {x.seq: parse(x.body).event for x in sent if x.kind == "event"}
        stored_a = {e["seq"]: e for e in events if e["device_id"] == "lamp-a"}
        assert set(stored_a) == set(starts_a)
        for seq, body in starts_a.items():
            e = stored_a[seq]
            assert (e["event_id"], e["label"], e["start_ns"]) == (body.event_id, body.label, body.start_ns)
            assert e["lat"] == 52.52 and e["end_ns"] is not None  # completed by its event_end
        assert any(e["device_id"] == "lamp-b" for e in events)

        with QueryClient(srv.target) as q:
            # Clips round-trip byte-exact.
            assert clips, "no clips were recorded"
            for event_id, data in clips.items():
                meta, got = q.clip("lamp-a", event_id=event_id)
                assert got == data and meta["format"] == "flac"

            # Distress events get a verification row, and the verifier finishes it.
            distress = [e for e in events if e["label"] in distress_labels()]
            assert distress, f"no distress event among {[e['label'] for e in events]}"

            def verified():
                now = {e["event_id"]: e for e in q.events()}
                return all(now[e["event_id"]]["verification"] and now[e["event_id"]]["verification"]["status"]
                           in ("done", "skipped") for e in distress)

            deadline = time.monotonic() + 90
            while not verified() and time.monotonic() < deadline:
                time.sleep(0.5)
            now = {e["event_id"]: e for e in q.events()}
            for e in distress:
                v = now[e["event_id"]]["verification"]
                assert v is not None and v["reason"] == "distress"
                assert v["status"] == "done" and v["verifier"] == "yamnet" and e["label"] in v["scores"]
            assert q.agreement()

            # The devices table shows both, with their last heartbeat.
            devs = {d["device_id"]: d for d in q.devices()}
            assert devs["lamp-a"]["last_heartbeat_ns"] and devs["lamp-b"]["events"] >= 1
            assert devs["lamp-a"]["acked_seq"] >= max(x.seq for x in sent)
    finally:
        srv.terminate()
