"""The parts of the Trick API that tricks share: regrouping params, fixed options, availability and order."""

from __future__ import annotations

import optuna
import pytest

from automl.space import SpaceRecorder, TrickSettings, build_trick, option_names, select_tricks
from automl.testing import tiny_settings, tiny_data, tiny_model
from automl.train.loop import build_optimizer
from automl.trick import Run, Trick


def _run(model):
    settings = tiny_settings(weight_decay=1e-3)
    make = lambda params: build_optimizer(settings, params)  # noqa: E731
    return Run(model=model, optimizer=make(model.parameters()), criterion=None, loader=None, data=None,
               device=None, budget=None, base_lr=settings.lr, make_optimizer=make)


def test_regroup_splits_groups_and_regroupings_compose():
    model = tiny_model(tiny_data())
    run = _run(model)
    run.regroup(lambda name, p: {"weight_decay": 0.0} if p.ndim <= 1 else {})
    assert len(run.optimizer.param_groups) == 2
    run.regroup(lambda name, p: {"layer": int(name.split(".")[0])})
    groups = run.optimizer.param_groups
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    for group in groups:
        layers = {int(n.split(".")[0]) for n, p in model.named_parameters() if any(p is q for q in group["params"])}
        assert layers == {group["layer"]}
        assert all((p.ndim <= 1) == (group["weight_decay"] == 0.0) for p in group["params"])
    assert {g["weight_decay"] for g in groups} == {0.0, 1e-3}


class Teacherless(Trick):
    name = "teacherless"

    @classmethod
    def search_space(cls, trial):
        return {"rate": trial.suggest_float("rate", 0.1, 0.2)}

    def __init__(self, rate: float = 0.1, source: str = "best", *, strict: bool = False):
        self.rate, self.source, self.strict = rate, source, strict

    @classmethod
    def unavailable(cls, context, options):
        return None if options.get("source", "best") != "best" else "nothing to learn from yet"


class Early(Trick):
    name = "zz_early"
    order = -5


class Late(Trick):
    name = "aa_late"
    order = 5


def test_options_are_the_init_keywords_the_space_does_not_return():
    returned = Teacherless.search_space(SpaceRecorder("teacherless"))
    assert option_names(Teacherless, returned) == ["source", "strict"]
    trick = build_trick(Teacherless, SpaceRecorder("teacherless"), {"source": "x.pt"})
    assert trick.source == "x.pt" and trick.rate == pytest.approx(0.15)


def test_an_unavailable_trick_is_off_and_the_reason_recorded():
    trial = optuna.create_study().ask()
    tricks = select_tricks(trial, {"teacherless": Teacherless}, {"teacherless": TrickSettings(enabled=True)})
    assert tricks == []
    assert trial.user_attrs["unavailable"] == {"teacherless": "nothing to learn from yet"}
    assert "teacherless.enabled" not in trial.params

    trial = optuna.create_study().ask()
    settings = {"teacherless": TrickSettings(enabled=True, options={"source": "x.pt"})}
    (trick,) = select_tricks(trial, {"teacherless": Teacherless}, settings)
    assert trick.source == "x.pt" and "unavailable" not in trial.user_attrs


def test_enabled_tricks_come_in_their_declared_order():
    trial = optuna.create_study().ask()
    pinned = {n: TrickSettings(enabled=True) for n in ("zz_early", "aa_late", "teacherless")}
    pinned["teacherless"] = TrickSettings(enabled=True, options={"source": "x"})
    tricks = select_tricks(trial, {"zz_early": Early, "aa_late": Late, "teacherless": Teacherless}, pinned)
    assert [t.name for t in tricks] == ["zz_early", "teacherless", "aa_late"]


def test_a_study_file_sets_options_and_rejects_unknown_ones(write_study, tmp_path):
    from automl.errors import UserError
    from automl.host import get_host
    from automl.study.config import load_study_file
    from automl.study.tricks import study_tricks

    plugin = tmp_path / "teacherless.py"
    plugin.write_text("from automl import hookimpl\nfrom tests.test_trick_api import Teacherless\n\n"
                      "@hookimpl\ndef automl_register_tricks():\n    return [Teacherless]\n")
    host = get_host([plugin])
    study = load_study_file(write_study('[tricks]\ninclude = ["teacherless"]\n'
                                        '[tricks.teacherless]\nsource = "x.pt"\nstrict = true\n'))
    _, settings = study_tricks(study, host)
    assert settings["teacherless"].options == {"source": "x.pt", "strict": True}
    bad = load_study_file(write_study('[tricks]\ninclude = ["teacherless"]\n[tricks.teacherless]\nsorce = 1\n'))
    with pytest.raises(UserError, match="unknown key 'sorce'; valid: enabled, rate, source, strict"):
        study_tricks(bad, host)
