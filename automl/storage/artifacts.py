"""Trial models kept in Optuna's artifact store, and loaded back with ``weights_only=True``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.trial import TrialState
from torch import nn

from automl.records import ATTR_MODEL, ATTR_WEIGHTS, best_of
from automl.train.models import build_model

CHECKPOINT_FORMAT = 1


def artifact_store(path: str | Path) -> FileSystemArtifactStore:
    """A file-system artifact store at ``path`` (created when missing)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


def checkpoint(model: nn.Module, name: str, model_args: dict[str, Any], in_channels: int, num_classes: int,
               origin: dict[str, str] | None = None, folders: tuple[str, ...] = ()) -> dict:
    """A self-describing checkpoint: enough to rebuild the architecture, and the weights.

    ``name`` is the ``[task] model`` (a plugin's name, ``torchvision:NAME``, ``package.module:callable``);
    ``origin`` says where it came from (``ModelSource.origin``) and ``folders`` where its module was looked for.
    """
    return {"format": CHECKPOINT_FORMAT, "model": name, "model_args": dict(model_args),
            "in_channels": in_channels, "num_classes": num_classes,
            "model_origin": dict(origin or {}), "model_folders": list(folders),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


def task_checkpoint(task: Any, model: nn.Module, data: Any) -> dict:
    """``model`` of a study's ``[task]`` (its ``model`` and ``model_args``), trained on ``data``, as a checkpoint."""
    return checkpoint(model, task.model, task.model_args, data.input_shape[0], data.num_classes,
                      task.model_source().origin, task.folders)


def with_weights(ckpt: dict, state_dict: dict[str, torch.Tensor]) -> dict:
    """``ckpt``'s architecture with other weights (a snapshot, an average), as a checkpoint of its own."""
    return {**ckpt, "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}


def save_trial_model(trial: optuna.Trial, store: FileSystemArtifactStore, ckpt: dict,
                     weights: dict[str, dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
    """Upload ``ckpt`` as the trial's model, and each of ``weights`` as a checkpoint of the same architecture;
    returns the user attributes that keep their artifact ids."""
    with tempfile.TemporaryDirectory() as tmp:
        def upload(name: str, state: dict) -> str:
            path = Path(tmp) / f"trial-{trial.number}-{name}.pt"
            torch.save(state, path)
            return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)

        artifact_id = upload("model", ckpt)
        extra = {name: upload(name, with_weights(ckpt, state)) for name, state in (weights or {}).items()}
    return {ATTR_MODEL: artifact_id, **({ATTR_WEIGHTS: extra} if extra else {})}


def best_checkpoint(study: optuna.Study, store: FileSystemArtifactStore, into: Path) -> Path | None:
    """Download the model of the study's best completed trial that saved one; None when none did."""
    best = best_of(t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if ATTR_MODEL in t.user_attrs)
    if best is None:
        return None
    path = into / f"best-trial-{best.number}.pt"
    if not path.exists():
        into.mkdir(parents=True, exist_ok=True)
        download_artifact(artifact_store=store, artifact_id=best.user_attrs[ATTR_MODEL], file_path=str(path))
    return path


def load_model(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild and load a checkpoint written by :func:`checkpoint` (tensors and plain data only).

    An import-path model is imported from ``sys.path`` or the folders the study looked in (its file's).
    """
    ckpt = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an automl model checkpoint (format {CHECKPOINT_FORMAT})")
    model = build_model(ckpt["model"], in_channels=ckpt["in_channels"], num_classes=ckpt["num_classes"],
                        folders=ckpt.get("model_folders", ()), **ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device)
