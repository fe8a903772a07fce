"""Tests of distillation: the soft loss, a teacher from a checkpoint or the study's best trial, and no teacher yet."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from automl.cli import main
from automl.trick_space import SpaceRecorder, build_trick
from automl.storage.artifacts import checkpoint
from automl.testing import tiny_data, tiny_model, train_tiny
from automl.run import TrialContext
from automl.trick import Trick
from automl_plugins.distillation import Distillation, distillation_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def test_loss_is_t_squared_kl_of_softened_predictions():
    student, teacher = torch.randn(5, 4), torch.randn(5, 4)
    t = 3.0
    p_teacher = F.softmax(teacher / t, dim=1)
    reference = (p_teacher * (p_teacher.log() - F.log_softmax(student / t, dim=1))).sum(1).mean() * t * t
    assert distillation_loss(student, teacher, t).item() == pytest.approx(reference.item(), rel=1e-5)
    assert distillation_loss(teacher, teacher, t).item() == pytest.approx(0.0, abs=1e-6)


@pytest.fixture
def teacher_path(tmp_path):
    data = tiny_data()
    teacher = tiny_model(data, seed=5)
    train_tiny(budget="30steps", data=data, model=teacher, lr=0.1)
    path = tmp_path / "teacher.pt"
    torch.save(checkpoint(teacher, "small_cnn", {"width": 0.25}, 1, data.num_classes), path)
    return path, teacher.eval()


class LossProbe(Trick):
    """Records the trick's teacher logits against the real teacher's, and the loss used."""

    name = "loss_probe"
    order = 20

    def __init__(self, distillation, teacher):
        self.distillation, self.teacher, self.checks = distillation, teacher, []

    def transform_batch(self, run, x, y):
        with torch.no_grad():
            expected = self.teacher(x)
            logits = run.model(x)
        kl = distillation_loss(logits, expected, self.distillation.temperature)
        hard = F.cross_entropy(logits, y)
        w = self.distillation.weight
        self.checks.append((torch.allclose(self.distillation._teacher_logits, expected, atol=1e-6),
                            run.criterion(logits, y).item(), ((1 - w) * hard + w * kl).item()))
        return x, y


def test_the_criterion_mixes_hard_and_soft_losses_with_the_teachers_logits(teacher_path):
    path, teacher = teacher_path
    trick = Distillation(temperature=2.0, weight=0.3, teacher=str(path))
    probe = LossProbe(trick, teacher)
    result = train_tiny([trick, probe], budget="5steps")
    assert len(probe.checks) == result.steps == 5
    for same_logits, used, reference in probe.checks:
        assert same_logits
        assert used == pytest.approx(reference, rel=1e-4)
    assert result.attrs["distillation.teacher"] == str(path)


def test_a_student_learns_to_agree_with_its_teacher(teacher_path):
    path, teacher = teacher_path
    data = tiny_data()
    student = tiny_model(data, seed=9)

    def disagreement():
        with torch.no_grad():
            return distillation_loss(student.eval()(data.val.x), teacher(data.val.x), 1.0).item()

    before = disagreement()
    train_tiny([Distillation(temperature=1.0, weight=1.0, teacher=str(path))], budget="60steps",
               data=data, model=student, lr=0.1)
    assert disagreement() < 0.5 * before


def test_no_teacher_yet_means_not_offered():
    none_yet = TrialContext("s", 0, best_checkpoint=lambda: None)
    assert "no completed trial" in Distillation.unavailable(none_yet, {})
    assert "no study" in Distillation.unavailable(None, {})


def test_validation_and_search_space(tmp_path):
    with pytest.raises(ValueError, match="temperature=0"):
        Distillation(temperature=0)
    with pytest.raises(ValueError, match="weight=1.5"):
        Distillation(weight=1.5)
    with pytest.raises(ValueError, match="is not a file"):
        Distillation(teacher=str(tmp_path / "missing.pt"))
    recorder = SpaceRecorder("distillation")
    trick = build_trick(Distillation, recorder)
    assert sorted(recorder.params) == ["temperature", "weight"]
    assert trick.teacher == "best"


def test_in_a_study_the_first_trial_has_no_teacher_and_later_ones_learn_from_the_best(capsys, write_study,
                                                                                       sqlite_url):
    study = write_study('[tricks]\ninclude = ["distillation"]\n[tricks.distillation]\nenabled = true\n',
                        n_trials=3)
    assert main(["run", str(study), "--storage", sqlite_url]) == 0
    capsys.readouterr()
    assert main(["trials", "tiny", "--json", "--storage", sqlite_url]) == 0
    trials = json.loads(capsys.readouterr().out)
    first, *later = trials
    assert first["tricks"] == [] and "no completed trial" in first["user_attrs"]["unavailable"]["distillation"]
    for trial in later:
        assert trial["state"] == "COMPLETE" and trial["tricks"] == ["distillation"]
        assert trial["user_attrs"]["distillation.teacher"].startswith("best-trial-")
