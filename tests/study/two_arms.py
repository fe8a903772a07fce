"""The tiny two-arm comparison the tests of `automl compare` and its report share, and its probe trick."""

# Pinned on in every arm, so it doubles no arm: it records what the trial started from (a digest of the initial
# weights and of the first batch) and, when $PROBE_STOP_FILE counts down to 0, stops the run with a real SIGINT.
PROBE = '''
import hashlib, os, signal

from automl import Trick, hookimpl


def digest(tensors):
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Probe(Trick):
    name = "probe"

    def setup(self, run):
        run.attrs["probe.weights"] = digest(run.model.parameters())
        path = os.environ.get("PROBE_STOP_FILE")
        if path and os.path.exists(path):
            left = int(open(path).read()) - 1
            open(path, "w").write(str(left))
            if left == 0:
                os.kill(os.getpid(), signal.SIGINT)

    def transform_batch(self, run, x, y):
        run.attrs.setdefault("probe.first_batch", digest([x, y]))
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
