"""mic: opens PortAudio through sounddevice; with no such device it is a clear DeviceError, raised by run()."""
from __future__ import annotations

import threading

import pytest
import sounddevice

from edge_rt.capture import MicSource, open_source
from edge_rt.errors import CaptureError, DeviceError, SourceSpecError

NO_SOUND_CARD = len(sounddevice.query_devices()) == 0


@pytest.mark.skipif(not NO_SOUND_CARD, reason="this machine has a sound card")
def test_without_a_sound_card_mic_says_so_and_how_to_list_devices():
    src = open_source("mic:")
    with pytest.raises(DeviceError) as info:
        src.run(lambda c: None, threading.Event())
    message = str(info.value)
    assert message.startswith("no audio input device") and "no sound card" in message
    assert "python -m sounddevice" in message and "arecord -l" in message and "\n" not in message


def test_a_device_name_that_matches_nothing_is_a_device_error_naming_it():
    src = open_source("mic:no-such-microphone-here")
    with pytest.raises(DeviceError, match="no audio input device 'no-such-microphone-here'"):
        src.run(lambda c: None, threading.Event())


def test_mic_is_live_and_parses_default_index_and_name():
    assert open_source("mic:").device is None and open_source("mic").device is None
    assert open_source("mic:[]").device is None
    assert open_source("mic:2").device == 2 and open_source("mic:[2]").description == "mic:2"
    src = open_source("mic:USB Audio")
    assert isinstance(src, MicSource) and src.device == "USB Audio" and not src.finite and src.truth == []


def test_a_negative_device_index_is_rejected_when_built():
    with pytest.raises(SourceSpecError):
        MicSource(-1)


def test_device_errors_are_capture_errors():
    assert issubclass(DeviceError, CaptureError)
