"""Fuzz: over 10,000 messages generated from the proto descriptors, and raw bytes that are not protobuf, against a real
cloud_svc over loopback. Every call ends with an allowed status (never UNKNOWN or INTERNAL), in-band rejects carry a
documented code and name a field, a stream that ends OK has answered every message, and afterwards the same server
stores and acks a real event, lists it, and has no traceback in its log."""
from __future__ import annotations

import base64
import collections
import hashlib
import inspect
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Optional

import grpc
import pytest
from fuzz_strategies import MessageStrategies, one_field_changed, raw_bytes
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from support import ServerProcess, add_device, cloud_cli, env_with_repo, wait_for

# A device's records at or below its watermark are replays, skipped; one batch with a large low_water moves the mark
# far up. So that generated records keep reaching the store, seqs below FRESH_SEQS (what plausible and valid batches
# use) are sent shifted above the device's mark, and a device whose mark passes RETIRE_AT (where a shifted seq could
# leave int64) is retired for the next of the pool. Seqs of 0 and from FRESH_SEQS up go as generated.
DEVICES = [f"fuzz-{i:02d}" for i in range(64)]
DEVICE = DEVICES[0]          # the name in generated Hellos; a stream's own device stands in for it when sent
FRESH_SEQS = 1 << 40
RETIRE_AT = 1 << 62
CHECK_DEVICE = "fuzz-check"  # untouched by the fuzz: the proof afterwards that ingest still works
INGEST = "/edgert.v1.Ingest/Stream"
MAX_MESSAGE = 4 << 20      # the server's default ingest.max_message_bytes; larger requests end their stream
SUBSCRIBE_DEADLINE_S = 0.5  # Subscribe never ends by itself: it replays, then follows until the deadline

C = grpc.StatusCode
ALLOWED = {C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND, C.PERMISSION_DENIED, C.UNAUTHENTICATED, C.OUT_OF_RANGE,
           C.FAILED_PRECONDITION, C.RESOURCE_EXHAUSTED, C.CANCELLED}
SUBSCRIBE_ALLOWED = ALLOWED | {C.DEADLINE_EXCEEDED}
# Reject.code, a google.rpc.Code, as ingest.proto documents it: INVALID_ARGUMENT, or FAILED_PRECONDITION for a ref to
# a clip never uploaded.
REJECT_CODES = {c.value[0]: c.name for c in (C.INVALID_ARGUMENT, C.FAILED_PRECONDITION)}
TRACEBACK = "Traceback (most recent call last)"
END_MARKER = b""  # an empty IngestRequest: no msg set, always answered in-band with a Reject on "msg"

# How many of each kind are sent; together over 10,000 (the totals are printed and checked by the last test).
INGEST_EXAMPLES = 800      # streams: a Hello, 1-8 generated messages or uploads (~5 messages), an end marker
INGEST_RAW_EXAMPLES = 450  # streams: [a Hello], 1-10 byte strings, mostly not an IngestRequest, an end marker
QUERY_EXAMPLES = 550       # 1-10 concurrent calls of every Query method but Subscribe
QUERY_RAW_EXAMPLES = 400   # the same with raw bytes as the request
SUBSCRIBE_EXAMPLES = 40    # 10-40 concurrent Subscribe calls, generated or raw (each waits for its deadline)
MIN_TOTAL = 10_000


@dataclass(frozen=True)
class KnownBug:
    """A bug this fuzz found that awaits its fix: its symptom is counted, not failed on, so the fuzz goes on looking
    for others. Each has a strict xfail reproducer below; once fixed, that test fails until the entry goes too."""
    what: str
    codes: frozenset   # the statuses it ends a call with
    details: str       # ... whose details contain this
    log: str           # its traceback in the server log contains this


KNOWN_BUGS: tuple[KnownBug, ...] = ()  # the three this fuzz found are fixed; their reproducers below hold


def known_bug(code, details: str) -> Optional[KnownBug]:
    return next((b for b in KNOWN_BUGS if code in b.codes and b.details in (details or "")), None)


pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])


@dataclass
class Tally:
    """What was sent and what came back, over the whole module."""
    sent: collections.Counter = field(default_factory=collections.Counter)      # test -> messages
    statuses: collections.Counter = field(default_factory=collections.Counter)  # (rpc, status) -> calls
    rejects: collections.Counter = field(default_factory=collections.Counter)   # (code, scope, field) -> rejects
    known: collections.Counter = field(default_factory=collections.Counter)     # KnownBug.what -> calls
    done: set = field(default_factory=set)                                      # fuzz tests that ran to the end

    def report(self) -> str:
        fields = collections.Counter()
        for (code, scope, f), n in self.rejects.items():
            fields[(code, scope, f.split("[")[0].split(".")[0])] += n
        return (f"sent {sum(self.sent.values())} generated messages: {dict(self.sent)}\n"
                f"statuses: {dict(sorted(self.statuses.items()))}\n"
                f"in-band rejects (code, scope, top field): {dict(sorted(fields.items()))}\n"
                f"known bugs hit: {dict(self.known)}")


