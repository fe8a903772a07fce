"""Worker processes: the options a parent hands its workers, and the seeds that keep their samples apart."""

from __future__ import annotations

from automl.cli import build_parser
from automl.study.processes import split_devices, worker_argv, worker_seed


def test_a_worker_is_given_the_parents_options_except_storage_and_device():
    parent = build_parser().parse_args([
        "run", "study.toml", "--variant", "cifar10", "--study-name", "s", "--n-trials", "7", "--total-budget", "5m",
        "--trial-budget", "30ep", "--seed", "3", "--plugin", "a.py", "--plugin", "b.py", "--storage", "sqlite:///x.db",
        "--device", "cuda:0,cuda:1", "--workers", "2", "--traceback", "--accept-plugin-change"])
    child = build_parser().parse_args(["run", *worker_argv(parent), "--worker", "1"])
    for option in ("study_file", "variant", "study_name", "n_trials", "total_budget", "trial_budget", "seed",
                   "plugin", "traceback", "accept_plugin_change"):
        assert getattr(child, option) == getattr(parent, option), option
    assert child.storage is None and child.device is None and child.workers == 1  # handed over apart


def test_each_worker_samples_with_its_own_seed():
    seeds = [worker_seed(0, i) for i in range(8)]
    assert len(set(seeds)) == 8 and 0 not in seeds
    assert split_devices("cuda:0,cuda:1", 3) == ["cuda:0", "cuda:1", "cuda:0"]
