"""Checks shared by the readers of config sections: each failure is one ConfigError line that
names the key, its value and what is allowed."""

from __future__ import annotations

import numbers
from typing import Any

from mmix_jax.errors import ConfigError


def invalid(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"config.{key} = {value!r} is invalid: {allowed}.")


def positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise invalid(key, value, "must be a positive integer")
    return int(value)


def positive_seconds(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise invalid(key, value, "must be a number of seconds > 0")
    return float(value)


def count(value: Any, key: str, meaning: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise invalid(key, value, f"must be an integer >= 0 ({meaning})")
    return int(value)


def mix_points(value: Any, key: str, model_name: str, points: int,
               hint: str = "") -> tuple[int, ...]:
    """Distinct mix points of a model with `points` of them (0 = its input); `hint` ends the
    message."""
    layers = tuple(value)
    if any(not isinstance(k, numbers.Integral) or not 0 <= k < points for k in layers) \
            or len(set(layers)) != len(layers):
        raise invalid(key, layers, f"{model_name} has mix points 0..{points - 1} (0 = input); "
                      f"give distinct ones{hint}")
    return layers


__all__ = ["count", "invalid", "mix_points", "positive_int"]