TALLY = Tally()


# ---------------------------------------------------------------------------------------------- strategies
def _hex(n: int) -> st.SearchStrategy[str]:
    return st.binary(min_size=n // 2, max_size=n // 2).map(bytes.hex)


def _page_token(after_id: int) -> str:
    """The server's page token format (cloud_svc.servicer.query.page_token), so paging gets past the decode."""
    return "p1." + base64.urlsafe_b64encode(str(after_id).encode()).decode().rstrip("=")


NOW_NS = time.time_ns()
CLIPS = [b"fLaC" + bytes(60), b"RIFF" + bytes(200), b"OggS" + bytes(7)]  # uploads whose hash can match their bytes
LABELS = ["glass_break", "scream", "shout", "gunshot", "siren", "speech", "dog_bark"]


def _hints() -> dict[str, st.SearchStrategy]:
    """Values that pass validation, for fields where a random value almost never does, so that generated records get
    committed, clips get uploaded and queries find rows. Keyed by the field's full name."""
    times = st.integers(NOW_NS - 10**12, NOW_NS + 10**12)
    score = st.floats(0.0, 1.0)
    shas = st.sampled_from([hashlib.sha256(c).hexdigest() for c in CLIPS])
    seqs, ids = st.integers(1, 60), st.integers(0, 60)
    lat, lon = st.floats(-90.0, 90.0), st.floats(-180.0, 180.0)
    v1 = "edgert.v1."
    h = {
        "Hello.device_id": st.just(DEVICE), "Hello.low_water": seqs,
        "RecordBatch.low_water": seqs, "Record.seq": seqs, "Record.created_ns": times,
        "Event.event_id": _hex(32), "Event.label": st.sampled_from(LABELS), "Event.start_ns": times,
        "Event.end_ns": times, "Event.score": score, "Event.backend": st.just("onnxruntime"),
        "Event.model_sha256": _hex(64), "Event.inference_ms": st.floats(0.0, 100.0),
        "Event.embedding_f16": st.sampled_from([b"", bytes(2048)]), "Event.clip_dropped": st.just("privacy: speech"),
        "ClassScore.name": st.sampled_from(["Glass", "Speech", "Siren"]), "ClassScore.score": score,
        "Position.lat": lat, "Position.lon": lon,
        "Clip.format": st.sampled_from(["flac", "wav", "ogg"]), "Clip.sample_rate": st.sampled_from([16000, 48000]),
        "Clip.start_ns": times, "Clip.preroll_s": st.floats(0.0, 5.0), "Clip.inline": st.sampled_from(CLIPS),
        "ClipRef.sha256": shas, "ClipRef.size": st.sampled_from([len(c) for c in CLIPS]),
        "DeviceAlert.rule": st.just("distress"), "DeviceAlert.labels": st.sampled_from(LABELS),
        "DeviceAlert.start_ns": times, "DeviceAlert.end_ns": times, "DeviceAlert.event_ids": _hex(32),
        "Heartbeat.sent_ns": times, "Heartbeat.FiguresEntry.key": st.sampled_from(["rtf", "cpu_percent"]),
        "Heartbeat.FiguresEntry.value": st.floats(0.0, 100.0), "Heartbeat.InfoEntry.key": st.just("backend"),
        "ClipChunk.sha256": shas, "ClipChunk.total_size": st.sampled_from([len(c) for c in CLIPS]),
        "ClipChunk.offset": st.sampled_from([0, 4]), "ClipChunk.data": st.sampled_from(CLIPS + [c[:4] for c in CLIPS]),
        "ListEventsRequest.start_ns": times, "ListEventsRequest.end_ns": times,
        "ListEventsRequest.labels": st.sampled_from(LABELS),
        "ListEventsRequest.device_ids": st.sampled_from(DEVICES[:4]),
        "ListEventsRequest.limit": st.integers(0, 50), "ListEventsRequest.after_id": ids,
        "ListEventsRequest.page_token": st.integers(0, 1 << 70).map(_page_token),
        "BoundingBox.min_lat": lat, "BoundingBox.max_lat": lat, "BoundingBox.min_lon": lon,
        "BoundingBox.max_lon": lon,
        "GetClipRequest.device_id": st.sampled_from(DEVICES[:4]), "GetClipRequest.seq": seqs,
        "GetClipRequest.event_id": _hex(32),
        "ListAlertsRequest.kind": st.sampled_from(["", "device", "fleet"]), "ListAlertsRequest.after_id": ids,
        "ListAlertsRequest.limit": st.integers(0, 50), "ListAlertsRequest.start_ns": times,
        "SubscribeRequest.kind": st.sampled_from(["", "device", "fleet"]), "SubscribeRequest.after_id": ids,
        "SubscribeRequest.since_ns": times, "GetAgreementRequest.start_ns": times,
        "GetAgreementRequest.end_ns": times,
    }
    return {v1 + k: s for k, s in h.items()}


GENERIC = MessageStrategies()
PLAUSIBLE = MessageStrategies(_hints())


def messages(desc_of) -> st.SearchStrategy:
    """Messages of the type `desc_of()` names, purely from the schema or with plausible values mixed in. Deferred:
    the generated code exists only once the module fixture has built it."""
    return st.deferred(lambda: st.one_of(GENERIC.of(desc_of()), PLAUSIBLE.of(desc_of())))


def _ingest_request():
    from edgert.v1 import ingest_pb2

    return ingest_pb2.IngestRequest.DESCRIPTOR


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def valid_ingest_requests() -> tuple[st.SearchStrategy, st.SearchStrategy]:
    """IngestRequests that the server takes as they are: single ones (a Hello, heartbeats, batches of events with
    inline clips or refs to clips uploaded before or never, and alerts), and lists that upload a clip in one or two
    chunks and then send a record that refers to it."""
    from edgert.v1 import common_pb2, ingest_pb2

    req = ingest_pb2.IngestRequest
    times = st.integers(NOW_NS - 10**12, NOW_NS + 10**12)
    pos = st.none() | st.builds(common_pb2.Position, lat=st.floats(-90, 90), lon=st.floats(-180, 180))
    classes = st.lists(st.builds(common_pb2.ClassScore, name=st.sampled_from(["Glass", "Speech", "Siren"]),
                                 score=st.floats(0, 1, width=32)), max_size=5)
    clip = st.builds(common_pb2.Clip, format=st.sampled_from(["flac", "wav", "ogg"]),
                     sample_rate=st.sampled_from([16000, 48000]), start_ns=times, preroll_s=st.floats(0, 5, width=32),
                     inline=st.sampled_from(CLIPS)) | st.sampled_from(CLIPS + [b"never uploaded"]).map(
        lambda c: common_pb2.Clip(format="flac", sample_rate=16000, ref=common_pb2.ClipRef(sha256=_sha(c),
                                                                                          size=len(c))))

    @st.composite
    def event(draw, ended: bool):
        start = draw(times)
        e = ingest_pb2.Event(event_id=draw(_hex(32)), label=draw(st.sampled_from(LABELS)), start_ns=start,
                             end_ns=start + draw(st.integers(0, 10**10)) if ended else 0,
                             score=draw(st.floats(0, 1, width=32)), classes=draw(classes), position=draw(pos),
                             backend="onnxruntime", model_sha256=draw(_hex(64)),
                             inference_ms=draw(st.floats(0, 100, width=32)),
                             embedding_f16=draw(st.sampled_from([b"", bytes(2048)])))
        if ended and draw(st.booleans()):
            e.clip.CopyFrom(draw(clip))
        return e

    @st.composite
    def alert(draw):
        start = draw(times)
        return ingest_pb2.DeviceAlert(rule="distress", labels=draw(st.lists(st.sampled_from(LABELS), min_size=1,
                                                                            max_size=3)),
                                      start_ns=start, end_ns=start + draw(st.integers(0, 10**10)),
                                      event_ids=draw(st.lists(_hex(32), max_size=3)), position=draw(pos))

    @st.composite
    def batch(draw):
        first = draw(st.integers(1, 8) | st.integers(1, 1000))  # shifted when sent; small ones overlap: replays
        records = []
        for i in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["event", "event_end", "alert"]))
            body = draw(alert()) if kind == "alert" else draw(event(kind == "event_end"))
            records.append(ingest_pb2.Record(seq=first + i, created_ns=draw(times), **{kind: body}))
        low_water = draw(st.integers(max(1, first - 3), first) | st.just(1))  # the outbox's lowest seq, or a gap
        return req(batch=ingest_pb2.RecordBatch(low_water=low_water, records=records))

    @st.composite
    def upload(draw):
        data = draw(st.sampled_from(CLIPS))
        cut = draw(st.integers(1, len(data)))
        chunks = [req(clip_chunk=ingest_pb2.ClipChunk(sha256=_sha(data), total_size=len(data), offset=off,
                                                      data=data[off:end]))
                  for off, end in ((0, cut), (cut, len(data))) if end > off]
        e = draw(event(True))
        e.clip.CopyFrom(common_pb2.Clip(format="flac", sample_rate=16000, ref=common_pb2.ClipRef(sha256=_sha(data),
                                                                                                size=len(data))))
        seq = draw(st.integers(1, 1000))
        return chunks + [req(batch=ingest_pb2.RecordBatch(low_water=seq, records=[
            ingest_pb2.Record(seq=seq, created_ns=NOW_NS, event_end=e)]))]

    heartbeat = st.builds(ingest_pb2.Heartbeat, sent_ns=times, outbox_depth=st.integers(0, 10**6),
                          outbox_dropped=st.integers(0, 10**6),
                          figures=st.dictionaries(st.sampled_from(["rtf", "cpu_percent"]), st.floats(0, 100)),
                          info=st.dictionaries(st.just("backend"), st.sampled_from(["onnxruntime", "tflite"])))
    single = st.one_of(batch(), heartbeat.map(lambda h: req(heartbeat=h)),
                       st.just(req(hello=ingest_pb2.Hello(device_id=DEVICE, agent="fuzz/2"))))
    return single, upload()


