"""Your model: a ``package.module:callable`` from a file beside the study, through run, best, export and train;
torchvision and timm names; and every bad model refused in one line, exit 2, nothing written."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import optuna
import pytest
import torch

from automl.cli import main
from automl.storage.artifacts import load_model
from automl.records import STUDY_PLUGINS
from tests.study.test_bad_inputs import db, edited, refused  # noqa: F401 (db: a fixture)

NAMES = itertools.count()

MODEL_FILE = '''
"""A user's own network, in a file beside the study."""
from torch import nn


def build(num_classes, in_channels, hidden=8):
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(hidden, num_classes))


def raises(num_classes, in_channels):
    raise RuntimeError("no GPU kernels for this layer")


def not_a_module(num_classes, in_channels):
    return 42


def wrong_shape(num_classes, in_channels):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes + 1))
'''


def _module(folder: Path, text: str = MODEL_FILE) -> str:
    """A model file in ``folder`` under a name no other test imported (modules stay in sys.modules)."""
    name = f"my_nets_{next(NAMES)}_{abs(hash(str(folder))) % 10**6}"
    (folder / f"{name}.py").write_text(text)
    return name


def _study(write_study, model: str, model_args: str = "{ hidden = 8 }", extra: str = "") -> Path:
    study = write_study(extra, n_trials=2)
    edited(study, 'model = "small_cnn"', f'model = "{model}"')
    return edited(study, "model_args = { width = 0.25 }", f"model_args = {model_args}")


def test_an_import_path_model_runs_and_best_export_and_train_work_on_it(run_cli, write_study, tmp_path,
                                                                        monkeypatch):
    module = _module(tmp_path)
    study = _study(write_study, f"{module}:build")
    url = f"sqlite:///{tmp_path / 'mine.db'}"
    monkeypatch.chdir(tmp_path.parent)  # the module is found beside the study file, not in the working folder
    run_cli("run", study, "--storage", url)
    stored = optuna.load_study(study_name="tiny", storage=url)
    assert [t.state.name for t in stored.trials] == ["COMPLETE", "COMPLETE"]
    origin = stored.user_attrs[STUDY_PLUGINS][f"model:{module}:build"]
    assert origin == f"{module} ({tmp_path / (module + '.py')})"

    _, out, _ = run_cli("best", "tiny", "--storage", url, "--json")
    assert json.loads(out)["value"] == stored.best_value
    run_file = tmp_path / "run.toml"
    run_cli("export", "tiny", "--storage", url, "-o", run_file)
    models = tmp_path / "retrained"
    _, out, _ = run_cli("train", run_file, "--out", models, "--json")
    saved = sorted(models.glob("*.pt"))
    assert saved
    ckpt = torch.load(saved[0], weights_only=True)
    assert ckpt["model"] == f"{module}:build" and ckpt["model_origin"]["folder"] == str(tmp_path)
    sys.modules.pop(module)  # loaded again from the folder the checkpoint names, as a new process would
    sys.path.remove(str(tmp_path))
    model = load_model(saved[0])
    assert type(model).__module__ == "torch.nn.modules.container" and model[0].out_channels == 8
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 4)


def test_a_torchvision_model_runs_with_its_first_conv_taking_one_channel(run_cli, write_study, tmp_path):
    tricks = '[tricks]\ninclude = ["zero_gamma", "no_bias_decay"]\n[tricks.zero_gamma]\nenabled = true\n'
    study = _study(write_study, "torchvision:resnet18", "{}", tricks)
    url = f"sqlite:///{tmp_path / 'tv.db'}"
    _, _, err = run_cli("run", study, "--storage", url, "--n-trials", "1")
    stored = optuna.load_study(study_name="tiny", storage=url)
    assert stored.trials[0].state.name == "COMPLETE"
    assert stored.user_attrs[STUDY_PLUGINS]["model:torchvision:resnet18"].startswith("torchvision ")
    assert "unavailable" not in err  # resnet18 has blocks zero_gamma knows
    assert stored.trials[0].user_attrs["zero_gamma.blocks"] == 8


def test_zero_gamma_unavailable_for_a_model_without_residual_blocks_is_said_once_and_recorded(run_cli, write_study,
                                                                                             tmp_path):
    study = write_study("[tricks]\ninclude = [\"zero_gamma\"]\n", n_trials=2)
    url = f"sqlite:///{tmp_path / 'zg.db'}"
    _, _, err = run_cli("run", study, "--storage", url)
    assert err.count("trick 'zero_gamma' is unavailable for model 'small_cnn'") == 1
    stored = optuna.load_study(study_name="tiny", storage=url)
    for trial in stored.trials:
        assert "residual block" in trial.user_attrs["unavailable"]["zero_gamma"]
        assert "zero_gamma" not in trial.user_attrs["tricks"]


# -- bad models: one line, exit 2, nothing written ------------------------------------------


def _refused(capsys, db: Path, study: Path) -> str:
    return refused(capsys, db, "run", str(study), "--storage", f"sqlite:///{db}")


def test_a_module_that_does_not_import_names_it_and_the_folders_searched(capsys, write_study, db, tmp_path):
    err = _refused(capsys, db, _study(write_study, "no_such_nets:build"))
    assert "no module named 'no_such_nets'" in err and str(tmp_path) in err and "[task]" in err


def test_a_module_that_raises_on_import_says_what_it_raised(capsys, write_study, db, tmp_path):
    module = _module(tmp_path, "raise ImportError('needs the cuda extension')\n")
    err = _refused(capsys, db, _study(write_study, f"{module}:build"))
    assert f"importing module {module!r}" in err and "needs the cuda extension" in err


def test_a_missing_callable_is_named_with_close_matches(capsys, write_study, db, tmp_path):
    module = _module(tmp_path)
    err = _refused(capsys, db, _study(write_study, f"{module}:biuld"))
    assert "has no 'biuld'" in err and "did you mean build" in err


@pytest.mark.parametrize(("callable_", "says"), [
    ("raises", ["raised RuntimeError", "no GPU kernels for this layer", "num_classes=4", "in_channels=1"]),
    ("not_a_module", ["returned int", "expected a torch.nn.Module"]),
    ("wrong_shape", ["returns (2, 5)", "expected (2, 4)", "4 classes"]),
])
def test_a_callable_that_raises_or_returns_the_wrong_thing_is_refused(capsys, write_study, db, tmp_path,
                                                                      callable_, says):
    module = _module(tmp_path)
    err = _refused(capsys, db, _study(write_study, f"{module}:{callable_}", "{}"))
    assert all(s in err for s in says), err


def test_a_model_that_fails_on_one_batch_is_refused(capsys, write_study, db, tmp_path):
    module = _module(tmp_path, "from torch import nn\n\ndef build(num_classes, in_channels):\n"
                               "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(num_classes))\n")
    err = _refused(capsys, db, _study(write_study, f"{module}:build", "{}"))
    assert "fails on one batch of shape (2, 1, 8, 8)" in err


def test_torchvision_and_timm_names_that_do_not_exist_come_with_close_matches(capsys, write_study, db):
    err = _refused(capsys, db, _study(write_study, "torchvision:resnet81", "{}"))
    assert "torchvision has no model 'resnet81'" in err and "torchvision:resnet18" in err
    pytest.importorskip("timm", reason="timm is not installed; pip install -e \".[timm]\" (it is in [dev])")
    err = _refused(capsys, db, _study(write_study, "timm:resnet81", "{}"))
    assert "timm has no model 'resnet81'" in err and "timm:resnet18" in err


def test_a_timm_model_without_timm_names_the_install_command(capsys, write_study, db, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # how Python itself marks a package as not importable
    err = _refused(capsys, db, _study(write_study, "timm:resnet18", "{}"))
    assert 'pip install -e ".[timm]"' in err


def test_an_unknown_model_name_lists_the_registered_ones_and_the_other_forms(capsys, write_study, db):
    err = _refused(capsys, db, _study(write_study, "resnet18", "{}"))
    assert "unknown model 'resnet18'; valid: resnet110" in err and "torchvision:NAME" in err


FAMILY_PLUGIN = '''
"""A family of models registered by a plugin: fake:NAME."""
from torch import nn

