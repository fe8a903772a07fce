"""The parts of the Trick API that tricks share: regrouping params, fixed options, availability and order."""

from __future__ import annotations

import optuna
import pytest

from automl.space import TrickSettings, select_tricks
from automl.trick_space import SpaceRecorder, build_trick, option_names
from automl.testing import tiny_settings, tiny_data, tiny_model
from automl.train.loop import build_optimizer
from automl.run import Run
from automl.trick import Trick


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


def test_replace_optimizer_keeps_the_groups_options_and_a_later_regroup_keeps_the_kind():
    import torch

    model = tiny_model(tiny_data())
    run = _run(model)
    run.regroup(lambda name, p: {"weight_decay": 0.0} if p.ndim <= 1 else {})
    run.replace_optimizer(lambda params: torch.optim.Adam(params, lr=0.01, weight_decay=1e-4))
    assert isinstance(run.optimizer, torch.optim.Adam)
    # The group a trick gave no decay keeps it; the other takes the new kind's own default, not SGD's.
    assert sorted(g["weight_decay"] for g in run.optimizer.param_groups) == [0.0, 1e-4]
    assert all("nesterov" not in g for g in run.optimizer.param_groups)
    run.regroup(lambda name, p: {"lr_scale": 0.5} if name.startswith("0.") else {})
    assert isinstance(run.optimizer, torch.optim.Adam) and len(run.optimizer.param_groups) > 2
    assert sum(len(g["params"]) for g in run.optimizer.param_groups) == len(list(model.parameters()))


def test_wrap_criterion_composes_in_order_the_latest_outermost():
    import torch

    run = _run(tiny_model(tiny_data()))
    run.criterion = lambda out, y: torch.tensor(1.0)
    run.wrap_criterion(lambda inner: lambda out, y: inner(out, y) * 3)
    run.wrap_criterion(lambda inner: lambda out, y: inner(out, y) + 1)
    assert run.criterion(None, None).item() == 4.0


def test_attrs_refuse_a_value_that_is_not_json_when_set_naming_the_key():
    run = _run(tiny_model(tiny_data()))
    run.attrs["ok.value"] = {"a": [1, 2.5, None, "x"]}
    with pytest.raises(TypeError, match=r"run.attrs\['bad.model'\] = .* cannot be stored with the trial as JSON"):
        run.attrs["bad.model"] = object()
    with pytest.raises(TypeError, match=r"run.attrs\['bad.set'\]"):
        run.attrs.update({"bad.set": {1, 2}})
    with pytest.raises(TypeError, match=r"run.attrs\['bad.default'\]"):
        run.attrs.setdefault("bad.default", object())
    assert dict(run.attrs) == {"ok.value": {"a": [1, 2.5, None, "x"]}}


def test_trick_errors_name_the_trick_hook_and_step():
    from automl.testing import train_tiny
    from automl.trick_errors import raised_in

    class Breaks(Trick):
        name = "breaks"

        def lr_factor(self, progress):
            if progress > 0.4:
                raise ZeroDivisionError("no")
            return 1.0

    with pytest.raises(ZeroDivisionError) as caught:
        train_tiny([Breaks()], "10steps")
    where = raised_in(caught.value)
    assert (where.hook, where.step, where.hook_has_run) == ("lr_factor", 5, False)
    assert str(where.error(caught.value)) == "trick_error: breaks.lr_factor at step 5: ZeroDivisionError: no"