def ingest_requests() -> st.SearchStrategy:
    """Lists of IngestRequests: from the schema alone, with plausible values mixed in, or valid ones with one field
    changed (the single-message kinds come as lists of one)."""
    def build():
        schema = st.one_of(GENERIC.of(_ingest_request()), PLAUSIBLE.of(_ingest_request()))
        single, uploads = valid_ingest_requests()
        return st.one_of(*(s.map(lambda m: [m]) for s in (schema, one_field_changed(single, GENERIC), single)),
                         uploads)

    return st.deferred(build)


def _query_methods(streaming_subscribe: bool):
    from edgert.v1 import query_pb2

    ms = query_pb2.DESCRIPTOR.services_by_name["Query"].methods
    return [m for m in ms if (m.name == "Subscribe") == streaming_subscribe]


AUTH = st.sampled_from(["good"] * 9 + ["none", "wrong", "device"])


def query_calls(subscribe: bool, raw: bool) -> st.SearchStrategy:
    """(method, request bytes, which credentials) for the Query methods."""
    def one(m):
        body = messages(lambda: m.input_type)
        body = raw_bytes(body) if raw else body.map(lambda msg: msg.SerializeToString())
        return st.tuples(st.just(m), body, AUTH)

    return st.deferred(lambda: st.sampled_from(_query_methods(subscribe)).flatmap(one))


