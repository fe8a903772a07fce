"""Studies: the study file, the trial records, the objective, the runner, the worker loop and its processes, export and retraining."""
