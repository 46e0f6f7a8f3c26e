"""The edge runtime's exception hierarchy: every error we raise on purpose derives from EdgeRtError."""
from __future__ import annotations


class EdgeRtError(Exception):
    """Base class of every deliberate edge_rt error."""


class ModelError(EdgeRtError):
    """A model artifact is missing, corrupted or unusable."""


class ModelMissingError(ModelError):
    """A model file does not exist; the message says how to build it."""


class ModelIntegrityError(ModelError):
    """A model file's sha256 does not match the manifest."""


class BackendUnavailableError(EdgeRtError):
    """The runtime behind a backend is not installed or not usable on this machine."""


class InputShapeError(EdgeRtError, ValueError):
    """An array handed to the front end or a backend has the wrong shape or dtype."""


class FrontendError(EdgeRtError, ValueError):
    """The front end was handed audio it cannot analyse as it is."""


class NonFiniteAudioError(FrontendError):
    """A waveform holds NaN or Inf samples; the front end never guesses a value for them."""


class SampleRateError(FrontendError):
    """Audio at a rate other than YAMNet's 16 kHz reached the front end; resampling belongs to capture."""


class FrontendUnavailableError(EdgeRtError, ImportError):
    """A requested front-end implementation (the CUDA twin) cannot run on this machine."""


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