# ---------------------------------------------------------------------------------------------- the server
@dataclass
class Cloud:
    srv: ServerProcess
    url: str
    tokens: dict                # device -> its token, for DEVICES
    query_token: Optional[str]  # a Query credential, when the server needs one
    channel: grpc.Channel
    current: int = 0            # DEVICES[current] is the device of the next fuzzed Ingest stream
    retired: int = 0
    marks: collections.Counter = field(default_factory=collections.Counter)  # device -> highest ack seen

    @property
    def device(self) -> str:
        return DEVICES[self.current]

    def device_md(self):
        return (("authorization", f"Bearer {self.tokens[self.device]}"),)

    def note_acks(self, responses) -> None:
        """Follow the device's watermark; retire the device when it is too high to shift seqs over."""
        acks = [r.ack.seq for r in responses if r.HasField("ack") and r.ack.device_id == self.device]
        self.marks[self.device] = max([self.marks[self.device], *acks])
        if self.marks[self.device] > RETIRE_AT:
            self.current, self.retired = (self.current + 1) % len(DEVICES), self.retired + 1

    def query_md(self, auth: str = "good"):
        if auth == "none":
            return None
        if auth == "wrong":
            return (("authorization", "Bearer erq_" + "0" * 43),)
        if auth == "device":  # a device's token is never a Query credential
            return self.device_md()
        return (("authorization", f"Bearer {self.query_token}"),) if self.query_token else None


def _start_server(url: str, tmp) -> tuple[ServerProcess, Optional[str]]:
    """The server with Query credentials required, so the fuzz goes through the auth check and past it: a Query
    user's token where the server has users (`users add`), else the older single --query-token."""
    env = env_with_repo()
    kw: dict = {}
    token: Optional[str] = None
    if "open_query" in inspect.signature(ServerProcess).parameters:
        out = cloud_cli("users", "add", "fuzz-reader", "--role", "reader", "--db", url).stdout
        token = out.strip().splitlines()[-1]  # the token is the last line
        kw["open_query"] = False
    else:
        token = "qt_" + secrets.token_hex(16)
        env["CLOUD_SVC__QUERY_TOKEN"] = token
    srv = ServerProcess(url, clips=str(tmp / "clips"), log_path=tmp / "server.log", env=env, **kw)
    srv.start()
    return srv, token


def _add_devices(url: str, names: list[str]) -> dict[str, str]:
    """Register the pool in one go (`devices add` is a process per device); the server finds them by token."""
    from cloud_svc.db import make_engine
    from cloud_svc.store import Store

    store = Store(make_engine(url))
    try:
        return store.devices.add_devices(names)
    finally:
        store.close()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    from edgert import protos_build

    protos_build.build()  # no-op when current
    tmp = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{tmp / 'cloud.db'}"
    srv, qtoken = _start_server(url, tmp)
    ch = grpc.insecure_channel(srv.target, options=[("grpc.max_send_message_length", 64 << 20),
                                                    ("grpc.max_receive_message_length", 64 << 20)])
    try:
        yield Cloud(srv, url, _add_devices(url, DEVICES), qtoken, ch)
    finally:
        ch.close()
        srv.terminate()
        print(TALLY.report())


