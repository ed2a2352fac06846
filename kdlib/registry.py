"""A tiny name -> object registry, one per family (datasets, models, pruning methods, KD losses)."""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; an unknown name raises a ValueError that lists the allowed names."""

    def __init__(self, family: str, parameter: str) -> None:
        self.family = family
        self.parameter = parameter
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name")`` adds the decorated object under ``name``."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.family} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def add(self, name: str, obj: T) -> T:
        """Registers ``obj`` under ``name`` (for objects that are not defined with ``def``)."""
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        """The object registered as ``name``; a ValueError naming the parameter and allowed values otherwise."""
        self.check(name)
        return self._items[name]

    def check(self, name: object, parameter: str | None = None) -> str:
        """Returns ``name`` if it is a registered name, else raises a ValueError naming the parameter (``parameter``,
        default the registry's own) and the allowed values."""
        parameter = parameter or self.parameter
        if not isinstance(name, str) or name not in self._items:
            raise ValueError(
                f"unknown {parameter} {name!r}; allowed values for {parameter!r}: {', '.join(sorted(self._items))}"
            )
        return name

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
