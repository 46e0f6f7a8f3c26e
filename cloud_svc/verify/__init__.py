"""Verifiers as plugins keyed by a string: `load("yamnet")` or `load("vggish")` builds one, failing loudly."""
from __future__ import annotations

from cloud_svc.errors import VerifierUnavailable
from cloud_svc.verify.base import Verifier
from cloud_svc.verify.vggish import VggishVerifier
from cloud_svc.verify.yamnet import YamnetVerifier

__all__ = ["Verifier", "load", "names", "VggishVerifier", "YamnetVerifier"]


def _registry() -> dict[str, type[Verifier]]:
    found, stack = {}, list(Verifier.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.KEY:
            found[cls.KEY] = cls
    return found


def names() -> list[str]:
    return sorted(_registry())


def load(name: str, **kw) -> Verifier:
    reg = _registry()
    if name not in reg:
        raise VerifierUnavailable(f"unknown verifier {name!r}; choose one of {', '.join(sorted(reg))}")
    return reg[name](**kw)
