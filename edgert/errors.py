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
