"""Knowledge distillation: the student also matches a teacher's softened predictions.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network";
He et al. 2019, "Bag of Tricks for Image Classification". The teacher is a checkpoint
given in the study file, or by default the saved model of the study's best completed
trial so far; a trial that has no teacher yet is not offered this trick (recorded).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from automl import Trick, hookimpl
from automl.checks import number
from automl.storage.artifacts import load_model

BEST = "best"


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch.

    The T^2 keeps the gradient scale of the soft term independent of T (Hinton et al.).
    """
    log_student = F.log_softmax(student.float() / temperature, dim=1)
    log_teacher = F.log_softmax(teacher.float() / temperature, dim=1)
    return F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean") * temperature ** 2


class Distillation(Trick):
    name = "distillation"
    # After tricks that mix the batch (the teacher must see what the student sees) and
    # after tricks that replace the criterion (this one wraps whatever criterion is set).
    order = 10

    @classmethod
    def search_space(cls, trial):
        return {"temperature": trial.suggest_float("temperature", 1.0, 8.0),
                "weight": trial.suggest_float("weight", 0.1, 0.9)}

    def __init__(self, temperature: float = 4.0, weight: float = 0.5, teacher: str = BEST) -> None:
        number(self.name, "temperature", temperature, low=0, low_open=True)
        number(self.name, "weight", weight, low=0, high=1)
        if teacher != BEST and not Path(teacher).is_file():
            raise ValueError(f"distillation teacher {teacher!r} is not a file; give a checkpoint path or 'best'")
        self.temperature = temperature
        self.weight = weight
        self.teacher = teacher
        self._teacher_logits: torch.Tensor | None = None

    @classmethod
    def unavailable(cls, context, options):
        if options.get("teacher", BEST) != BEST:
            return None
        if context is None:
            return "no study to take the best trial's model from; give a teacher checkpoint"
        if context.best_checkpoint() is None:
            return "no completed trial with a saved model yet to be the teacher"
        return None

    def setup(self, run) -> None:
        path = run.context.best_checkpoint() if self.teacher == BEST else Path(self.teacher)
        self._teacher = load_model(path, run.device).eval().requires_grad_(False)
        run.attrs["distillation.teacher"] = str(path.name if self.teacher == BEST else path)
        hard = run.criterion

        def criterion(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            soft = distillation_loss(logits, self._teacher_logits, self.temperature)
            return (1 - self.weight) * hard(logits, targets) + self.weight * soft

        run.criterion = criterion

    def state_dict(self, run) -> dict:
        # The teacher's weights, not its name: the study's best trial may be another one when the run resumes.
        return {"teacher": self._teacher.state_dict()}

    def load_state_dict(self, run, state: dict) -> None:
        self._teacher.load_state_dict(state["teacher"])

    def transform_batch(self, run, x, y):
        self._teacher_logits = run.scores_of(self._teacher, x)
        return x, y


@hookimpl
def automl_register_tricks():
    return [Distillation]
