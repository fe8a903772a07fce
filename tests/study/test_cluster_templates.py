"""The templates of studies/cluster start one worker command, and the workers each starts share one study and one
ledger on PostgreSQL and stop on SIGTERM within the grace the template gives.

Issue 27, item 6. The workers run as the scheduler would start them (the sbatch script under a stand-in for srun,
the Job's container command in the environment its manifest gives), each with a host name of its own where this
machine allows one, against the test PostgreSQL. Each wait is on what the database says, never on how fast this
machine is.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from automl.storage.models import BudgetLedgerModel
from automl.study.processes import STOP_SECONDS
from tests.conftest import REPO_ROOT
from tests.study.test_fault_signals import (DEADLINE, assert_interrupted, assert_resumes_and_retries, ledger_settled,
                                            running_workers, trials, wait_for)

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install -e '.[dev]')")

CLUSTER = REPO_ROOT / "studies" / "cluster"
SBATCH = CLUSTER / "slurm.sbatch"
MANIFEST = CLUSTER / "kubernetes.yaml"
WORKER = "python3 -m automl run "
"""Where the worker command starts in both templates: from here on, their lines are one."""

BARRIER = '''
"""Holds each trial at its start until every worker of the test has begun one, so that each worker surely runs a
trial however long the others take to start."""
import os, socket, time

from automl import Trick, hookimpl


class Barrier(Trick):
    name = "barrier"

    def setup(self, run):
        folder = os.environ["BARRIER_DIR"]
        os.makedirs(folder, exist_ok=True)
        open(os.path.join(folder, f"{socket.gethostname()}:{os.getpid()}"), "w").close()
        deadline = time.monotonic() + float(os.environ["BARRIER_SECONDS"])
        while len(os.listdir(folder)) < int(os.environ["BARRIER_WORKERS"]) and time.monotonic() < deadline:
            time.sleep(0.1)


@hookimpl
def automl_register_tricks():
    return [Barrier]
'''

BARRIER_TRICKS = """
[tricks]
include = ["barrier"]

