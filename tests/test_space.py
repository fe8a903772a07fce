"""Tests of search spaces: prefixed trials, overrides, the recorder, and which tricks a trial enables."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from automl.overrides import Choices, Pinned, Range, describe, representative, resolve
from automl.space import TrickSettings, pinned_conflicts, select_tricks
from automl.trick_space import SpaceRecorder, TrickTrial, build_trick
from automl.trick import Trick
from automl_plugins.warmup import Warmup

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Knobs(Trick):
    """One parameter of every kind."""

    name = "knobs"

    @classmethod
    def search_space(cls, trial):
        return {
            "rate": trial.suggest_float("rate", 0.01, 1.0, log=True),
            "mix": trial.suggest_float("mix", 0.0, 1.0),
            "count": trial.suggest_int("count", 1, 9),
            "kind": trial.suggest_categorical("kind", ["linear", "cubic"]),
        }

    def __init__(self, rate=0.1, mix=0.5, count=5, kind="linear"):
        self.rate, self.mix, self.count, self.kind = rate, mix, count, kind


def _trick(name: str, owns: tuple[str, ...] = ()) -> type[Trick]:
    """A test trick with one parameter, owning ``owns``."""

    def search_space(cls, trial):
        return {"x": trial.suggest_float("x", 0.0, 1.0)}

    def init(self, x=0.5):
        self.x = x

    return type(name.title(), (Trick,), {"name": name, "owns": owns, "search_space": classmethod(search_space),
                                         "__init__": init})


def _trial(seed: int = 0):
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))


def _trials(tricks, settings, n=30, seed=0):
    """(params, distributions, enabled names) of ``n`` trials of a random-sampler study."""
    study = _trial(seed)
    out = []
    for _ in range(n):
        trial = study.ask()
        built = select_tricks(trial, tricks, settings)
        out.append((dict(trial.params), dict(trial.distributions), [t.name for t in built], built))
        study.tell(trial, 0.0)
    return out


# ---------------------------------------------------------------------------- prefixing


def test_trick_trial_prefixes_parameters():
    study = optuna.create_study()
    trial = study.ask()
    warmup = build_trick(Warmup, TrickTrial(trial, "warmup"))
    assert set(trial.params) == {"warmup.fraction"}
    assert warmup.fraction == trial.params["warmup.fraction"]
    assert trial.distributions["warmup.fraction"] == FloatDistribution(0.01, 0.3, log=True)
    assert TrickTrial(trial, "warmup").number == trial.number


def test_every_kind_is_prefixed_with_its_declared_distribution():
    trial = optuna.create_study().ask()
    knobs = build_trick(Knobs, TrickTrial(trial, "knobs"))
    assert trial.distributions == {
        "knobs.rate": FloatDistribution(0.01, 1.0, log=True),
        "knobs.mix": FloatDistribution(0.0, 1.0),
        "knobs.count": IntDistribution(1, 9),
        "knobs.kind": CategoricalDistribution(["linear", "cubic"]),
    }
    assert (knobs.rate, knobs.mix, knobs.count, knobs.kind) == tuple(
        trial.params[f"knobs.{k}"] for k in ("rate", "mix", "count", "kind"))


# ---------------------------------------------------------------------------- overrides


@pytest.mark.parametrize(("param", "value", "dist"), [
    ("rate", 0.05, CategoricalDistribution([0.05])),
    ("count", 3, CategoricalDistribution([3])),
    ("kind", "cubic", CategoricalDistribution(["cubic"])),
])
def test_pinned_gives_one_point_and_that_value(param, value, dist):
    trial = optuna.create_study().ask()
    knobs = build_trick(Knobs, TrickTrial(trial, "knobs", {param: Pinned(value)}))
    assert trial.distributions[f"knobs.{param}"] == dist
    assert trial.params[f"knobs.{param}"] == value
    assert getattr(knobs, param) == value


def test_range_replaces_bounds_and_keeps_the_rest():
    study = _trial()
    overrides = {"rate": Range(low=0.2, high=0.3), "count": Range(high=4), "mix": Range(log=True, low=0.1)}
    for _ in range(10):
        trial = study.ask()
        build_trick(Knobs, TrickTrial(trial, "knobs", overrides))
        assert trial.distributions["knobs.rate"] == FloatDistribution(0.2, 0.3, log=True)
        assert trial.distributions["knobs.count"] == IntDistribution(1, 4)
        assert trial.distributions["knobs.mix"] == FloatDistribution(0.1, 1.0, log=True)
        assert 0.2 <= trial.params["knobs.rate"] <= 0.3
        assert 1 <= trial.params["knobs.count"] <= 4
        study.tell(trial, 0.0)


def test_choices_restrict_a_categorical():
    assert resolve(CategoricalDistribution(["a", "b", "c"]), Choices(choices=("c", "a"))) == \
        CategoricalDistribution(["c", "a"])


@pytest.mark.parametrize(("param", "override", "says"), [
    ("mix", Range(low=0.8, high=0.2), "impossible range"),
    ("rate", Range(low=0.0), "low must be > 0"),
    ("rate", Range(low=-1.0, high=0.5), "low must be > 0"),
    ("mix", Range(low=0.0, log=True), "low must be > 0"),
    ("count", Range(low=1.5), "integer"),
    ("count", Range(high=7.25), "integer"),
    ("kind", Range(low=0, high=1), "categorical"),
    ("mix", Choices(choices=(0.1, 0.2)), "numeric"),
    ("kind", Choices(choices=("linear", "quintic")), "subset"),
    ("kind", Choices(choices=()), "subset"),
    ("kind", Pinned("quintic"), "not one of"),
    ("count", Pinned(2.5), "not an integer"),
    ("mix", Pinned("half"), "not a number"),
    ("mix", Pinned(math.nan), "not a number"),
])
def test_impossible_override_raises_naming_the_param(param, override, says):
    for space in (SpaceRecorder("knobs", {param: override}),
                  TrickTrial(optuna.create_study().ask(), "knobs", {param: override})):
        with pytest.raises(ValueError) as info:
            Knobs.search_space(space)
        assert f"knobs.{param}" in str(info.value)
        assert says in str(info.value)


def test_impossible_override_suggests_nothing():
    trial = optuna.create_study().ask()
    with pytest.raises(ValueError):
        Knobs.search_space(TrickTrial(trial, "knobs", {"mix": Range(low=2.0)}))
    assert "knobs.mix" not in trial.params


# ---------------------------------------------------------------------------- recorder


def test_recorder_records_distributions_and_returns_representatives():
    rec = SpaceRecorder("knobs")
    values = Knobs.search_space(rec)
    assert rec.params == {
        "rate": FloatDistribution(0.01, 1.0, log=True),
        "mix": FloatDistribution(0.0, 1.0),
        "count": IntDistribution(1, 9),
        "kind": CategoricalDistribution(["linear", "cubic"]),
    }
    assert values["rate"] == pytest.approx(math.sqrt(0.01 * 1.0))  # geometric centre of a log scale
    assert values["mix"] == pytest.approx(0.5)
    assert values["count"] == 5 and isinstance(values["count"], int)
    assert values["kind"] == "linear"


def test_recorder_applies_overrides():
    rec = SpaceRecorder("knobs", {"rate": Range(low=0.04, high=0.25), "kind": Pinned("cubic")})
    values = Knobs.search_space(rec)
    assert rec.params["rate"] == FloatDistribution(0.04, 0.25, log=True)
    assert values["rate"] == pytest.approx(math.sqrt(0.04 * 0.25))
    assert values["kind"] == "cubic"


def test_representative_respects_steps_and_lies_in_the_distribution():
    for dist in (FloatDistribution(0.0, 0.9, step=0.3), IntDistribution(2, 64, log=True), IntDistribution(0, 12, step=4),
                 FloatDistribution(1e-4, 1e-1, log=True)):
        value = representative(dist)
        assert dist._contains(dist.to_internal_repr(value)), (dist, value)


def test_describe():
    assert describe(FloatDistribution(0.01, 0.3, log=True)) == "[0.01, 0.3] log"
    assert describe(FloatDistribution(0.0, 1.0, step=0.25)) == "[0, 1] step 0.25"
    assert describe(IntDistribution(1, 9)) == "[1, 9]"
    assert describe(IntDistribution(4, 4)) == "= 4"
    assert describe(FloatDistribution(0.5, 0.5)) == "= 0.5"
    assert describe(CategoricalDistribution(["linear", "cubic"])) == "{'linear', 'cubic'}"
    assert describe(CategoricalDistribution(["cubic"])) == "= 'cubic'"


# ---------------------------------------------------------------------------- selecting tricks


def test_two_owners_of_a_resource_are_chosen_between_and_never_both():
    tricks = {"a": _trick("a", ("lr_schedule",)), "b": _trick("b", ("lr_schedule",))}
    seen = set()
    for params, dists, enabled, built in _trials(tricks, {}):
        assert dists["owner.lr_schedule"] == CategoricalDistribution(["a", "b", "none"])
        owner = params["owner.lr_schedule"]
        seen.add(owner)
        assert enabled == ([] if owner == "none" else [owner])
        assert "a.enabled" not in params and "b.enabled" not in params
        for trick in built:
            assert trick.x == params[f"{trick.name}.x"]
    assert seen == {"a", "b", "none"}


def test_a_trick_owning_two_resources_is_consistent_across_both():
    tricks = {
        "ramp": _trick("ramp", ("lr_schedule", "batch_size")),
        "cos": _trick("cos", ("lr_schedule",)),
        "big": _trick("big", ("batch_size",)),
    }
    owners = {"lr_schedule": {"ramp", "cos"}, "batch_size": {"ramp", "big"}}
    seen_ramp = seen_other = False
    distributions = {}
    for params, dists, enabled, _ in _trials(tricks, {}, n=40):
        for resource, candidates in owners.items():
            assert len(candidates & set(enabled)) <= 1, (resource, enabled, params)
        # ramp is decided first, by its own flag, and then holds both resources.
        assert ("ramp" in enabled) == params["ramp.enabled"]
        # Optuna refuses one name with two distributions: choices must not depend on earlier answers.
        for name, dist in dists.items():
            assert distributions.setdefault(name, dist) == dist, name
        if "ramp" in enabled:
            seen_ramp = True
            assert not {"cos", "big"} & set(enabled)
        elif "cos" in enabled or "big" in enabled:
            seen_other = True
    assert seen_ramp and seen_other


def test_pinned_on_wins_the_resource_without_a_suggestion():
    tricks = {"a": _trick("a", ("lr_schedule",)), "b": _trick("b", ("lr_schedule",))}
    for params, _, enabled, _ in _trials(tricks, {"b": TrickSettings(enabled=True)}, n=10):
        assert enabled == ["b"]
        assert set(params) == {"b.x"}


def test_pinned_off_is_never_enabled():
    tricks = {name: _trick(name, ("lr_schedule",)) for name in ("a", "b", "c")}
    seen = set()
    for params, dists, enabled, _ in _trials(tricks, {"a": TrickSettings(enabled=False)}):
        assert "a" not in enabled
        assert not any(p.startswith("a.") for p in params)
        assert dists["owner.lr_schedule"] == CategoricalDistribution(["b", "c", "none"])
        seen.update(enabled)
    assert seen == {"b", "c"}


def test_pinned_off_leaves_a_single_owner_with_its_own_flag():
    tricks = {"a": _trick("a", ("lr_schedule",)), "b": _trick("b", ("lr_schedule",))}
    seen = set()
    for params, _, enabled, _ in _trials(tricks, {"a": TrickSettings(enabled=False)}):
        assert "owner.lr_schedule" not in params
        assert enabled == (["b"] if params["b.enabled"] else [])
        seen.add(params["b.enabled"])
    assert seen == {True, False}


def test_uncontested_tricks_get_an_enabled_flag():
    tricks = {"solo": _trick("solo", ("loss",)), "free": _trick("free")}
    seen = set()
    for params, dists, enabled, _ in _trials(tricks, {}):
        for name in tricks:
            assert dists[f"{name}.enabled"] == CategoricalDistribution([True, False])
            assert (name in enabled) == params[f"{name}.enabled"]
            assert (f"{name}.x" in params) == params[f"{name}.enabled"]
        seen.add(tuple(enabled))
    assert len(seen) == 4
    assert not any(p.startswith("owner.") for p in params)


def test_pinned_settings_apply_overrides():
    tricks = {"a": _trick("a")}
    settings = {"a": TrickSettings(enabled=True, overrides={"x": Pinned(0.25)})}
    params, dists, enabled, built = _trials(tricks, settings, n=1)[0]
    assert enabled == ["a"] and built[0].x == 0.25
    assert params == {"a.x": 0.25}


def test_pinned_conflicts_name_both_tricks():
    tricks = {"a": _trick("a", ("lr_schedule",)), "b": _trick("b", ("lr_schedule", "batch_size")),
              "c": _trick("c", ("batch_size",))}
    problems = pinned_conflicts(tricks, {"a": TrickSettings(enabled=True), "b": TrickSettings(enabled=True)})
    assert len(problems) == 1
    assert "a" in problems[0].split() and "b" in problems[0].split() and "'lr_schedule'" in problems[0]
    assert pinned_conflicts(tricks, {"a": TrickSettings(enabled=True), "c": TrickSettings(enabled=True)}) == []
    assert pinned_conflicts(tricks, {"a": TrickSettings(enabled=True), "b": TrickSettings(enabled=False)}) == []
    with pytest.raises(ValueError, match="a and b"):
        select_tricks(_trial().ask(), tricks, {"a": TrickSettings(enabled=True), "b": TrickSettings(enabled=True)})
