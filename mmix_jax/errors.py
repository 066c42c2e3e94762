"""The errors a user can fix: each message names the key or file, the value, and what is allowed;
and the coercions of static spec fields that raise them."""

import math


class ConfigError(ValueError):
    """An invalid configuration; the message names the key and the allowed values."""


class DataError(ConfigError):
    """Data that cannot be used as configured (missing or damaged archive, wrong shapes, labels)."""


class WorkdirError(RuntimeError):
    """The workdir cannot be used as asked (e.g. it already holds a finished run)."""


class HostSetupError(RuntimeError):
    """The CPU set-up was asked for after JAX had already started its backends."""


class MixPointError(ValueError):
    """A mix point that the model does not have, that runs twice, or that is not a hidden state."""


class DivergedError(RuntimeError):
    """Training stopped after consecutive non-finite steps (the harness's divergence guard)."""


def static_number(owner: str, name: str, value: object, *, minimum: float = 0.0,
                  integer: bool = False) -> float:
    """`value` as a finite Python float (int with `integer`) >= `minimum`, or a ValueError that
    names `owner.name`. Spec fields are static: a traced or non-finite value is refused here,
    not turned into NaN or a tracer error inside the step."""
    kind = "an integer" if integer else "a finite number"
    try:
        number = float(value)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - a tracer, a string, an array of several values...
        raise ValueError(f"{owner}.{name} = {value!r}: must be {kind} >= {minimum:g}, given as "
                         "a Python number (it is static: the step compiles for it).") from None
    if not math.isfinite(number) or number < minimum or (integer and number != int(number)):
        raise ValueError(f"{owner}.{name} = {value!r}: must be {kind} >= {minimum:g}.")
    return int(number) if integer else number


def static_points(owner: str, name: str, value: object) -> tuple[int, ...]:
    """`value` as a tuple of distinct non-negative ints, or a ValueError naming `owner.name`."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{owner}.{name} = {value!r}: must be a sequence of mix points, e.g. "
                         "(0, 1, 2); () for no mixing.")
    points = tuple(static_number(owner, name, k, integer=True) for k in value)
    if len(set(points)) != len(points):
        raise ValueError(f"{owner}.{name} = {value!r}: must be distinct mix points >= 0.")
    return tuple(int(k) for k in points)
