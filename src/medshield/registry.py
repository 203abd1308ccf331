"""One registry pattern for everything that plugs in.

Attacks, defences, models, datasets and protocols register under a name and are built
with :func:`create` (``create("model", "lenet5", num_classes=10)``). The CLI and the
YAML configs refer to components only by these names.

Examples
--------
>>> from medshield.registry import Registry
>>> shapes = Registry("shape")
>>> @shapes.register("square")
... class Square:
...     def __init__(self, side: float = 1.0) -> None:
...         self.side = side
>>> shapes.create("square", side=2.0).side
2.0
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry", "RegistryError", "create", "get_registry", "registries"]


class RegistryError(KeyError):
    """An unknown kind or name; the message lists what is available."""

    def __str__(self) -> str:  # KeyError quotes its argument; show the plain message
        return str(self.args[0]) if self.args else ""


_REGISTRIES: dict[str, Registry[Any]] = {}


class Registry(Generic[T]):
    """A name -> factory table for one kind of component.

    Parameters
    ----------
    kind
        What the registry holds (``"model"``, ``"dataset"``, ``"attack"`` ...). Creating a
        registry makes it reachable through :func:`create` under that kind.
    """

    def __init__(self, kind: str) -> None:
        if kind in _REGISTRIES:
            raise ValueError(f"a registry for kind {kind!r} already exists")
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        _REGISTRIES[kind] = self

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator that registers a class or factory under ``name`` (and ``aliases``)."""

        def deco(obj: T) -> T:
            key = _norm(name)
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[key] = obj
            for alias in aliases:
                self._aliases[_norm(alias)] = key
            return obj

        return deco

    def canonical(self, name: str) -> str:
        """The registered name that ``name`` (or an alias of it) refers to."""
        key = _norm(name)
        key = self._aliases.get(key, key)
        if key not in self._entries:
            close = difflib.get_close_matches(key, list(self._entries) + list(self._aliases), n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(self.names())}."
            )
        return key

    def get(self, name: str) -> T:
        """The registered class or factory (not an instance)."""
        return self._entries[self.canonical(name)]

    def create(self, name: str, /, **options: Any) -> Any:
        """Build the component registered as ``name`` with keyword ``options``."""
        factory = self.get(name)
        return factory(**options)  # type: ignore[operator]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        for key in self.names():
            yield key, self._entries[key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _norm(name)
        return key in self._entries or key in self._aliases

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _import_builtin(kind: str) -> None:
    """Import the package that fills a built-in registry, so ``create`` works without it."""
    import importlib

    modules = {
        "dataset": "medshield.data",
        "model": "medshield.models",
        "attack": "medshield.attacks",
        "defense": "medshield.defenses",
        "protocol": "medshield.secure",
    }
    if kind in modules:
        try:
            importlib.import_module(modules[kind])
        except ModuleNotFoundError as err:  # a package not written yet
            if err.name != modules[kind]:
                raise


def get_registry(kind: str) -> Registry[Any]:
    """The registry for ``kind``; raises :class:`RegistryError` listing the known kinds."""
    key = _norm(kind)
    if key not in _REGISTRIES:
        _import_builtin(key)
    if key not in _REGISTRIES:
        raise RegistryError(f"unknown kind {kind!r}. Known kinds: {', '.join(sorted(_REGISTRIES))}.")
    return _REGISTRIES[key]


def registries() -> dict[str, Registry[Any]]:
    """All registries created so far, by kind."""
    return dict(_REGISTRIES)


def create(kind: str, name: str, /, **options: Any) -> Any:
    """Build a registered component: ``create("model", "lenet5", num_classes=10)``."""
    return get_registry(kind).create(name, **options)