LOG_RECORD = re.compile(r"^(?=\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)", re.M)


def tracebacks(log_path) -> list[str]:
    """The server log's records (a timestamped line and what follows it) with a traceback that no known bug
    explains."""
    records = LOG_RECORD.split(log_path.read_text(errors="replace"))
    return [r for r in records if TRACEBACK in r and not any(b.log in r for b in KNOWN_BUGS)]


# ---------------------------------------------------------------------------------------------- ingest
def _parse(body: bytes):
    """The IngestRequest the server will see in these bytes (the same protobuf runtime), or None."""
    from edgert.v1 import ingest_pb2

    try:
        return ingest_pb2.IngestRequest.FromString(body)
    except Exception:  # noqa: BLE001 - DecodeError and friends, as the server's tolerant deserializer
        return None


def _foreign_hello(msg, device: str) -> bool:
    return msg is not None and msg.WhichOneof("msg") == "hello" and msg.hello.device_id != device


def expected_end(bodies: list[bytes], device: str) -> tuple[set, int]:
    """The statuses a stream of these bodies may end with (ingest.proto: a Hello for another device ends it with
    PERMISSION_DENIED, a message over the size limit with RESOURCE_EXHAUSTED; everything else is answered
    in-band and the stream ends OK when the device half-closes), and how many bodies the server reads."""
    never = len(bodies)
    over = next((i for i, b in enumerate(bodies) if len(b) > MAX_MESSAGE), never)
    foreign = next((i for i, b in enumerate(bodies) if _foreign_hello(_parse(b), device)), never)
    if over == foreign == never:
        return {C.OK}, never
    ends = {C.PERMISSION_DENIED} if foreign < over else set()
    if over < never:  # the transport refuses it as it arrives, maybe before an earlier Hello was handled
        ends.add(C.RESOURCE_EXHAUSTED)
    return ends, min(over, foreign) + 1


def _flat(lists: list[list]) -> list:
    return [m for ms in lists for m in ms]


def for_device(msgs: list, device: str, shift: int) -> list:
    """The messages as `device` sends them: its Hellos name it (DEVICE stands for it), and so does every other Hello
    but a last one (a Hello for another device ends the stream, so anywhere else it would cut the fuzz short); seqs
    and low_waters in [1, FRESH_SEQS) of its batches are moved up by `shift`, past its watermark."""
    from edgert.v1 import ingest_pb2

    def up(n: int) -> int:
        return n + shift if 1 <= n < FRESH_SEQS else n

    out = []
    for i, m in enumerate(msgs):
        which = m.WhichOneof("msg")
        if which == "hello" and (m.hello.device_id == DEVICE or i < len(msgs) - 1):
            m = ingest_pb2.IngestRequest(hello=m.hello)
            m.hello.device_id = device
        elif which == "batch" and shift:
            m = ingest_pb2.IngestRequest(batch=m.batch)
            m.batch.low_water = up(m.batch.low_water)
            for r in m.batch.records:
                r.seq = up(r.seq)
        out.append(m)
    return out


def run_stream(cloud: Cloud, bodies: list[bytes], *, hello: bool):
    """One Ingest stream: [a valid Hello], the bodies, then an end marker (an empty IngestRequest, which is always
    answered in-band with a Reject on "msg"). Returns (responses, final status, details)."""
    from edgert.v1 import ingest_pb2

    hello_ = ingest_pb2.Hello(device_id=cloud.device, agent="fuzz/1")
    first = ingest_pb2.IngestRequest(hello=hello_).SerializeToString()
    reqs = ([first] if hello else []) + bodies + [END_MARKER]
    call = cloud.channel.stream_stream(INGEST, request_serializer=None,
                                       response_deserializer=ingest_pb2.IngestResponse.FromString)(
        iter(reqs), metadata=cloud.device_md(), timeout=60)
    responses = []
    try:
        for r in call:
            responses.append(r)
        code, details = C.OK, ""
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details()
    return responses, code, details


