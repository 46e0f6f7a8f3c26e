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
