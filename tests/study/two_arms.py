"""The tiny two-arm comparison the tests of `automl compare` and its report share, and its probe trick."""

from optuna.trial import TrialState

from automl import records

# Pinned on in every arm, so it doubles no arm: it records what the trial started from (a digest of the initial
# weights and of the first batch) and, when $PROBE_STOP_FILE counts down to 0, stops the run with a real SIGINT;
# when $PROBE_KILL_FILE does, it kills its own process with SIGKILL at the third step of that trial.
PROBE = '''
import hashlib, os, signal

from automl import Trick, hookimpl


def digest(tensors):
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def counted_down(variable):
    """Whether the count in the file $variable names reaches 0 with this trial (one less each trial)."""
    path = os.environ.get(variable)
    if not path or not os.path.exists(path):
        return False
    left = int(open(path).read()) - 1
    open(path, "w").write(str(left))
    return left == 0


class Probe(Trick):
    name = "probe"

    def setup(self, run):
        run.attrs["probe.weights"] = digest(run.model.parameters())
        if counted_down("PROBE_STOP_FILE"):
            os.kill(os.getpid(), signal.SIGINT)
        self.kill_at_step = 3 if counted_down("PROBE_KILL_FILE") else None
        self.steps = 0

    def transform_batch(self, run, x, y):
        run.attrs.setdefault("probe.first_batch", digest([x, y]))
        self.steps += 1
        if self.steps == self.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        return x, y


@hookimpl
def automl_register_tricks():
    return [Probe]
'''

TWO_ARMS = """
[tricks]
include = ["cosine", "probe"]

[tricks.cosine]
final = 0.0

[tricks.probe]
enabled = true
"""


def complete_by_cell(cells: list) -> dict[tuple, list]:
    """The completed trials of a comparison's budget study by (arm, seed), a retry under its cell."""
    by_number = {t.number: t for t in cells}
    by_cell: dict[tuple, list] = {}
    for trial in cells:
        if trial.state == TrialState.COMPLETE:
            first = by_number[records.original_number(trial)]
            by_cell.setdefault((first.user_attrs[records.ATTR_COMPARE_ARM],
                                first.user_attrs[records.ATTR_COMPARE_SEED]), []).append(trial)
    return by_cell
