"""The core package's errors. Callers on either side catch `CoreError` (or one kind of it) and say what to do."""


class CoreError(Exception):
    """Base of everything the core package raises on purpose."""


class ProtoBuildError(CoreError):
    """protoc failed or is not installed."""


class AudioFormatError(CoreError, ValueError):
    """Audio came with a sample rate or channel count that cannot be converted to 16 kHz mono."""


class ClipDecodeError(CoreError):
    """Clip bytes or a file cannot be decoded as audio."""


class EmptyClipError(ClipDecodeError):
    """A clip holds no bytes at all."""


class SettingsError(CoreError):
    """A config file, env variable or override is not valid."""


class TaxonomyError(SettingsError):
    """The label taxonomy is inconsistent: a label names an AudioSet class the model lacks, a rule is missing."""


# The YAMNet runtime (edgert.yamnet): model files, backends, the front end.
class ModelError(CoreError):
    """A model artifact is missing, corrupted or unusable."""


class ModelMissingError(ModelError):
    """A model file does not exist; the message says how to build it."""


class ModelIntegrityError(ModelError):
    """A model file's sha256 does not match the manifest."""


class BackendUnavailableError(CoreError):
    """The runtime behind a backend is not installed or not usable on this machine."""


class InputShapeError(CoreError, ValueError):
    """An array handed to the front end or a backend has the wrong shape or dtype."""


class FrontendError(CoreError, ValueError):
    """The front end was handed audio it cannot analyse as it is."""


class NonFiniteAudioError(FrontendError):
    """A waveform holds NaN or Inf samples; the front end never guesses a value for them."""


class SampleRateError(FrontendError):
    """Audio at a rate other than YAMNet's 16 kHz reached the front end; resampling belongs to capture."""


class FrontendUnavailableError(CoreError, ImportError):
    """A requested front-end implementation (the CUDA twin) cannot run on this machine."""


# Outbound notifications (edgert.notify): MQTT and webhooks.
class NotifyError(CoreError):
    """A notification cannot be delivered and retrying will not help (bad broker address, refused credentials,
    a webhook URL that answers 4xx)."""


class NotifyUnavailable(NotifyError):
    """The broker or webhook endpoint cannot be reached now; what was not confirmed is retried later."""
