"""Registries of extension points: one module per member, found by scanning a package.

A registry is built over a package (`p2pfl.gossip.aggregators`, `p2pfl.learning.models`, ...).
Every module of the package whose name does not start with an underscore defines `COMPONENT`,
an object with at least `name` (what settings and flags call it) and `summary` (one line for
help texts and `p2pfl components`); optional `params` (a tuple of `Param`) and `paper`.
Adding a member is adding one module: the CLI help, config validation and the component table
read the registry.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


@dataclass(frozen=True)
class Param:
    """One parameter of a component spec (`name:key=value,...`): its key, default and meaning."""

    key: str
    default: object
    help: str


class Component(Protocol):
    name: str
    summary: str


T = TypeVar("T", bound=Component)


class Registry(Generic[T]):
    """The members of one extension point, loaded on first use from the modules of `package`."""

    def __init__(self, kind: str, package: str, error: type[Exception], attribute: str = "COMPONENT"):
        self.kind = kind
        self.error = error  # raised for an unknown name: the error kind of the registry's layer
        self.package = package
        self.attribute = attribute
        self._members: dict[str, T] | None = None

    def _load(self) -> dict[str, T]:
        if self._members is None:
            pkg = importlib.import_module(self.package)
            members: dict[str, T] = {}
            for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
                if info.name.startswith("_"):
                    continue
                module = importlib.import_module(f"{self.package}.{info.name}")
                member = getattr(module, self.attribute, None)
                if member is None:
                    raise TypeError(f"{module.__name__} defines no {self.attribute}")
                if member.name in members:
                    raise TypeError(f"two {self.kind}s are called {member.name!r}")
                members[member.name] = member
            self._members = members
        return self._members

    def get(self, name: str) -> T:
        """The member called `name`; the registry's error, listing the choices, when there is none."""
        members = self._load()
        if name not in members:
            raise self.error(f"unknown {self.kind} {name!r}; choose one of {', '.join(members)}")
        return members[name]

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def __iter__(self) -> Iterator[T]:
        return iter(self._load().values())

    def names(self) -> tuple[str, ...]:
        """Member names, sorted."""
        return tuple(self._load())

    def choices(self) -> str:
        """'a, b, c' for help texts."""
        return ", ".join(self.names())
