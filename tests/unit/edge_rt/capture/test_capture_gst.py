"""gst: and rtsp:// sources run the real gst-launch-1.0 and read 16 kHz float32 from its stdout."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge_rt.capture import open_source
from edge_rt.capture.gst import GstSource, RtspSource, condense_gst_error, looks_finite, mask_url
from edge_rt.errors import CaptureError, PipelineError, SourceSpecError, StallError

SR = 16000
BUFFERS, SAMPLES_PER_BUFFER = 100, 1024  # audiotestsrc's default buffer size


def collect(src, stop: threading.Event | None = None) -> np.ndarray:
    chunks = []

    def sink(chunk):
        assert chunk.dtype == np.float32 and chunk.ndim == 1 and chunk.flags.c_contiguous and chunk.size > 0
        chunks.append(chunk)

    src.run(sink, stop or threading.Event())
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.fft.rfftfreq(audio.size, 1 / SR)[np.argmax(spectrum)])


def test_audiotestsrc_sine_ends_cleanly_with_every_sample_and_a_440_hz_peak():
    src = open_source(f"gst:audiotestsrc num-buffers={BUFFERS} wave=sine freq=440")
    assert src.finite  # num-buffers says where it ends
    audio = collect(src)
    # Unconstrained, audiotestsrc negotiates 16 kHz mono directly: exactly N x samplesperbuffer samples.
    assert audio.size == BUFFERS * SAMPLES_PER_BUFFER
    assert abs(peak_hz(audio) - 440.0) <= 1.0
    assert np.sqrt(np.mean(audio ** 2)) == pytest.approx(0.8 / np.sqrt(2), rel=0.01)  # default volume 0.8


def test_a_44k1_stereo_pipeline_is_resampled_by_gstreamer_to_16k_mono():
    src = open_source(f"gst:audiotestsrc num-buffers={BUFFERS} wave=sine freq=1000 "
                      f"! audio/x-raw,rate=44100,channels=2")
    audio = collect(src)
    expected = BUFFERS * SAMPLES_PER_BUFFER * SR / 44100
    assert abs(audio.size - expected) <= 16  # audioresample's own start/end handling: under 1 ms
    assert abs(peak_hz(audio) - 1000.0) <= 1.0


def test_a_pipeline_with_no_element_of_that_name_is_a_pipeline_error_with_gsts_words():
    src = open_source("gst:nosuchelement")
    with pytest.raises(PipelineError) as info:
        collect(src)
    message = str(info.value)
    assert 'no element "nosuchelement"' in message and "gst-launch-1.0 exited with code" in message
    assert "\n" not in message and "Traceback" not in message


def test_a_pipeline_that_fails_at_runtime_reports_the_element_and_its_detail():
    src = open_source("gst:filesrc location=/no/such/file.wav ! decodebin")
    with pytest.raises(PipelineError, match=r'filesrc0: Resource not found\. \(No such file "/no/such/file.wav"\)'):
        collect(src)


def test_quoted_values_with_spaces_reach_gstreamer_as_one_property(tmp_path):
    import soundfile as sf
    folder = tmp_path / "my clips"
    folder.mkdir()
    t = np.arange(SR) / SR
    sf.write(folder / "a tone.wav", (0.5 * np.sin(2 * np.pi * 600 * t)).astype(np.float32), SR)
    src = open_source(f'gst:filesrc location="{folder / "a tone.wav"}" ! decodebin')
    assert src.finite
    audio = collect(src)
    assert abs(audio.size - SR) <= 2 and abs(peak_hz(audio) - 600) <= 2


def test_an_open_ended_pipeline_is_live_and_stop_event_ends_it_promptly():
    src = open_source("gst:audiotestsrc is-live=true wave=sine")
    assert not src.finite
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    t0 = time.monotonic()
    audio = collect(src, stop)
    assert time.monotonic() - t0 < 1.5
    assert 0.2 * SR < audio.size < 1.5 * SR  # is-live: paced by GStreamer's clock


def test_source_stop_kills_gst_launch():
    src = GstSource("audiotestsrc wave=sine")  # not live: as fast as the pipe drains
    threading.Timer(0.3, src.stop).start()
    t0 = time.monotonic()
    collect(src)
    assert time.monotonic() - t0 < 1.5 and src._proc is None


def test_a_pipeline_that_never_delivers_is_a_stall_error_after_the_startup_timeout():
    src = GstSource("appsrc ! audio/x-raw,format=F32LE,rate=16000,channels=1", startup_timeout_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(StallError, match="no audio at all for 0.5 s"):
        collect(src)
    assert time.monotonic() - t0 < 2.0


def test_a_pipeline_that_goes_silent_after_audio_is_a_stall_error():
    # A live source with 10 s buffers: the first comes at once, the next not for 10 s.
    src = GstSource("audiotestsrc is-live=true samplesperbuffer=160000 ! audio/x-raw,rate=16000",
                    stall_timeout_s=0.5)
    got = []
    with pytest.raises(StallError, match="no audio for 0.5 s"):
        src.run(got.append, threading.Event())
    assert sum(c.size for c in got) == 160000


def test_realtime_paces_a_fast_pipeline_to_the_wall_clock():
    src = open_source("gst:audiotestsrc num-buffers=8 samplesperbuffer=1000", realtime=True)
    t0 = time.monotonic()
    audio = collect(src)
    assert audio.size == 8000 and 0.45 <= time.monotonic() - t0 < 1.2


def test_finite_is_guessed_from_num_buffers_or_a_file_and_can_be_overridden():
    assert looks_finite("audiotestsrc num-buffers=10")
    assert looks_finite("filesrc location=a.ogg ! decodebin")
    assert looks_finite('uridecodebin uri="file:///x.mp3"')
    assert not looks_finite("audiotestsrc num-buffers=-1")
    assert not looks_finite("alsasrc device=hw:1")
    assert not open_source("gst:audiotestsrc num-buffers=10", finite=False).finite
    assert open_source("gst:alsasrc", finite=True).finite


def test_gst_stderr_condenses_to_one_line_without_source_locations():
    stderr = ["ERROR: from element /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0: Could not open resource.",
              "Additional debug info:",
              "../gst/rtsp/gstrtspsrc.c(8336): gst_rtspsrc_retrieve_sdp (): /GstPipeline:pipeline0/GstRTSPSrc:r:",
              "Failed to connect. (Generic error)",
              "ERROR: pipeline doesn't want to preroll."]
    assert condense_gst_error(stderr) == "rtspsrc0: Could not open resource. (Failed to connect. (Generic error))"
    assert condense_gst_error([]) == "no error message on stderr"


def test_rtsp_to_a_closed_port_fails_fast_with_rtspsrcs_message():
    src = open_source("rtsp://127.0.0.1:9/stream")
    assert isinstance(src, RtspSource) and not src.finite
    t0 = time.monotonic()
    with pytest.raises(PipelineError, match="rtspsrc0: Could not open resource"):
        collect(src)
    assert time.monotonic() - t0 < 5


def test_rtsp_passwords_are_masked_in_the_description():
    src = open_source("rtsp://admin:hunter2@127.0.0.1:9/live")
    assert "hunter2" not in src.description and src.description == "rtsp://admin:***@127.0.0.1:9/live"
    assert mask_url("rtsp://cam/x") == "rtsp://cam/x"


@pytest.mark.parametrize("spec", ["gst:", "gst: ! ", 'gst:audiotestsrc "unclosed', "rtsp://", "rtsp://host/a b"])
def test_malformed_gst_and_rtsp_specs_fail_when_opened(spec):
    with pytest.raises(SourceSpecError):
        open_source(spec)


def test_gst_errors_are_capture_errors():
    assert issubclass(PipelineError, CaptureError) and issubclass(StallError, CaptureError)
