"""Worker processes: the options a parent hands its workers, and the seeds that keep their samples apart."""

from __future__ import annotations

from automl.cli import build_parser
from automl.study.processes import split_devices, worker_argv, worker_failure
from automl.study.runner import sampler_seed


def test_a_worker_is_given_the_parents_options_except_storage_and_device():
    parent = build_parser().parse_args([
        "run", "study.toml", "--variant", "cifar10", "--study-name", "s", "--n-trials", "7", "--total-budget", "5m",
        "--trial-budget", "30ep", "--seed", "3", "--plugin", "a.py", "--plugin", "b.py", "--storage", "sqlite:///x.db",
        "--device", "cuda:0,cuda:1", "--workers", "2", "--gpus-per-trial", "2", "--traceback", "--accept-plugin-change",
        "--accept-task-change"])
    child = build_parser().parse_args(["run", *worker_argv(parent, 4), "--worker", "1"])
    assert child.session == 4  # the parent's session of the study
    for option in ("study_file", "variant", "study_name", "n_trials", "total_budget", "trial_budget", "seed",
                   "gpus_per_trial", "plugin", "traceback", "accept_plugin_change", "accept_task_change"):
        assert getattr(child, option) == getattr(parent, option), option
    assert child.storage is None and child.device is None and child.workers == 1  # handed over apart


def test_each_session_and_worker_samples_with_its_own_seed():
    assert sampler_seed(5, 0, None) == 5  # a study run once, in one process, samples as its seed says
    seeds = [sampler_seed(5, session, worker) for session in range(4) for worker in (None, 0, 1, 2)]
    assert len(set(seeds)) == len(seeds)
    assert sampler_seed(5, 2, 1) == sampler_seed(5, 2, 1) != sampler_seed(6, 2, 1)  # reproducible, and by seed
    assert split_devices("cuda:0,cuda:1", 3) == ["cuda:0", "cuda:1", "cuda:0"]


def test_a_killed_worker_is_named_by_its_signal_and_no_error_is_said_to_be_above():
    assert worker_failure(-9).startswith("a worker was killed by SIGKILL") and "above" not in worker_failure(-9)
    assert worker_failure(1) == "a worker exited with status 1; its error is above"
