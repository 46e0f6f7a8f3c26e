"""Calibration's extra packs (`calibrate --extra`): what each one added is reported per pack, its ordinary clips
counted as negatives, and without one the provenance is what it was."""
from __future__ import annotations

import numpy as np
import pytest

from edge_rt.evaluation import calibrate as C
from edge_rt.evaluation.match import TruthSpan
from edge_rt.evaluation.material import MaterialError, Recording, extra_recordings
from edge_rt.evaluation.windows import Analysed


def clip(label: str, seconds: float, pack: str | None, truth: bool) -> Recording:
    n = int(seconds / 0.48)
    a = Analysed(seconds, np.zeros((n, 521), np.float32), np.zeros((n, 1024), np.float32),
                 np.full(n, -20.0, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32))
    meta = {"pack": pack} if pack else {}
    return Recording(f"{label}.wav", "clip", a, [TruthSpan(label, 0.0, seconds)] if truth else [], label=label,
                     meta=meta)


def test_each_extra_pack_reports_its_clips_events_and_negatives(tmp_path):
    (tmp_path / "fleet").mkdir()
    (tmp_path / "fleet" / "labels.csv").write_text("file,label\n")
    recs = [clip("glass_break", 3.6, str(tmp_path / "fleet"), True), clip("background", 7.2, str(tmp_path / "fleet"),
                                                                          False),
            clip("background", 1.0, str(tmp_path / "fleet"), False), clip("siren", 3.6, None, True)]
    [x] = C.extra_material(recs)
    assert (x["pack"], x["clips"], x["events"], x["negatives"]) == ("fleet", 3, {"glass_break": 1}, 2)
    assert x["hours"] == pytest.approx(11.8 / 3600, abs=1e-4) and len(x["labels_sha256"]) == 64
    prov = C.provenance(recs, [], 7, None, "0" * 64, {})
    assert prov["material"]["extra"] == [x]


def test_without_extra_packs_the_provenance_is_unchanged():
    prov = C.provenance([clip("siren", 3.6, None, True)], [], 7, None, "0" * 64, {})
    assert "extra" not in prov["material"]


def test_a_pack_label_that_is_neither_an_event_nor_ordinary_sound_is_refused_before_any_audio(tmp_path):
    (tmp_path / "audio" / "kazoo").mkdir(parents=True)
    (tmp_path / "audio" / "kazoo" / "k.wav").write_bytes(b"never read")
    with pytest.raises(MaterialError, match=r"\['kazoo'\]"):
        extra_recordings([tmp_path], None, ["glass_break", "siren"], progress=False)