[tricks.barrier]
enabled = true
"""

SRUN = """#!/bin/sh
# srun inside an allocation, for the test: its options dropped, the program run in its place (as exec would).
while [ "${1#-}" != "$1" ]; do shift; done
exec "$@"
"""


def manifest() -> list[dict]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def of_kind(kind: str) -> dict:
    (doc,) = [doc for doc in manifest() if doc["kind"] == kind]
    return doc


def job_container() -> dict:
    (container,) = of_kind("Job")["spec"]["template"]["spec"]["containers"]
    return container


def sbatch_options() -> dict[str, str]:
    lines = SBATCH.read_text().splitlines()
    return dict(line.removeprefix("#SBATCH ").split("=", 1) for line in lines if line.startswith("#SBATCH "))


def sbatch_worker_line() -> str:
    (line,) = [line for line in SBATCH.read_text().splitlines() if WORKER in line and not line.startswith("#")]
    return line


def pod_env(container: dict, cpus: int | None = None) -> dict[str, str]:
    """The container's environment as Kubernetes makes it: a Secret's key read from the manifest, the CPU limit
    rounded up (or ``cpus``), and each ``$(NAME)`` filled in from the variables before it."""
    secrets = {doc["metadata"]["name"]: doc["stringData"] for doc in manifest() if doc["kind"] == "Secret"}
    env: dict[str, str] = {}
    for var in container["env"]:
        source = var.get("valueFrom", {})
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), var["value"])
        elif "secretKeyRef" in source:
            env[var["name"]] = secrets[source["secretKeyRef"]["name"]][source["secretKeyRef"]["key"]]
        elif source.get("resourceFieldRef", {}).get("resource") == "limits.cpu":
            env[var["name"]] = str(cpus or math.ceil(float(container["resources"]["limits"]["cpu"])))
        else:
            raise AssertionError(f"the test cannot give {var}")
    return env


def test_both_templates_start_the_same_worker_command_with_nothing_between_it_and_the_signal():
    container = job_container()
    assert container["command"] == ["/bin/sh", "-c"]
    (script,) = container["args"]
    # exec all the way: the process the scheduler signals is automl itself, not a shell that keeps SIGTERM
    assert script.startswith(f"exec {WORKER}") and sbatch_worker_line().startswith(f"exec srun {WORKER}")
    assert script.removeprefix("exec ") == sbatch_worker_line().removeprefix("exec srun ")
    assert "--threads" in shlex.split(script) and "--storage" not in script  # the URL comes from the environment


def test_the_slurm_array_gives_n_workers_a_gpu_each_and_sigterm_before_the_time_limit():
    options = sbatch_options()
    first, last = map(int, options["--array"].split("-"))
    assert (first, last + 1) == (0, of_kind("Job")["spec"]["completions"])  # N the same in both templates
    assert options["--gres"] == "gpu:1"
    signum, seconds = options["--signal"].split("@")
    assert signum == "TERM" and int(seconds) >= STOP_SECONDS  # at least what automl gives its own workers
    text = SBATCH.read_text()
    assert 'WORKER_THREADS="${SLURM_CPUS_PER_TASK:-1}"' in text
    assert '"${AUTOML_STORAGE:?' in text  # the URL comes from the environment sbatch passes on, or nothing runs


def test_the_kubernetes_job_gives_n_workers_a_gpu_each_against_the_postgres_service():
    job, service, postgres = of_kind("Job"), of_kind("Service"), of_kind("StatefulSet")
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] > 1
    assert pod["restartPolicy"] == "Never" and pod["terminationGracePeriodSeconds"] >= STOP_SECONDS
    container = job_container()
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = pod_env(container)
    assert env["WORKER_THREADS"] == "8" == str(container["resources"]["limits"]["cpu"])
    (server,) = postgres["spec"]["template"]["spec"]["containers"]
    server_env = pod_env(server)
    url = make_url(env["AUTOML_STORAGE"])
    assert (url.host, url.port) == (service["metadata"]["name"], service["spec"]["ports"][0]["port"])
    assert (url.username, url.password, url.database) == (
        server_env["POSTGRES_USER"], server_env["POSTGRES_PASSWORD"], server_env["POSTGRES_DB"])
    assert service["spec"]["selector"].items() <= postgres["spec"]["template"]["metadata"]["labels"].items()
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (study,) = [v["name"] for v in pod["volumes"] if "configMap" in v]
    assert Path(env["STUDY_FILE"]).parent == Path(mounts[study])


@functools.cache
def own_host_name() -> tuple[str, ...] | None:
    """How to start a process with a host name of its own, as each node or pod of a cluster has: in a new UTS
    namespace (as root, or through a user namespace where they are allowed); None where neither is."""
    for unshare in (("unshare", "--uts"), ("unshare", "--user", "--map-root-user", "--uts")):
        try:
            # the new name is set inside the new namespace only: this machine's own is left alone
            probe = subprocess.run([*unshare, "hostname", "automl-probe"], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return unshare
    return None


@dataclass
class Worker:
    process: subprocess.Popen
    host: str

    @property
    def id(self) -> str:
        """As the ledger records it (``automl.storage.ledger.worker_id``)."""
        return f"{self.host}:{self.process.pid}"


def start(host: str, argv: list[str], env: dict[str, str], cwd: Path) -> Worker:
    unshare = own_host_name()
    if unshare:
        argv = [*unshare, "sh", "-c", 'hostname "$0" && exec "$@"', host, *argv]
    process = subprocess.Popen(argv, cwd=cwd, env=dict(env, HOSTNAME=host), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    return Worker(process, host if unshare else socket.gethostname())


def slurm_worker(index: int, study: Path, url: str, env: dict[str, str]) -> Worker:
    """Array task ``index`` of the sbatch script, as Slurm starts it on a node: its environment, its argument."""
    env = dict(env, AUTOML_STORAGE=url, WORKER_DEVICE="cpu", SLURM_JOB_ID=str(100 + index), SLURM_ARRAY_JOB_ID="100",
               SLURM_ARRAY_TASK_ID=str(index), SLURM_CPUS_PER_TASK="1")
    return start(f"node{index}", ["bash", str(SBATCH), str(study)], env, study.parent)


def kubernetes_worker(index: int, study: Path, url: str, env: dict[str, str]) -> Worker:
    """The pod of completion index ``index`` of the Job: its container's command in the environment the manifest
    gives it (the study file, storage and data folder where this test has them, and one CPU)."""
    container = job_container()
    pod = dict(pod_env(container, cpus=1), STUDY_FILE=str(study), AUTOML_STORAGE=url, WORKER_DEVICE="cpu",
               AUTOML_DATA=str(study.parent / "data"), JOB_COMPLETION_INDEX=str(index))
    # An Indexed Job's pod is named, and has the host name, JOB-INDEX.
    host = f"{of_kind('Job')['metadata']['name']}-{index}"
    return start(host, [*container["command"], *container["args"]], dict(env, **pod), study.parent)


TEMPLATES = {"slurm": slurm_worker, "kubernetes": kubernetes_worker}


@pytest.fixture
def cluster_env(child_env, tmp_path, study_file):
    """The environment of the workers: the checkout, the image's `python3` and Slurm's `srun` on the path, and the
    barrier trick pinned on in ``study_file``."""
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "srun").write_text(SRUN)
    (shims / "python3").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    for shim in shims.iterdir():
        shim.chmod(0o755)
    (tmp_path / "barrier.py").write_text(BARRIER)
    study_file.write_text(study_file.read_text() + BARRIER_TRICKS)
    env = child_env()
    return dict(env, PATH=f"{shims}{os.pathsep}{env.get('PATH', '')}", AUTOML_PLUGINS=str(tmp_path / "barrier.py"),
                BARRIER_DIR=str(tmp_path / "barrier"), BARRIER_WORKERS="2", BARRIER_SECONDS=str(DEADLINE))


@pytest.fixture
def workers():
    """The workers a test starts, killed at its end if one still runs (a failed test leaves none behind)."""
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def ledger_rows(url: str) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.select(BudgetLedgerModel)).all()
    finally:
        engine.dispose()


def finished(worker: Worker, timeout: float = DEADLINE) -> tuple[int, str]:
    """The worker's exit status and its stderr, once it has exited."""
    code = worker.process.wait(timeout)
    return code, worker.process.stderr.read()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("template", TEMPLATES)
