"""Proto -> domain validation: every problem names its field; bad records become dead letters, bad clips cost only
the clip, bad batches are refused by the seqs they carry."""
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
    """The event, and the problem of its clip when it was dropped."""
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


def test_positions_are_checked_and_a_good_clip_is_kept(pb):
    common_pb2, _ = pb
    with pytest.raises(InvalidMessage, match="e.position.lat"):
        convert_event(good(pb, position=common_pb2.Position(lat=91, lon=0)))
    e, problem = convert_event(good(pb, clip=common_pb2.Clip(format="flac", sample_rate=16000, inline=b"abc"),
                                    position=common_pb2.Position(lat=1.5, lon=-2.5), end_ns=time.time_ns() + 10**9),
                               ended=True)
    assert problem is None and e.clip.data == b"abc" and (e.lat, e.lon) == (1.5, -2.5) and e.clip_dropped is None


@pytest.mark.parametrize("ended,clip,field,says", [
    (False, dict(format="flac", sample_rate=16000, inline=b"x"), "e.clip", "clips come with event_end"),
    (True, dict(format="mp3", sample_rate=16000, inline=b"x"), "e.clip.format", "must be one of"),
    (True, dict(format="flac", sample_rate=16000, inline=b"x" * 1001), "e.clip.inline",
     "1001 bytes inline, over max_inline_clip_bytes 1000"),
    (True, dict(format="flac", sample_rate=16000, ref=dict(sha256="nope", size=5)), "e.clip.ref.sha256", "hex"),
    (True, dict(format="flac", sample_rate=16000, ref=dict(sha256="a" * 64, size=10_001)), "e.clip.ref.size",
     "max_clip_bytes 10000"),
    (True, dict(format="flac", sample_rate=16000), "e.clip.data", "inline bytes or a ref"),
])
def test_a_bad_clip_costs_only_the_clip_and_the_event_says_why(pb, ended, clip, field, says):
    common_pb2, _ = pb
    if "ref" in clip:
        clip["ref"] = common_pb2.ClipRef(**clip["ref"])
    ev = good(pb, clip=common_pb2.Clip(**clip), **(dict(end_ns=time.time_ns() + 10**9) if ended else {}))
    e, problem = convert_event(ev, ended=ended)
    assert problem is not None and problem.field == field and says in problem.detail
    assert e.clip is None and e.event_id == ev.event_id and e.label == "glass_break"
    assert e.clip_dropped.startswith("clip rejected: ") and says in e.clip_dropped and len(e.clip_dropped) <= 128


def test_a_bad_event_field_wins_over_a_bad_clip(pb):
    common_pb2, _ = pb
    ev = good(pb, label="two words", end_ns=time.time_ns() + 10**9,
              clip=common_pb2.Clip(format="flac", sample_rate=16000, inline=b"x" * 1001))
    with pytest.raises(InvalidMessage) as err:
        convert_event(ev, ended=True)
    assert err.value.field == "e.label"


def test_a_bad_record_is_dead_lettered_but_a_bad_batch_is_refused(pb):
    from cloud_svc.servicer import convert

    _, ingest_pb2 = pb
    rec = lambda seq, **kw: ingest_pb2.Record(seq=seq, created_ns=time.time_ns(), event=good(pb, **kw))  # noqa: E731
    batch = ingest_pb2.RecordBatch(low_water=1, records=[rec(1), rec(2, label=""), rec(3)])
    out, problems = convert.batch_in("d", batch, max_records=10, max_inline=10, max_clip=10)
    assert [r.kind for r in out.records] == ["event", "reject", "event"]
    assert problems == [convert.Problem(2, problems[0].error, clip_only=False)]
    assert problems[0].error.field == "batch.records[1].event.label"
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


def test_a_record_with_an_oversized_inline_clip_is_stored_without_it_and_named(pb):
    from cloud_svc.servicer import convert

    common_pb2, ingest_pb2 = pb
    start = good(pb)
    end = good(pb, event_id=start.event_id, end_ns=start.start_ns + 10**9,
               clip=common_pb2.Clip(format="flac", sample_rate=16000, inline=b"x" * 11))
    batch = ingest_pb2.RecordBatch(low_water=1, records=[ingest_pb2.Record(seq=1, created_ns=1, event=start),
                                                         ingest_pb2.Record(seq=2, created_ns=1, event_end=end)])
    out, problems = convert.batch_in("d", batch, max_records=10, max_inline=10, max_clip=100)
    assert [r.kind for r in out.records] == ["event", "event_end"]
    assert out.records[1].payload.clip is None and "max_inline_clip_bytes 10" in out.records[1].payload.clip_dropped
    [p] = problems
    assert p.seq == 2 and p.clip_only and p.error.field == "batch.records[1].event_end.clip.inline"
    r = convert.record_reject(3, p).reject
    assert (r.scope, r.seq, r.field) == (ingest_pb2.Reject.SCOPE_CLIP, 2, "batch.records[1].event_end.clip.inline")


def test_a_ref_to_a_clip_never_uploaded_is_dropped_with_failed_precondition(pb):
    from cloud_svc import errors
    from cloud_svc.servicer import convert

    common_pb2, ingest_pb2 = pb
    refs = ["a" * 64, "b" * 64]
    recs = [ingest_pb2.Record(seq=5 + i, created_ns=1, event_end=good(
        pb, end_ns=time.time_ns() + 10**9,
        clip=common_pb2.Clip(format="flac", sample_rate=16000, ref=common_pb2.ClipRef(sha256=sha, size=5))))
        for i, sha in enumerate(refs)]
    out, problems = convert.batch_in("d", ingest_pb2.RecordBatch(low_water=5, records=recs), max_records=10,
                                     max_inline=10, max_clip=100)
    assert problems == []
    [p] = convert.drop_missing_clips(out, lambda sha: sha == "a" * 64, "clip upload missing")
    assert p.seq == 6 and p.clip_only and p.error.field == "batch.records[1].event_end.clip.ref.sha256"
    assert errors.status_of(p.error).name == "FAILED_PRECONDITION" and "b" * 64 in p.error.detail
    kept, dropped = out.records[0].payload, out.records[1].payload
    assert kept.clip.sha256 == "a" * 64 and kept.clip_dropped is None
    assert dropped.clip is None and dropped.clip_dropped == "clip upload missing"


@pytest.mark.parametrize("seqs,low_water,field,first,last", [
    ([], 1, "batch.records", 0, 0),                  # no records
    ([7, 9], 8, "batch.low_water", 7, 9),            # low_water above the first seq
    ([9, 7], 1, "batch.records[1].seq", 9, 7),       # seqs not ascending: named as sent
])
def test_a_batch_reject_names_the_batch_by_its_first_and_last_seq(pb, seqs, low_water, field, first, last):
    from cloud_svc.servicer import convert

    _, ingest_pb2 = pb
    batch = ingest_pb2.RecordBatch(low_water=low_water, records=[
        ingest_pb2.Record(seq=s, created_ns=1, event=good(pb)) for s in seqs])
    with pytest.raises(InvalidMessage) as err:
        convert.batch_in("d", batch, max_records=10, max_inline=10, max_clip=10)
    r = convert.batch_reject(3, err.value, batch).reject
    assert (r.scope, r.first_seq, r.last_seq, r.seq, r.field) == (ingest_pb2.Reject.SCOPE_BATCH, first, last, 0,
                                                                  field)
