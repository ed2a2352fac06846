"""Parameter checks that fail at once with a message naming the parameter and the allowed values.

Each ``check_*`` returns the value in canonical form (a Python ``int``, ``float``, ``bool`` or ``str``; numpy
scalars accepted), so a config built from ``4``, ``4.0`` or ``np.float32(4)`` holds the same value and hashes
to the same key. ``normalise`` applies one check per field to a frozen dataclass in its ``__post_init__``.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import re
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np

_EXPONENT_WITHOUT_POINT = re.compile(r"^\s*([+-]?\d+)[eE]([+-]?\d+)\s*$")


def _string_hint(text: str) -> str:
    """Why a number arrived as a string, and how to write it (YAML 1.1 reads ``5e-4`` as a string)."""
    m = _EXPONENT_WITHOUT_POINT.match(text)
    if m:
        return (f" (YAML reads {text.strip()} as a string: an exponent needs a decimal point, "
                f"write {m.group(1)}.0e{m.group(2)})")
    try:
        float(text)
    except ValueError:
        return ""
    return " (a string: write the number without quotes)"


def _bound(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _describe(integer: bool, low: Optional[float], high: Optional[float], low_open: bool, high_open: bool) -> str:
    kind = "an integer" if integer else "a number"
    if low is not None and high is not None:
        return f"{kind} in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}{')' if high_open else ']'}"
    if low == 0 and low_open and high is None:
        return f"a positive {'integer' if integer else 'number'}"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {_bound(low)}"
    if high is not None:
        return f"{kind} {'<' if high_open else '<='} {_bound(high)}"
    return kind


def check_number(value: Any, parameter: str, *, integer: bool = False, low: Optional[float] = None,
                 high: Optional[float] = None, low_open: bool = False, high_open: bool = False,
                 note: str = "") -> Any:
    """``value`` as a finite Python ``float`` (an ``int`` when ``integer``; an integral float such as 2.0 is
    accepted) within the bounds; a ValueError naming ``parameter`` and the allowed range otherwise. Booleans and
    strings are rejected (a string that reads as a number gets a hint on how to write it)."""
    expected = _describe(integer, low, high, low_open, high_open)
    if isinstance(value, str):
        hint = _string_hint(value)
        raise ValueError(f"{parameter} must be {expected}{note}, got {'the string ' if hint else ''}{value!r}{hint}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{parameter} must be {expected}{note}, got {value!r}")
    if isinstance(value, numbers.Integral):
        v: Any = int(value)
    else:
        # a lower-precision numpy float (float32 0.1) becomes the float it prints as (0.1), not 0.10000000149
        v = float(str(value)) if isinstance(value, np.floating) and not isinstance(value, float) else float(value)
        if not math.isfinite(v):
            raise ValueError(f"{parameter} must be {expected}{note} and finite, got {value!r}")
        if integer:
            if not v.is_integer():
                raise ValueError(f"{parameter} must be {expected}{note}, got {value!r}")
            v = int(v)
    if not integer:
        v = float(v)
    below = low is not None and (v <= low if low_open else v < low)
    above = high is not None and (v >= high if high_open else v > high)
    if below or above:
        if low is not None and high is not None:
            raise ValueError(f"{parameter} must lie in {expected.split(' in ', 1)[1]}{note}, got {value!r}")
        raise ValueError(f"{parameter} must be {expected}{note}, got {value!r}")
    return v


def check_fraction(value: Any, parameter: str = "fraction") -> float:
    """A kept fraction must lie in (0, 1]."""
    return check_number(value, parameter, low=0, high=1, low_open=True, note=" (the fraction of data kept)")


def check_unit_interval(value: Any, parameter: str) -> float:
    """A weight such as alpha must lie in [0, 1]."""
    return check_number(value, parameter, low=0, high=1)


def check_positive(value: Any, parameter: str, integer: bool = False) -> Any:
    """A strictly positive, finite number (an ``int`` when ``integer``)."""
    return check_number(value, parameter, integer=integer, low=0, low_open=True)


def check_seed(value: Any, parameter: str = "seed") -> int:
    """A random seed: an integer in [0, 2**32 - 1] (what numpy's and torch's generators all accept)."""
    return check_number(value, parameter, integer=True, low=0, high=2**32 - 1)


def check_bool(value: Any, parameter: str) -> bool:
    """``True`` or ``False`` (numpy booleans accepted); never a truthy string or number."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    hint = " (a string: write true or false without quotes)" if isinstance(value, str) else ""
    raise ValueError(f"{parameter} must be true or false (a boolean), got {value!r}{hint}")


def check_name(value: Any, parameter: str) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{parameter} must be a non-empty string, got {value!r}")
    return value


def check_choice(value: Any, parameter: str, allowed: Iterable[str]) -> str:
    """``value`` must be one of ``allowed``."""
    allowed = list(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"unknown {parameter} {value!r}; allowed values for {parameter!r}: {', '.join(map(str, allowed))}")
    return value


def optional(check: Callable[..., Any]) -> Callable[..., Any]:
    """The check that also lets ``None`` through."""

    def check_optional(value: Any, parameter: str, *args: Any, **kwargs: Any) -> Any:
        return None if value is None else check(value, parameter, *args, **kwargs)

    return check_optional


def check_config(value: Any, parameter: str, config: type) -> Any:
    """An instance of the dataclass ``config``, or one built from a mapping by ``config.from_dict`` (its errors
    prefixed with ``parameter``)."""
    if isinstance(value, config):
        return value
    if isinstance(value, Mapping):
        try:
            return config.from_dict(value)
        except ValueError as err:
            raise ValueError(f"{parameter}: {err}") from None
    raise ValueError(f"{parameter} must be a {config.__name__} or a mapping of its parameters, got {value!r}")


def normalise(obj: Any, checks: Mapping[str, Callable[[Any, str], Any]]) -> None:
    """Runs ``checks[name](value, name)`` on every field of the frozen dataclass ``obj`` (in field order) and
    stores the canonical values it returns. Every field needs a check: a field added without one is a TypeError."""
    names = [f.name for f in dataclasses.fields(obj)]
    if set(names) != set(checks):
        raise TypeError(f"{type(obj).__name__}: fields without a check {sorted(set(names) - set(checks))}, "
                        f"checks without a field {sorted(set(checks) - set(names))}")
    for name in names:
        object.__setattr__(obj, name, checks[name](getattr(obj, name), name))


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
    if not isinstance(values, Mapping):
        raise ValueError(f"{config.__name__} parameters must be a mapping of names to values, got {values!r}")
    check_fields(values, config, what)
    d = dict(values)
    for name, sub in nested.items():
        if isinstance(d.get(name), Mapping):
            d[name] = check_config(d[name], name, sub)
    return config(**d)
