"""Proto -> domain validation: every problem names its field; bad records become dead letters."""
from __future__ import annotations

import math
import time
import uuid

import pytest

from cloud_svc.errors import InvalidMessage


@pytest.fixture(scope="module")
def pb():
    from edgert.v1 import common_pb2, ingest_pb2

    return common_pb2, ingest_pb2


def good(pb, **kw):
    common_pb2, ingest_pb2 = pb
    fields = dict(event_id=uuid.uuid4().hex, label="glass_break", start_ns=time.time_ns(), score=0.7,
                  classes=[common_pb2.ClassScore(name="Glass", score=0.7)])
    fields.update(kw)
    return ingest_pb2.Event(**fields)


def convert_event(ev, ended=False):
    from cloud_svc.servicer import convert

    return convert.event_in(ev, "e", ended=ended, max_inline=1000, max_clip=10_000)


@pytest.mark.parametrize("change,field", [
    (dict(event_id="ABC"), "e.event_id"),
    (dict(label=""), "e.label"),
    (dict(label="two words"), "e.label"),
    (dict(start_ns=0), "e.start_ns"),
    (dict(score=math.nan), "e.score"),
    (dict(score=1.5), "e.score"),
    (dict(end_ns=5), "e.end_ns"),
    (dict(inference_ms=-1.0), "e.inference_ms"),
    (dict(embedding_f16=b"123"), "e.embedding_f16"),
    (dict(model_sha256="XYZ"), "e.model_sha256"),
    (dict(backend="x" * 65), "e.backend"),
])
def test_an_invalid_event_field_is_named(pb, change, field):
    with pytest.raises(InvalidMessage) as err:
        convert_event(good(pb, **change))
    assert err.value.field == field


def test_class_problems_name_the_class_index(pb):
    common_pb2, _ = pb
    ev = good(pb, classes=[common_pb2.ClassScore(name="ok", score=0.1), common_pb2.ClassScore(name="bad", score=-2)])
    with pytest.raises(InvalidMessage) as err:
        convert_event(ev)
    assert err.value.field == "e.classes[1].score"
    ev = good(pb, classes=[common_pb2.ClassScore(name="ok\n", score=0.1)])
    with pytest.raises(InvalidMessage, match=r"e.classes\[0\].name"):
        convert_event(ev)
    with pytest.raises(InvalidMessage, match="e.classes"):
        convert_event(good(pb, classes=[common_pb2.ClassScore(name="c", score=0.1)] * 21))


def test_positions_and_clips_are_checked(pb):
    common_pb2, _ = pb
    with pytest.raises(InvalidMessage, match="e.position.lat"):
        convert_event(good(pb, position=common_pb2.Position(lat=91, lon=0)))
    with pytest.raises(InvalidMessage, match="e.clip"):  # a start carries no clip
        convert_event(good(pb, clip=common_pb2.Clip(format="flac", sample_rate=16000, inline=b"x")))
    end = dict(end_ns=time.time_ns() + 10**9)
    with pytest.raises(InvalidMessage, match="e.clip.format"):
        convert_event(good(pb, clip=common_pb2.Clip(format="mp3", sample_rate=16000, inline=b"x"), **end), ended=True)
    with pytest.raises(InvalidMessage, match="e.clip.inline"):
        convert_event(good(pb, clip=common_pb2.Clip(format="flac", sample_rate=16000, inline=b"x" * 1001), **end),
                      ended=True)
    with pytest.raises(InvalidMessage, match="e.clip.ref.sha256"):
        convert_event(good(pb, clip=common_pb2.Clip(format="flac", sample_rate=16000,
                                                    ref=common_pb2.ClipRef(sha256="nope", size=5)), **end), ended=True)
    e = convert_event(good(pb, clip=common_pb2.Clip(format="flac", sample_rate=16000, inline=b"abc"),
                           position=common_pb2.Position(lat=1.5, lon=-2.5), **end), ended=True)
    assert e.clip.data == b"abc" and (e.lat, e.lon) == (1.5, -2.5)


def test_a_bad_record_is_dead_lettered_but_a_bad_batch_is_refused(pb):
    from cloud_svc.servicer import convert

    _, ingest_pb2 = pb
    rec = lambda seq, **kw: ingest_pb2.Record(seq=seq, created_ns=time.time_ns(), event=good(pb, **kw))  # noqa: E731
    batch = ingest_pb2.RecordBatch(low_water=1, records=[rec(1), rec(2, label=""), rec(3)])
    out, problems = convert.batch_in("d", batch, max_records=10, max_inline=10, max_clip=10)
    assert [r.kind for r in out.records] == ["event", "reject", "event"]
    assert problems[0][0] == 2 and problems[0][1].field == "batch.records[1].event.label"
    with pytest.raises(InvalidMessage, match=r"batch.records\[1\].seq"):
        convert.batch_in("d", ingest_pb2.RecordBatch(low_water=1, records=[rec(2), rec(2)]), max_records=10,
                         max_inline=10, max_clip=10)
    with pytest.raises(InvalidMessage, match="batch.records"):
        convert.batch_in("d", ingest_pb2.RecordBatch(low_water=1), max_records=10, max_inline=10, max_clip=10)
    with pytest.raises(InvalidMessage, match="batch.low_water"):
        convert.batch_in("d", ingest_pb2.RecordBatch(low_water=0, records=[rec(1)]), max_records=10, max_inline=10,
                         max_clip=10)
    nokind = ingest_pb2.RecordBatch(low_water=1, records=[ingest_pb2.Record(seq=1, created_ns=1)])
    out, problems = convert.batch_in("d", nokind, max_records=10, max_inline=10, max_clip=10)
    assert out.records[0].kind == "reject" and problems[0][1].field == "batch.records[0].kind"
