"""Every setting is checked when a configuration is built: bad values are generated from each
configuration's own rules, so a new setting is covered as soon as it has a rule (and a setting
without a rule fails here)."""

from __future__ import annotations

import dataclasses

import pytest

from wsls.errors import ConfigError
from wsls.method.config import WSLSConfig
from wsls.settings import Rule
from wsls.training.task import FitConfig


def _bad_values(rule: Rule) -> list:
    """Values the rule must refuse."""
    if rule.kind == "any_of":
        bad = [v for o in rule.options for v in _bad_values(o)]
        return [v for v in bad if not any(_accepts(o, v) for o in rule.options)]
    out: list = [{"nested": 1}]  # never right for a plain setting
    if not rule.optional:
        out.append(None)
    if rule.kind == "dataclass":
        return ["x", 3]
    if rule.choices is not None:
        out.append("no-such-choice" if rule.kind == "str" else -12345)
    if rule.kind in ("int", "float"):
        out.append("12")  # a string where a number belongs
        out.append(float("nan"))
        if rule.kind == "int":
            out.append(1.5)
        if rule.low is not None:
            out.append(rule.low if rule.open_low else rule.low - 1)
        if rule.high is not None:
            out.append(rule.high if rule.open_high else rule.high + 1)
    if rule.kind == "bool":
        out += ["yes", 1]
    if rule.kind == "str":
        out.append(7)
    if rule.kind == "tuple":
        out.append("abc")
        if rule.min_length:
            out.append([])
        if rule.length:
            out.append([1] * (rule.length + 1))
        if rule.item is not None:
            out += [[v] * max(rule.length or 1, rule.min_length, 1) for v in _bad_values(rule.item)]
    return out


def _accepts(rule: Rule, value) -> bool:
    from wsls.settings import value_ok

    return value_ok(value, rule)


def _settings(cls: type, prefix: str = ""):
    """(dotted name, rule) for every field of ``cls`` and its nested configurations."""
    defaults = cls()
    for f in dataclasses.fields(cls):
        assert f.name in cls.RULES, f"{cls.__name__}.{f.name} has no rule"
        rule = cls.RULES[f.name]
        yield prefix + f.name, rule
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            yield from _settings(type(value), prefix + f.name + ".")


SETTINGS = list(_settings(WSLSConfig))


def _with(data: dict, dotted: str, value) -> dict:
    data = {**data}
    node = data
    *path, last = dotted.split(".")
    for part in path:
        node[part] = dict(node[part])
        node = node[part]
    node[last] = value
    return data


@pytest.mark.parametrize("dotted, rule", SETTINGS, ids=[s for s, _ in SETTINGS])
def test_every_bundle_setting_out_of_range_is_one_clear_line(dotted, rule):
    good = WSLSConfig().to_dict()
    bad_values = _bad_values(rule)
    assert bad_values
    for value in bad_values:
        with pytest.raises(ConfigError) as info:
            WSLSConfig.from_dict(_with(good, dotted, value))
        message = str(info.value)
        assert "\n" not in message
        assert dotted.rsplit(".", 1)[-1] in message, message
        assert "expected" in message or "must be" in message, message


def test_the_defaults_pass_and_the_rules_describe_themselves():
    WSLSConfig.from_dict(WSLSConfig().to_dict())
    for dotted, rule in SETTINGS:
        assert rule.describe(), dotted


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(FitConfig)])
def test_fit_settings_are_checked(field):
    rule = FitConfig.RULES[field]
    for value in _bad_values(rule):
        with pytest.raises(ConfigError, match=field):
            FitConfig(**{field: value})
