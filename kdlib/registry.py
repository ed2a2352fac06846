"""A tiny name -> object registry, one per family (datasets, models, pruning methods, KD losses)."""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Generic, Iterator, Mapping, Optional, TypeVar

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


def resolve_params(field: str, owner: str, defaults: Mapping[str, Any],
                   overrides: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The declared hyperparameters ``defaults`` of ``owner`` with ``overrides`` laid over them; an unknown name,
    or a value not of its default's kind (integer or number), is a ValueError naming ``field``."""
    unknown = sorted(set(overrides or {}) - set(defaults))
    if unknown:
        raise ValueError(f"{field} {unknown} are not hyperparameters of {owner}; allowed: "
                         f"{', '.join(sorted(defaults)) or 'none'}")
    out = dict(defaults)
    for k, v in (overrides or {}).items():
        d = defaults[k]
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)) or \
                (isinstance(d, int) and not float(v).is_integer()):
            raise ValueError(f"{field}.{k} of {owner} must be a finite {'integer' if isinstance(d, int) else 'number'}"
                             f" like its default {d!r}, got {v!r}")
        out[k] = type(d)(v)
    return out


class Params(dict):
    """Declared hyperparameter values as an immutable, hashable mapping (a field of frozen configs)."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))

    def _immutable(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("hyperparameters are immutable; build a new config with other values")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _immutable  # type: ignore[assignment]