from automl import UserError, hookimpl
from automl.train.models import ModelSource


def resolve(spec, *, folders=()):
    name = spec.partition(":")[2]
    if name != "tiny":
        raise UserError(f"model {spec!r}: the fake family has only fake:tiny")

    def build(*, in_channels, num_classes, hidden=4):
        return nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(hidden, num_classes))

    return ModelSource(spec, build, {"plugin": "fake_family", "source": "the fake family"})


@hookimpl
def automl_register_model_families():
    return {"fake": resolve}
'''


def test_a_model_family_is_one_registration_and_every_form_message_lists_it(run_cli, write_study, tmp_path, capsys):
    plugin = tmp_path / "fake_family.py"
    plugin.write_text(FAMILY_PLUGIN)
    url = f"sqlite:///{tmp_path / 'family.db'}"
    run_cli("run", _study(write_study, "fake:tiny", "{ hidden = 3 }"), "--storage", url, "--plugin", plugin)
    stored = optuna.load_study(study_name="tiny", storage=url)
    assert [t.state.name for t in stored.trials] == ["COMPLETE", "COMPLETE"]
    assert stored.user_attrs[STUDY_PLUGINS]["model:fake:tiny"] == "the fake family"

    db = tmp_path / "refused.db"
    err = refused(capsys, db, "run", str(_study(write_study, "fake:huge", "{}")), "--storage", f"sqlite:///{db}",
                  "--plugin", str(plugin))
    assert "the fake family has only fake:tiny" in err
    err = refused(capsys, db, "run", str(_study(write_study, "nope:tiny", "{}")), "--storage", f"sqlite:///{db}",
                  "--plugin", str(plugin))
    assert "no module named 'nope'" in err and "torchvision:NAME, timm:NAME, fake:NAME or package.module:callable" in err


# Issue 25, item 3: a model that misbehaves at training time fails its trial, and the study goes on --------

FLAKY_FILE = '''
"""A model whose forward raises at its third call, and one whose loss turns NaN at its third step."""
import torch
from torch import nn


