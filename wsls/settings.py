"""Type and range checks of settings, declared beside each configuration dataclass.

Each configuration class lists a :class:`Rule` per field and calls :func:`check_fields` in
``__post_init__``: a bad value is a one-line :class:`~wsls.errors.ConfigError` naming the
setting, its value and what is allowed, raised when the configuration is built (a bundle's
``config.json`` included), before any work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from wsls.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """What a setting may be.

    Attributes:
        kind: "int", "float" (ints accepted), "bool", "str", "tuple" (a list is accepted and
            made a tuple by the caller's loader), "dataclass" (checked by its own rules) or
            "any_of" (one of ``options``).
        low, high: bounds (None: unbounded); ``open_low`` / ``open_high`` exclude them.
        choices: the allowed values of a "str" (or any kind).
        optional: None is allowed.
        item: the rule of each element of a "tuple"; ``length``: its exact length, or
            ``min_length``.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[Any, ...] | None = None
    optional: bool = False
    item: Rule | None = None
    length: int | None = None
    min_length: int = 0
    options: tuple[Rule, ...] = ()

    def describe(self) -> str:
        if self.kind == "any_of":
            return " or ".join(o.describe() for o in self.options)
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "tuple":
            size = f"{self.length} " if self.length else ""
            text = f"a list of {size}values, each {self.item.describe() if self.item else 'any'}"
            if self.min_length:
                text += f" (at least {self.min_length})"
        else:
            text = {
                "int": "an integer",
                "float": "a number",
                "bool": "true or false",
                "str": "a string",
                "dataclass": "a group of settings",
            }[self.kind]
            lo = None if self.low is None else ("> " if self.open_low else ">= ") + f"{self.low:g}"
            hi = (
                None
                if self.high is None
                else ("< " if self.open_high else "<= ") + f"{self.high:g}"
            )
            bounds = " and ".join(b for b in (lo, hi) if b)
            text += f" {bounds}" if bounds else ""
        return text + (", or null" if self.optional else "")


def _kind_ok(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "tuple":
        return isinstance(value, tuple | list)
    if kind == "dataclass":
        return is_dataclass(value) and not isinstance(value, type)
    return True


def value_ok(value: Any, rule: Rule) -> bool:
    """Does ``value`` satisfy ``rule``?"""
    if value is None:
        return rule.optional
    if rule.kind == "any_of":
        return any(value_ok(value, o) for o in rule.options)
    if not _kind_ok(value, rule.kind):
        return False
    if rule.choices is not None and value not in rule.choices:
        return False
    if rule.kind == "tuple":
        if rule.length is not None and len(value) != rule.length:
            return False
        if len(value) < rule.min_length:
            return False
        return rule.item is None or all(value_ok(v, rule.item) for v in value)
    if rule.kind in ("int", "float"):
        if not math.isfinite(value):
            return False
        if rule.low is not None and (value <= rule.low if rule.open_low else value < rule.low):
            return False
        if rule.high is not None and (value >= rule.high if rule.open_high else value > rule.high):
            return False
    return True


def check_fields(config: Any, rules: dict[str, Rule]) -> None:
    """Check every field of the dataclass ``config`` against its rule.

    Raises:
        ConfigError: the first field out of its rule (one line).
        AssertionError: a field without a rule (a wsls bug: every setting has one).
    """
    owner = type(config).__name__
    for f in fields(config):
        assert f.name in rules, f"{owner}.{f.name} has no Rule"
        value = getattr(config, f.name)
        rule = rules[f.name]
        if rule.kind == "dataclass" and is_dataclass(value) and not isinstance(value, type):
            continue  # built, and so checked, by its own class
        if not value_ok(value, rule):
            raise ConfigError(f"{owner}.{f.name} = {value!r}: expected {rule.describe()}")


# the rules most settings use
COUNT = Rule("int", 1)  # at least one
NONNEGATIVE_INT = Rule("int", 0)
FRACTION = Rule("float", 0.0, 1.0)  # [0, 1]
OPEN_FRACTION = Rule("float", 0.0, 1.0, open_low=True, open_high=True)  # (0, 1)
POSITIVE = Rule("float", 0.0, open_low=True)
NONNEGATIVE = Rule("float", 0.0)
FLAG = Rule("bool")
NESTED = Rule("dataclass")