def check_stream(cloud: Cloud, name: str, bodies: list[bytes], responses, code, details, *, hello: bool) -> None:
    from edgert.v1 import ingest_pb2

    device = cloud.device
    cloud.note_acks(responses)
    ends, read = expected_end(bodies, device)
    TALLY.sent[name] += read
    TALLY.statuses[("Ingest.Stream", code.name)] += 1
    bug = known_bug(code, details) if code not in ends else None
    if bug is not None:
        TALLY.known[bug.what] += 1
        return
    assert code in ALLOWED, f"the stream ended with {code.name}: {details}"
    assert code in ends, f"the stream ended with {code.name} ({details}), not {' or '.join(c.name for c in ends)}"
    if code == C.OK:
        # The stream stays open after a bad message, so a stream that ended OK has answered every one: each
        # undecodable body with one "(message)" reject, each body without a msg (and the end marker, last) with one
        # "msg" reject.
        parsed = [_parse(b) for b in bodies]
        assert responses and responses[-1].HasField("reject") and responses[-1].reject.field == "msg", \
            f"the stream ended OK before the end marker was answered; last answer: {responses[-1:]}"
        fields = collections.Counter(r.reject.field for r in responses if r.HasField("reject"))
        assert fields["(message)"] == sum(p is None for p in parsed), fields
        assert fields["msg"] == sum(p is not None and p.WhichOneof("msg") is None for p in parsed) + 1, fields
    if hello and responses:
        assert responses[0].HasField("ack"), f"the Hello was answered with {responses[0]}"
    scoped = "scope" in ingest_pb2.Reject.DESCRIPTOR.fields_by_name
    for r in responses:
        which = r.WhichOneof("msg")
        assert which in ("ack", "config", "reject"), r
        if which == "ack":
            assert r.ack.device_id == device, r
        elif which == "reject":
            j = r.reject
            assert j.code in REJECT_CODES, f"reject code {j.code} is not a documented one: {j}"
            assert j.field, f"a reject names no field: {j}"
            if scoped:
                check_scope(j)
            scope = ingest_pb2.Reject.Scope.Name(j.scope) if scoped else "-"
            TALLY.rejects[(REJECT_CODES[j.code], scope, j.field)] += 1


def check_scope(j) -> None:
    """Reject.Scope as ingest.proto documents it: what the reject is about, and the seqs that name it."""
    from edgert.v1 import ingest_pb2

    R = ingest_pb2.Reject
    assert j.scope in (R.SCOPE_MESSAGE, R.SCOPE_BATCH, R.SCOPE_RECORD, R.SCOPE_CLIP), f"scope: {j}"
    if j.scope in (R.SCOPE_RECORD, R.SCOPE_CLIP):
        assert j.seq >= 1 and j.field.startswith("batch.records["), f"a {R.Scope.Name(j.scope)} reject: {j}"
    else:
        assert j.seq == 0, f"a {R.Scope.Name(j.scope)} reject with a seq: {j}"
    if j.scope != R.SCOPE_BATCH:
        assert j.first_seq == j.last_seq == 0, f"a {R.Scope.Name(j.scope)} reject with first/last seq: {j}"
    if j.code == C.FAILED_PRECONDITION.value[0]:
        assert j.scope == R.SCOPE_CLIP and j.field.endswith(".clip.ref.sha256"), f"FAILED_PRECONDITION: {j}"


def test_generated_ingest_messages_after_a_hello_are_acked_or_rejected_in_band(cloud):
    @settings(FUZZ, max_examples=INGEST_EXAMPLES)
    @given(msgs=st.lists(ingest_requests(), min_size=1, max_size=8).map(_flat))
    def fuzz(msgs):
        note(f"sent as {cloud.device}, seqs under {FRESH_SEQS} shifted by {cloud.marks[cloud.device]}")
        bodies = [m.SerializeToString() for m in for_device(msgs, cloud.device, cloud.marks[cloud.device])]
        check_stream(cloud, "ingest", bodies, *run_stream(cloud, bodies, hello=True), hello=True)

    fuzz()
    TALLY.done.add("ingest")


def test_raw_bytes_on_an_ingest_stream_are_rejected_in_band(cloud):
    @settings(FUZZ, max_examples=INGEST_RAW_EXAMPLES)
    @given(bodies=st.lists(raw_bytes(messages(_ingest_request)), min_size=1, max_size=10), hello=st.booleans())
    def fuzz(bodies, hello):
        check_stream(cloud, "ingest_raw", bodies, *run_stream(cloud, bodies, hello=hello), hello=hello)

    fuzz()
    TALLY.done.add("ingest_raw")


# ---------------------------------------------------------------------------------------------- query
def run_queries(cloud: Cloud, name: str, calls) -> None:
    """Start every call at once (Subscribe only ends at its deadline), then collect and check each."""
    from google.protobuf import message_factory

    started = []
    for m, body, auth in calls:
        path = f"/edgert.v1.Query/{m.name}"
        out = message_factory.GetMessageClass(m.output_type).FromString
        timeout = SUBSCRIBE_DEADLINE_S if m.name == "Subscribe" else 30
        if m.server_streaming:
            call = cloud.channel.unary_stream(path, request_serializer=None, response_deserializer=out)(
                body, metadata=cloud.query_md(auth), timeout=timeout)
        else:
            call = cloud.channel.unary_unary(path, request_serializer=None, response_deserializer=out).future(
                body, metadata=cloud.query_md(auth), timeout=timeout)
        started.append((m, body, auth, call))
    for m, body, auth, call in started:
        try:
            if m.server_streaming:
                for _ in call:
                    pass
            else:
                call.result()
            code, details = C.OK, ""
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
        TALLY.sent[name] += 1
        TALLY.statuses[(f"Query.{m.name}", code.name)] += 1
        check_query(cloud, m.name, body, auth, code, details)