def test_the_workers_a_template_starts_share_one_study_and_one_ledger(template, study_file, postgres_url,
                                                                     cluster_env, workers):
    workers.extend(TEMPLATES[template](index, study_file, postgres_url, cluster_env) for index in range(2))
    for worker in workers:
        code, err = finished(worker)
        assert code == 0 and "Traceback" not in err, err
    assert optuna.get_all_study_names(postgres_url) == ["tiny"]
    done = trials(postgres_url)
    assert [t.state for t in done] == [TrialState.COMPLETE] * 2  # n_trials, across both workers
    assert len({t.params["train.lr"] for t in done}) == 2  # each run samples anew: the workers draw apart
    (ledger,) = ledger_rows(postgres_url)
    assert (ledger.study_name, ledger.sessions_started, ledger.trials_started) == ("tiny", 2, 2)
    reserved, unbalanced, rows = ledger_settled(postgres_url)
    assert reserved == pytest.approx(0, abs=1e-9) and unbalanced == pytest.approx(0, abs=1e-6)
    assert set(rows) == {t.number for t in done}
    # each trial is charged to the worker that ran it, and each worker, on its own host, ran one
    assert sorted(row.worker_id for row in rows.values()) == sorted(worker.id for worker in workers)


def grace_seconds(template: str) -> float:
    """How long the template's scheduler waits after SIGTERM before it kills (Slurm: how early it signals)."""
    if template == "slurm":
        return float(sbatch_options()["--signal"].split("@")[1])
    return float(of_kind("Job")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("template", TEMPLATES)
def test_a_worker_a_template_starts_stops_on_sigterm_within_the_grace_and_its_trial_is_retried(
        template, study_file, postgres_url, cluster_env, workers):
    workers.extend(TEMPLATES[template](index, study_file, postgres_url, cluster_env) for index in range(2))
    running = wait_for(lambda: running_workers(postgres_url, 2), "a running trial on each worker", workers[0].process)
    # the pids the ledger records are the processes the scheduler signals: nothing stands between them
    assert sorted(running) == sorted(worker.process.pid for worker in workers)
    stopped, other = workers
    stopped.process.send_signal(signal.SIGTERM)
    code, err = finished(stopped, grace_seconds(template))
    assert code == 128 + signal.SIGTERM and "Traceback" not in err, err
    code, err = finished(other)
    assert code == 0 and "Traceback" not in err, err
    interrupted = assert_interrupted(postgres_url, [stopped.process.pid])
    (row,) = [row for number, row in ledger_settled(postgres_url)[2].items() if number in interrupted]
    assert row.worker_id == stopped.id
    # the other worker may have retried it already; if it had no trial left to start then, the next run does
    assert_resumes_and_retries(study_file, postgres_url, cluster_env, interrupted)
    (retry,) = [t for t in trials(postgres_url) if t.system_attrs.get("failed_trial") in interrupted]
    assert retry.state == TrialState.COMPLETE
