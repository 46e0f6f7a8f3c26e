"""The plugin-registry helper: named implementations of one kind, registered by a decorator and looked up by a
checked name, so a typo in a config or on a command line is an error that lists the choices.

    RUNTIMES = Registry("backend")

    @RUNTIMES.register("onnxruntime")
    class OnnxRuntimeBackend(Backend): ...

    RUNTIMES.get("onnxrt")  -> SettingsError: unknown backend 'onnxrt'; choose one of: onnxruntime, ...
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from edgert.errors import SettingsError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that registers its target under `name` (a second target for one name is refused)."""
        if not name or name != name.strip():
            raise SettingsError(f"a {self.kind} needs a non-empty name without spaces around it, got {name!r}")

        def add(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise SettingsError(f"{self.kind} {name!r} is registered twice: {self._items[name]!r} and {item!r}")
            self._items[name] = item
            return item
        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise SettingsError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