def check_query(cloud: Cloud, method: str, body: bytes, auth: str, code, details: str) -> None:
    call = f"Query.{method}({body[:200]!r}{'...' if len(body) > 200 else ''}) with {auth} credentials"
    bug = known_bug(code, details) if auth == "good" else None
    if bug is not None:
        TALLY.known[bug.what] += 1
        return
    assert code in (SUBSCRIBE_ALLOWED if method == "Subscribe" else ALLOWED), f"{call}: {code.name}: {details}"
    if auth == "good":
        assert code != C.UNAUTHENTICATED, f"{call}: a valid credential was refused: {details}"
    elif cloud.query_token:  # query.proto: checked before anything else, whatever the request
        assert code == C.UNAUTHENTICATED, f"{call}: {code.name}, not UNAUTHENTICATED: {details}"


def fuzz_queries(cloud: Cloud, name: str, calls: st.SearchStrategy, max_examples: int, sizes: tuple[int, int]) -> None:
    @settings(FUZZ, max_examples=max_examples)
    @given(st.lists(calls, min_size=sizes[0], max_size=sizes[1]))
    def fuzz(drawn):
        run_queries(cloud, name, drawn)

    fuzz()
    TALLY.done.add(name)


def test_generated_query_requests_end_with_an_allowed_status(cloud):
    fuzz_queries(cloud, "query", query_calls(subscribe=False, raw=False), QUERY_EXAMPLES, (1, 10))


def test_raw_bytes_as_query_requests_end_with_an_allowed_status(cloud):
    fuzz_queries(cloud, "query_raw", query_calls(subscribe=False, raw=True), QUERY_RAW_EXAMPLES, (1, 10))


def test_generated_and_raw_subscribe_requests_end_with_an_allowed_status(cloud):
    calls = st.one_of(query_calls(subscribe=True, raw=False), query_calls(subscribe=True, raw=True))
    fuzz_queries(cloud, "subscribe", calls, SUBSCRIBE_EXAMPLES, (10, 40))


# ---------------------------------------------------------------------------------------------- known bugs
# The smallest reproducers of the bugs this fuzz found (now fixed): a uint64 over int64 reached the database and a
# Query request that did not parse ended with UNKNOWN. A new bug goes into KNOWN_BUGS with a strict xfail here.
BIG = 1 << 63  # one past the largest signed 64-bit integer, which is what SQLite and MySQL BIGINT store


def _ingest(cloud: Cloud, *msgs) -> tuple[list, grpc.StatusCode, str]:
    return run_stream(cloud, [m.SerializeToString() for m in msgs], hello=False)


@pytest.mark.parametrize("where", ["seq", "low_water"])
def test_fixed_a_batch_with_a_seq_over_int64_is_rejected_in_band(cloud, where):
    from edgert.v1 import ingest_pb2

    batch = ingest_pb2.RecordBatch(low_water=1, records=[ingest_pb2.Record(seq=BIG)])
    if where == "low_water":
        batch = ingest_pb2.RecordBatch(low_water=BIG, records=[ingest_pb2.Record(seq=BIG)])
    responses, code, details = _ingest(cloud, ingest_pb2.IngestRequest(batch=batch))
    # was: UNAVAILABLE "commit failed: Python int too large to convert to SQLite INTEGER", which the edge retried
    # forever, and every batch of other devices committed in the same group failed with it
    assert code == C.OK, f"{code.name}: {details}"
    assert any(r.HasField("reject") and r.reject.field.startswith("batch.") for r in responses), responses


def test_fixed_a_heartbeat_count_over_int64_is_rejected_in_band_or_stored(cloud):
    from edgert.v1 import ingest_pb2, query_pb2

    device = f"fuzz-hb-{uuid.uuid4().hex[:6]}"
    token = add_device(cloud.url, device)
    hb = ingest_pb2.IngestRequest(heartbeat=ingest_pb2.Heartbeat(sent_ns=time.time_ns(), outbox_depth=BIG))
    call = cloud.channel.stream_stream(INGEST, request_serializer=None,
                                       response_deserializer=ingest_pb2.IngestResponse.FromString)(
        iter([hb.SerializeToString(), END_MARKER]), metadata=(("authorization", f"Bearer {token}"),), timeout=30)
    rejected = any(r.HasField("reject") and r.reject.field.startswith("heartbeat") for r in call)

    def stored() -> bool:
        devs = cloud.channel.unary_unary("/edgert.v1.Query/ListDevices",
                                         request_serializer=query_pb2.ListDevicesRequest.SerializeToString,
                                         response_deserializer=query_pb2.ListDevicesResponse.FromString)(
            query_pb2.ListDevicesRequest(), metadata=cloud.query_md(), timeout=10).devices
        return any(d.device_id == device and d.last_heartbeat_ns for d in devs)

    # was: neither; its commit failed in the committer (a traceback in the log), and so did every batch that
    # shares that commit
    assert rejected or wait_for(stored, timeout=3.0)