class Breaks(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, num_classes))  # 8x8 images
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.training and self.calls == 3:
            raise ValueError("this layer cannot take a batch of that kind")
        return self.body(x)


class GoesNaN(Breaks):
    def forward(self, x):
        self.calls += 1
        out = self.body(x)
        return out * float("nan") if self.training and self.calls >= 3 else out


def breaks(num_classes, in_channels):
    return Breaks(in_channels, num_classes)


def goes_nan(num_classes, in_channels):
    return GoesNaN(in_channels, num_classes)
'''


@pytest.mark.parametrize(("callable_", "extra", "reason", "detail"), [
    ("breaks", "", "model_error", "raised ValueError: this layer cannot take a batch of that kind"),
    # A budget in steps under a total budget: the worker first times a few steps, which meet the NaN too.
    ("goes_nan", '[study]\ntotal_budget = "60s"\n', "nan_loss", ""),
])
def test_a_model_failing_in_training_fails_its_trial_and_the_study_goes_on(capsys, write_study, tmp_path,
                                                                           monkeypatch, callable_, extra, reason,
                                                                           detail):
    monkeypatch.syspath_prepend(str(tmp_path))
    module = _module(tmp_path, FLAKY_FILE)
    study = _study(write_study, f"{module}:{callable_}", "{}")
    if extra:
        edited(study, "n_trials = 2", 'n_trials = 2\ntotal_budget = "60s"')
    url = f"sqlite:///{tmp_path / 'flaky.db'}"
    code = main(["run", str(study), "--storage", url])
    err = capsys.readouterr().err
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    assert code == 0 and len(trials) == 2, err  # the study ran its trials: the second one too
    assert all(t.state.name == "FAIL" for t in trials)
    assert {t.user_attrs.get("end_reason") for t in trials} == {reason}
    assert all(detail in t.user_attrs.get("end_detail", "") for t in trials)
    assert "Traceback" not in err
