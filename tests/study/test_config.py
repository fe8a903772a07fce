"""Study files: the shipped ones validate, and each kind of mistake names the file, key and valid choices."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from automl.budget import Budget
from automl.errors import UserError
from automl.host import get_host
from automl.overrides import Pinned, Range
from automl.study.config import load_study_file
from automl.study.tricks import study_tricks

STUDIES = Path(__file__).resolve().parents[2] / "studies"

TWO_SCHEDULES = '''
from automl import Trick, hookimpl


class Step(Trick):
    name = "step"
    owns = ("lr_schedule",)


class Ramp(Trick):
    name = "ramp"
    owns = ("lr_schedule", "batch_size")


@hookimpl
def automl_register_tricks():
    return [Step, Ramp]
'''


def _shipped():
    for path in sorted(STUDIES.glob("*.toml")):
        yield path, None
        for variant in sorted(tomllib.loads(path.read_text()).get("variants", {})):
            yield path, variant


@pytest.mark.parametrize(("path", "variant"), list(_shipped()), ids=lambda v: getattr(v, "name", v))
def test_shipped_studies_validate_against_the_installed_plugins(path, variant):
    study = load_study_file(path, variant)
    tricks, _ = study_tricks(study, get_host())
    assert tricks
    if variant:
        assert study.config.study.name.endswith(f"-{variant}")


def test_values_ranges_and_pins_are_read(write_study):
    study = load_study_file(write_study('''
        [tricks]
        include = ["warmup", "cosine"]
        [tricks.warmup]
        fraction = { low = 0.1, high = 0.2 }
        [tricks.cosine]
        enabled = true
        final = 0.0
    '''))
    assert study.config.study.trial_budget == Budget(6, "steps")
    tricks, settings = study_tricks(study, get_host())
    assert sorted(tricks) == ["cosine", "warmup"]
    assert settings["warmup"].enabled is None
    assert settings["warmup"].overrides["fraction"] == Range(low=0.1, high=0.2)
    assert settings["cosine"].enabled is True
    assert settings["cosine"].overrides["final"] == Pinned(0.0)


def test_exclude_removes_from_everything(write_study):
    study = load_study_file(write_study('[tricks]\nexclude = ["cosine"]\n'))
    tricks, _ = study_tricks(study, get_host())
    assert "cosine" not in tricks and "warmup" in tricks


def test_configuring_a_trick_that_is_not_included_is_refused(write_study):
    study = load_study_file(write_study('[tricks]\ninclude = ["warmup"]\n[tricks.cosine]\nfinal = 0.0\n'))
    with pytest.raises(UserError, match=r"\[tricks.cosine\] configures a trick that is not included"):
        study_tricks(study, get_host())


def test_pinning_two_owners_of_one_resource_names_both(write_study, tmp_path):
    plugin = tmp_path / "schedules.py"
    plugin.write_text(TWO_SCHEDULES)
    host = get_host([plugin])
    study = load_study_file(write_study('''
        [tricks]
        include = ["step", "ramp", "cosine"]
        [tricks.step]
        enabled = true
        [tricks.cosine]
        enabled = true
    '''))
    with pytest.raises(UserError, match="tricks cosine and step both own 'lr_schedule'"):
        study_tricks(study, host)


@pytest.mark.parametrize(("extra", "message"), [
    ("[tricks.warmup]\nfraction = { low = 0.1, hi = 0.2 }\n", "has unknown key 'hi'"),
    ("[tricks.warmup]\nfraction = { choices = [0.1] }\n", "is numeric in [0.01, 0.3]"),
    ("[tricks.warmup]\nenabled = 1\n", "enabled must be true or false"),
    ("[tricks.warmup]\nfraction = { low = -1.0, high = 0.2 }\n", "log-scaled, so low must be > 0"),
    ("[tricks]\ninclude = 3\n", "[tricks] include"),
])
def test_override_mistakes(write_study, extra, message):
    path = write_study(extra)
    with pytest.raises(UserError) as info:
        study_tricks(load_study_file(path), get_host())
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


@pytest.mark.parametrize(("replace", "message"), [
    (('trial_budget = "6steps"', 'trial_budget = "6 fortnights"'), "unknown unit 'fortnights'"),
    (('trial_budget = "6steps"', 'trial_budget = "6steps"\ntotal_budget = "3ep"'), "total_budget must be device time"),
    (('dataset = "synthetic"', 'dataset = "image net"'), "dataset 'image net' must be a data set's name"),
    (('lr = 0.05', 'lr = { low = 0.1 }'), "lr needs both low and high"),
    (('lr = 0.05', 'lr = -1.0'), "[train] lr"),
    (('name = "tiny"', 'name = "bad name!"'), "[study] name"),
])
def test_schema_mistakes_name_file_and_key(write_study, replace, message):
    path = write_study()
    path.write_text(path.read_text().replace(*replace))
    with pytest.raises(UserError) as info:
        load_study_file(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_a_variant_overlays_the_file_and_names_the_study(write_study):
    path = write_study('''
        [variants.big]
        study = { trial_budget = "10steps" }
        task = { model_args = { width = 0.5 } }
        [variants.renamed.study]
        name = "own-name"
    ''')
    base = load_study_file(path)
    big = load_study_file(path, "big")
    assert base.config.study.name == "tiny" and big.config.study.name == "tiny-big"
    assert big.config.study.trial_budget == Budget(10, "steps")
    assert big.config.task.model_args == {"width": 0.5}
    assert big.config.task.dataset == base.config.task.dataset == "synthetic"
    assert load_study_file(path, "renamed").config.study.name == "own-name"
    with pytest.raises(UserError, match="no variant 'huge'; valid: big, renamed"):
        load_study_file(path, "huge")
