"""Parameter checks that fail at once with a message naming the parameter and the allowed values."""
from __future__ import annotations

from typing import Any, Iterable, Mapping


def check_fraction(value: float, parameter: str = "fraction") -> float:
    """A kept fraction must lie in (0, 1]."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{parameter} must be a number in (0, 1], got {value!r}") from None
    if not 0.0 < v <= 1.0:
        raise ValueError(f"{parameter} must lie in (0, 1] (the fraction of data kept), got {value!r}")
    return v


def check_unit_interval(value: float, parameter: str) -> float:
    """A weight such as alpha must lie in [0, 1]."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{parameter} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{parameter} must lie in [0, 1], got {value!r}")
    return v


def check_positive(value: float, parameter: str, integer: bool = False) -> float:
    """A strictly positive number (an integer when ``integer``)."""
    kind = "a positive integer" if integer else "a positive number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and int(value) != value):
        raise ValueError(f"{parameter} must be {kind}, got {value!r}")
    if value <= 0:
        raise ValueError(f"{parameter} must be {kind}, got {value!r}")
    return int(value) if integer else float(value)


def check_choice(value: str, parameter: str, allowed: Iterable[str]) -> str:
    """``value`` must be one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"unknown {parameter} {value!r}; allowed values for {parameter!r}: {', '.join(map(str, allowed))}")
    return value


def check_fields(values: Iterable[str], config: type, what: str) -> None:
    """Every key in ``values`` must be a field of the dataclass ``config``; else a ValueError naming the unknown
    keys and the allowed ones (``what`` says which kind of parameter, e.g. 'train')."""
    allowed = set(config.__dataclass_fields__)
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")


def from_plain(config: type, values: Mapping[str, Any], nested: Mapping[str, type], what: str = "run parameter(s)"):
    """``config(**values)`` from plain values (YAML/JSON): unknown keys are named (``check_fields``) and each
    mapping under a key of ``nested`` becomes that dataclass through its own ``from_dict``."""
    check_fields(values, config, what)
    d = dict(values)
    for name, sub in nested.items():
        if isinstance(d.get(name), Mapping):
            d[name] = sub.from_dict(d[name])
    return config(**d)
