"""The edge runtime's exception hierarchy: every error we raise on purpose derives from EdgeRtError.

Errors of what the edge shares with the cloud (the YAMNet runtime, audio decoding, the taxonomy) derive from
`edgert.errors.CoreError`; the edge's entry points report both kinds the same way."""
from __future__ import annotations


class EdgeRtError(Exception):
    """Base class of every deliberate edge_rt error."""


class RingBufferError(EdgeRtError, ValueError):
    """A ring buffer was built or called with arguments it cannot honour."""


class ConfigError(EdgeRtError):
    """The configuration has an unknown key or a value out of range."""


class OutboxError(EdgeRtError):
    """The durable outbox cannot be opened or written."""


class CaptureError(EdgeRtError):
    """An audio source failed; the message is one line that names the source and says what went wrong."""


class SourceSpecError(CaptureError, ValueError):
    """A source spec string (file:, dir:, mic:, gst:, rtsp://, synth:) or its options are malformed."""


class SourceNotFoundError(CaptureError):
    """A file, folder or clip pack the source needs does not exist."""


class AudioDecodeError(CaptureError):
    """A file exists but its audio could not be decoded (corrupt, unknown format, decoder lost sync)."""


class EmptySourceError(CaptureError):
    """A source holds no audio: a zero-length file, a file of 0 frames, a folder with no audio files."""


class AudioFormatError(CaptureError, ValueError):
    """Audio arrived with a sample rate or channel count that cannot be converted to 16 kHz mono."""


class PipelineError(CaptureError):
    """A GStreamer pipeline could not start, failed or died; the message carries gst's own error text."""


class StallError(CaptureError):
    """A live source stopped delivering audio for longer than its stall timeout."""


class DeviceError(CaptureError):
    """An audio input device is missing or could not be opened."""
