"""The core package's errors. Callers on either side catch `CoreError` (or one kind of it) and say what to do."""


class CoreError(Exception):
    """Base of everything the core package raises on purpose."""


class ProtoBuildError(CoreError):
    """protoc failed or is not installed."""


class ClipDecodeError(CoreError):
    """Clip bytes or a file cannot be decoded as audio."""


class SettingsError(CoreError):
    """A config file, env variable or override is not valid."""
