"""A sound card as a source: `mic:[DEVICE]` records through PortAudio (ALSA on Jetson) via sounddevice."""
from __future__ import annotations

import queue

from edge_rt.capture.base import POLL_SECONDS, Feed, Source
from edge_rt.errors import DeviceError, SourceSpecError
from edgert.audio import StreamingResampler

BLOCK_SECONDS = 0.02  # PortAudio callback period: a mic-like 20 ms latency
QUEUE_SECONDS = 2.0  # audio the callback may queue ahead of a slow sink before blocks are dropped (counted)
STALL_TIMEOUT_S = 5.0  # a running stream that delivers nothing this long has lost its device
LIST_HINT = "list devices with `python -m sounddevice` or `arecord -l`"


def _sounddevice():
    """The sounddevice module; DeviceError when the PortAudio library itself is missing."""
    try:
        import sounddevice
    except OSError as err:  # sounddevice raises OSError when libportaudio cannot be loaded
        raise DeviceError(f"PortAudio is not available ({err}): install libportaudio2") from None
    return sounddevice


class MicSource(Source):
    """`mic:` (the default input), `mic:N` (a device index) or `mic:NAME` (part of a device name); live.

    The stream opens at the device's native rate, mono when the device allows it (else all its channels,
    averaged), and a streaming resampler brings it to 16 kHz. The device is looked up in `run`, not here, so
    `run_supervised` keeps retrying until a USB microphone is plugged in; a missing one is a DeviceError.
    """

    def __init__(self, device: str | int | None = None, *, stall_timeout_s: float = STALL_TIMEOUT_S):
        self._sd = _sounddevice()
        if isinstance(device, str):
            device = device.strip()
            device = int(device) if device.isdigit() else (device or None)
        if isinstance(device, int) and device < 0:
            raise SourceSpecError(f"mic: device index must be >= 0, got {device}")
        self.device = device
        self.stall_timeout_s = float(stall_timeout_s)
        super().__init__(f"mic:{'default' if device is None else device}", finite=False, realtime=False)

    def _find_device(self, refresh: bool) -> dict:
        """PortAudio's record of the input device; DeviceError naming what was asked for when there is none."""
        sd = self._sd
        if refresh:  # PortAudio enumerates devices once, at initialisation: re-initialise to see a new one
            sd._terminate()
            sd._initialize()
        try:
            info = sd.query_devices(self.device, kind="input")
        except (sd.PortAudioError, ValueError) as err:
            what = "no audio input device" if self.device is None else f"no audio input device {self.device!r}"
            why = ("PortAudio finds no sound card on this machine" if len(sd.query_devices()) == 0
                   else " ".join(str(err).split()))
            raise DeviceError(f"{what} ({why}): {LIST_HINT}") from None
        if info["max_input_channels"] < 1:
            raise DeviceError(f"audio device {self.device!r} ({info['name']}) has no input channels: {LIST_HINT}")
        return info

    def _open(self, info: dict, channels: int, blocks: queue.Queue):
        sd = self._sd
        rate = int(round(info["default_samplerate"]))

        def callback(indata, frames, time_info, status):
            if status.input_overflow:
                self.stats["overflows"] += 1
            try:
                blocks.put_nowait(indata.copy())  # float32[frames, channels]
            except queue.Full:
                self.stats["overflows"] += 1

        return sd.InputStream(device=info["index"], samplerate=rate, channels=channels, dtype="float32",
                              blocksize=int(round(rate * BLOCK_SECONDS)), callback=callback)

    def _produce(self, feed: Feed) -> None:
        sd = self._sd
        try:
            info = self._find_device(refresh=False)
        except DeviceError:
            info = self._find_device(refresh=True)
        rate = int(round(info["default_samplerate"]))
        blocks: queue.Queue = queue.Queue(maxsize=max(1, int(QUEUE_SECONDS / BLOCK_SECONDS)))
        stream, channels = None, 1
        for channels in dict.fromkeys((1, int(info["max_input_channels"]))):  # mono first, then native
            try:
                stream = self._open(info, channels, blocks)
                break
            except sd.PortAudioError as err:
                failure = err
        if stream is None:
            raise DeviceError(f"{self.description} ({info['name']}) could not be opened: "
                              f"{' '.join(str(failure).split())}")
        resampler = StreamingResampler(rate, channels)
        with stream:
            idle = 0.0
            while not feed.stopping():
                try:
                    block = blocks.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    idle += POLL_SECONDS
                    if idle > self.stall_timeout_s or not stream.active:
                        raise DeviceError(f"{self.description} ({info['name']}) stopped delivering audio") from None
                    continue
                idle = 0.0
                feed.emit(resampler.process(feed.sanitize(block, self.description)))
