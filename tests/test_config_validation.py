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


@pytest.fixture(scope="module")
def untrained_bundle(tmp_path_factory):
    """A bundle of untrained networks with the default configuration (no training)."""
    from wsls.method.trained import TrainedModels, save_models
    from wsls.models import AppearanceEmbedding, AppearanceSpec, Classifier3D, ClassifierSpec

    config = WSLSConfig()
    models = TrainedModels(
        config,
        Classifier3D(ClassifierSpec(len(config.modalities), 4, 2)),
        AppearanceEmbedding(AppearanceSpec(in_channels=len(config.modalities))),
    )
    return save_models(models, tmp_path_factory.mktemp("bundle") / "bundle")


@pytest.mark.parametrize("dotted, rule", SETTINGS, ids=[s for s, _ in SETTINGS])
def test_every_bad_bundle_setting_is_one_bundle_error_line(
    untrained_bundle, tmp_path, monkeypatch, dotted, rule
):
    """A bundle whose config.json holds a setting out of range fails to load with one
    BundleError line naming the bundle's config.json and the setting, before any weights
    are read."""
    import json
    import shutil

    import wsls.bundle as bundle_module
    from wsls.errors import BundleError
    from wsls.method.trained import load_models

    def never(*args, **kwargs):
        raise AssertionError("weights read before the configuration was checked")

    monkeypatch.setattr(bundle_module, "_load_weights", never)
    bundle = shutil.copytree(untrained_bundle, tmp_path / "bundle")
    doc = json.loads((bundle / "config.json").read_text())
    for value in _bad_values(rule):
        edited = {**doc, "config": {**doc["config"]}}
        edited["config"]["method"] = _with(doc["config"]["method"], dotted, value)
        (bundle / "config.json").write_text(json.dumps(edited))
        with pytest.raises(BundleError) as info:
            load_models(bundle)
        message = str(info.value)
        assert "\n" not in message, message
        assert str(bundle / "config.json") in message, message
        assert f"setting method.{dotted}" in message or dotted.rsplit(".", 1)[-1] in message, (
            value,
            message,
        )
