"""open_source: each spec string builds the right source with the right finite/realtime defaults."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from edge_rt.capture import DirSource, FileSource, GstSource, MicSource, RtspSource, Source, SynthSource, open_source
from edge_rt.errors import CaptureError, EdgeRtError, SourceNotFoundError, SourceSpecError


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(1600, np.float32), 16000)
    return path


def test_each_scheme_builds_its_source_with_the_contracts_finite_flag(wav):
    cases = [(f"file:{wav}", FileSource, True), (f"dir:{wav.parent}", DirSource, False),
             ("synth:quiet", SynthSource, True), ("gst:audiotestsrc num-buffers=3", GstSource, True),
             ("gst:audiotestsrc", GstSource, False), ("rtsp://cam.local/stream", RtspSource, False),
             ("mic:", MicSource, False)]
    for spec, kind, finite in cases:
        src = open_source(spec)
        assert isinstance(src, kind) and isinstance(src, Source), spec
        assert src.finite is finite and isinstance(src.description, str) and src.description, spec
        assert src.truth == [] or kind is SynthSource
        assert set(src.stats) >= {"nan_samples", "reconnects", "files"}
    assert open_source(f"dir:{wav.parent}", loop=False).finite


def test_stored_sources_run_fast_by_default_and_a_looping_dir_is_paced(wav):
    assert not open_source(f"file:{wav}").realtime and not open_source("synth:quiet").realtime
    assert open_source(f"file:{wav}", realtime=True).realtime
    assert open_source(f"dir:{wav.parent}").realtime and not open_source(f"dir:{wav.parent}", loop=False).realtime
    assert not open_source(f"dir:{wav.parent}", realtime=False).realtime


def test_a_bare_path_is_a_file_or_dir_source_and_a_missing_audio_file_is_not_found(wav):
    assert isinstance(open_source(str(wav)), FileSource)
    assert isinstance(open_source(str(wav.parent), loop=False), DirSource)
    with pytest.raises(SourceNotFoundError, match="gone.wav"):
        open_source(str(wav.parent / "gone.wav"))


@pytest.mark.parametrize("spec", ["", "   ", "ftp://x/y", "file:", "dir:", "nonsense", "/no/such/folder"])
def test_unusable_specs_are_spec_errors_listing_the_forms(spec):
    with pytest.raises(SourceSpecError) as info:
        open_source(spec)
    assert isinstance(info.value, CaptureError) and isinstance(info.value, EdgeRtError)