OVERFLOWING_QUERIES = {  # method -> a request with a uint64 over int64
    "ListEvents": lambda q: q.ListEventsRequest(after_id=BIG),
    "ListEventsPage": lambda q: q.ListEventsRequest(page_token=_page_token(BIG)),
    "GetClip": lambda q: q.GetClipRequest(device_id=DEVICE, seq=BIG),
    "ListAlerts": lambda q: q.ListAlertsRequest(after_id=BIG),
    "Subscribe": lambda q: q.SubscribeRequest(after_id=BIG),
}


def _query_once(cloud: Cloud, method: str, body: bytes) -> tuple[grpc.StatusCode, str]:
    from edgert.v1 import query_pb2

    m = query_pb2.DESCRIPTOR.services_by_name["Query"].methods_by_name[method]
    path, timeout = f"/edgert.v1.Query/{method}", SUBSCRIBE_DEADLINE_S if method == "Subscribe" else 10
    try:
        if m.server_streaming:
            list(cloud.channel.unary_stream(path, request_serializer=None, response_deserializer=None)(
                body, metadata=cloud.query_md(), timeout=timeout))
        else:
            cloud.channel.unary_unary(path, request_serializer=None, response_deserializer=None)(
                body, metadata=cloud.query_md(), timeout=timeout)
        return C.OK, ""
    except grpc.RpcError as exc:
        return exc.code(), exc.details()


@pytest.mark.parametrize("method", sorted(OVERFLOWING_QUERIES))
def test_fixed_a_query_id_over_int64_is_answered_not_unknown(cloud, method):
    from edgert.v1 import query_pb2

    code, details = _query_once(cloud, method, OVERFLOWING_QUERIES[method](query_pb2).SerializeToString())
    # was: UNKNOWN "Unexpected <class 'OverflowError'>: Python int too large to convert to SQLite INTEGER"
    assert code in {C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND, C.DEADLINE_EXCEEDED}, f"{code.name}: {details}"


@pytest.mark.parametrize("method", ["GetAgreement", "GetClip", "ListAlerts", "ListDevices", "ListEvents",
                                    "ListEventsPage", "Subscribe"])
def test_fixed_query_request_bytes_that_do_not_parse_are_invalid_argument(cloud, method):
    code, details = _query_once(cloud, method, b"\xff")
    # was: UNKNOWN "Unexpected <class 'google.protobuf.message.DecodeError'>: Error parsing message ..."
    assert code == C.INVALID_ARGUMENT, f"{code.name}: {details}"


# ---------------------------------------------------------------------------------------------- afterwards
def test_after_the_fuzz_the_server_stores_acks_and_lists_a_real_event_and_logged_no_traceback(cloud):
    from edgert.v1 import common_pb2, ingest_pb2, query_pb2

    print(TALLY.report())
    assert cloud.srv.proc.poll() is None, "the server died"
    list_events = cloud.channel.unary_stream("/edgert.v1.Query/ListEvents",
                                             request_serializer=query_pb2.ListEventsRequest.SerializeToString,
                                             response_deserializer=query_pb2.EventInfo.FromString)
    fuzzed = list(list_events(query_pb2.ListEventsRequest(device_ids=DEVICES), metadata=cloud.query_md(), timeout=30))
    print(f"events stored from fuzzed records: {len(fuzzed)}; devices retired: {cloud.retired}")

    token = add_device(cloud.url, CHECK_DEVICE)
    event_id = uuid.uuid4().hex
    ev = ingest_pb2.Event(event_id=event_id, label="glass_break", start_ns=time.time_ns(), score=0.5,
                          classes=[common_pb2.ClassScore(name="Glass", score=0.5)])
    batch = ingest_pb2.IngestRequest(batch=ingest_pb2.RecordBatch(low_water=1, records=[
        ingest_pb2.Record(seq=1, created_ns=time.time_ns(), event=ev)]))
    call = cloud.channel.stream_stream(INGEST, request_serializer=ingest_pb2.IngestRequest.SerializeToString,
                                       response_deserializer=ingest_pb2.IngestResponse.FromString)(
        iter([batch]), metadata=(("authorization", f"Bearer {token}"),), timeout=30)
    answers = list(call)
    assert any(r.HasField("ack") and r.ack.seq == 1 and r.ack.device_id == CHECK_DEVICE for r in answers), answers

    found = list(list_events(query_pb2.ListEventsRequest(device_ids=[CHECK_DEVICE]), metadata=cloud.query_md(),
                             timeout=30))
    assert [e.event_id for e in found] == [event_id]

    assert not tracebacks(cloud.srv.log_path), tracebacks(cloud.srv.log_path)[0]
    assert cloud.srv.terminate() == 0, "the server did not stop cleanly on SIGTERM"
    assert not tracebacks(cloud.srv.log_path), tracebacks(cloud.srv.log_path)[0]
    if TALLY.done >= {"ingest", "ingest_raw", "query", "query_raw", "subscribe"}:
        assert sum(TALLY.sent.values()) >= MIN_TOTAL, TALLY.report()
