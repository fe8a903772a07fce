"""Tests of FreezeOut: each layer's LR anneals to zero at its own time, then the layer is frozen out of training."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from automl.testing import StepRecorder, tiny_data, tiny_model, train_tiny
from automl.trick import Trick
from automl_plugins.freezeout import GROUP_KEY, FreezeOut, freeze_times, layer_lr_factor
from automl_plugins.warmup import Warmup, warmup_factor

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 40
LR = 0.05


def _layers(model: nn.Module) -> list[nn.Module]:
    return [c for c in model.children() if any(True for _ in c.parameters())]


def _first_step_at(progress: list[float], t: float) -> int | None:
    return next((s for s, p in enumerate(progress) if p >= t), None)


class Snapshots(Trick):
    """At every step start (after FreezeOut's, as it comes later in the list): each layer's params and buffers,
    whether each is in the optimizer, and the frozen layers' grads."""

    name = "snapshots"

    def __init__(self):
        self.params: list[list[list[torch.Tensor]]] = []  # [step][layer] -> params
        self.buffers: list[list[list[torch.Tensor]]] = []
        self.in_optimizer: list[list[bool]] = []
        self.after_step: list[list[tuple[bool, bool]]] = []  # [step][layer] -> (any requires_grad, any grad)

    def on_step_start(self, run):
        layers = _layers(run.model)
        in_opt = {id(p) for g in run.optimizer.param_groups for p in g["params"]}
        self.params.append([[p.detach().clone() for p in c.parameters()] for c in layers])
        self.buffers.append([[b.clone() for b in c.buffers()] for c in layers])
        self.in_optimizer.append([any(id(p) in in_opt for p in c.parameters()) for c in layers])

    def on_step_end(self, run, loss):
        layers = _layers(run.model)
        state = {id(p) for p in run.optimizer.state}
        self.after_step.append([(any(p.requires_grad for p in c.parameters()),
                                 any(p.grad is not None or id(p) in state for p in c.parameters())) for c in layers])


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


# -- the maths ---------------------------------------------------------------------------

@pytest.mark.parametrize("t0", [0.3, 0.5, 0.8, 1.0])
def test_freeze_times_of_both_schedules(t0):
    n = 5
    linear = freeze_times(n, t0, "linear")
    cubic = freeze_times(n, t0, "cubic")
    for i in range(n):
        assert linear[i] == pytest.approx(t0 + (1 - t0) * i / (n - 1))
        assert cubic[i] == pytest.approx((t0 + (1 - t0) * i / (n - 1)) ** 3)
    assert linear[0] == pytest.approx(t0) and cubic[0] == pytest.approx(t0 ** 3)
    assert linear[-1] == cubic[-1] == 1.0
    if t0 < 1:
        assert all(a < b for a, b in zip(linear, linear[1:]))
        assert all(a < b for a, b in zip(cubic, cubic[1:]))
        assert all(c < l for c, l in zip(cubic[:-1], linear[:-1]))  # cubic: earlier layers freeze sooner
    assert freeze_times(1, t0, "cubic") == [1.0]  # a lone classifier trains to the end


@pytest.mark.parametrize(("args", "match"), [((0, 0.5, "linear"), "num_layers"), ((3, 0.0, "linear"), "t0"),
                                              ((3, 1.2, "cubic"), "t0"), ((3, 0.5, "squared"), "schedule")])
def test_freeze_times_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        freeze_times(*args)


def test_layer_factor_is_a_cosine_that_reaches_zero_at_t():
    t = 0.4
    assert layer_lr_factor(0.0, t) == 1.0
    assert layer_lr_factor(t / 2, t) == pytest.approx(0.5)
    assert layer_lr_factor(0.1, t) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.1 / t)))
    assert layer_lr_factor(t - 1e-9, t) == pytest.approx(0.0, abs=1e-12)
    assert layer_lr_factor(t, t) == layer_lr_factor(0.9, t) == 0.0


# -- a run -------------------------------------------------------------------------------

def test_a_frozen_layer_stops_exactly_when_progress_reaches_its_time():
    data = tiny_data()
    model = tiny_model(data)
    freezeout, snaps, rec = FreezeOut(t0=0.4, schedule="linear"), Snapshots(), StepRecorder()
    result = train_tiny([freezeout, snaps, rec], f"{STEPS}steps", data=data, model=model, lr=LR)
    assert result.steps == STEPS == len(snaps.params)
    layers = _layers(model)
    times = freeze_times(len(layers), 0.4, "linear")
    final = [[p.detach() for p in c.parameters()] for c in layers]
    expected_steps = [_first_step_at(rec.progress, t) for t in times]
    assert result.attrs["freezeout.frozen_at_step"] == expected_steps
    assert result.attrs["freezeout.freeze_times"] == pytest.approx(times)

    for i, t in enumerate(times[:-1]):
        s = expected_steps[i]
        assert s is not None and 0 < s < STEPS - 1
        # Trained by the step before (its LR was tiny but not zero; BN stats moved too) ...
        assert not _same(snaps.params[s - 1][i], snaps.params[s][i])
        assert not _same(snaps.buffers[s - 1][i], snaps.buffers[s][i])
        # ... and not changed at all from that step to the end, running statistics included.
        for later in range(s, STEPS):
            assert _same(snaps.params[later][i], snaps.params[s][i])
            assert _same(snaps.buffers[later][i], snaps.buffers[s][i])
        assert _same(final[i], snaps.params[s][i])
        # Out of the optimizer, no gradient, no state, from that step on; in it before.
        assert all(snaps.in_optimizer[k][i] for k in range(s))
        assert all(snaps.after_step[k][i] == (True, True) for k in range(s))
        assert not any(snaps.in_optimizer[k][i] for k in range(s, STEPS))
        assert all(snaps.after_step[k][i] == (False, False) for k in range(s, STEPS))

    # The classifier trains at every step to the very end.
    last = len(layers) - 1
    assert all(not _same(snaps.params[k][last], snaps.params[k + 1][last]) for k in range(STEPS - 1))
    assert not _same(snaps.params[-1][last], final[last])
    assert all(snaps.in_optimizer[k][last] and snaps.after_step[k][last] == (True, True) for k in range(STEPS))


@pytest.mark.parametrize("scale_lr", [True, False])
@pytest.mark.parametrize("schedule", ["linear", "cubic"])
def test_each_layer_lr_follows_its_own_cosine_times_the_warmup(schedule, scale_lr):
    t0, fraction = 0.6, 0.1
    rec = StepRecorder()
    result = train_tiny([FreezeOut(t0=t0, schedule=schedule, scale_lr=scale_lr), Warmup(fraction=fraction), rec],
                        f"{STEPS}steps", lr=LR)
    times = freeze_times(4, t0, schedule)  # small_cnn: three conv layers and the classifier
    assert len(rec.steps) == result.steps == STEPS
    for p, _, run_lr, lrs in rec.steps:
        assert run_lr == pytest.approx(LR * warmup_factor(p, fraction))
        expected = [run_lr / (t if scale_lr else 1.0) * 0.5 * (1 + math.cos(math.pi * p / t))
                    for t in times if p < t]
        assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert len(rec.steps[-1][3]) == 1 and rec.steps[-1][3][0] > 0  # only the classifier is left, still learning


class HalfLR(Trick):
    """Another trick that gives every param group its own lr_scale, before FreezeOut's setup."""

    name = "half_lr"
    order = -1  # a study runs hooks in order, then by name: before freezeout

    def setup(self, run):
        run.regroup(lambda name, param: {"lr_scale": 0.5, "tag": name.startswith("0.")})


def test_keeps_the_lr_scale_another_trick_gave_and_its_groups():
    rec = StepRecorder()
    seen = []

    class Groups(Trick):
        name = "groups"
        order = 1  # after freezeout's setup

        def setup(self, run):
            seen.extend((g[GROUP_KEY], g["tag"], len(g["params"])) for g in run.optimizer.param_groups)

    train_tiny([HalfLR(), FreezeOut(t0=0.5, schedule="linear", scale_lr=True), Groups(), rec], "10steps", lr=LR)
    times = freeze_times(4, 0.5, "linear")
    assert sorted({layer for layer, _, _ in seen}) == [0, 1, 2, 3]
    assert all(tag == (layer == 0) for layer, tag, _ in seen)
    p, _, run_lr, lrs = rec.steps[3]
    assert lrs == pytest.approx([run_lr * 0.5 / t * layer_lr_factor(p, t) for t in times])


class GradProbe(Trick):
    """Records how each layer ran in each training forward, and the autograd graph of each step's loss."""

    name = "grad_probe"

    def __init__(self):
        self.forwards: list[dict[int, tuple[bool, bool, bool]]] = []  # (grad enabled, output requires grad, BN training)
        self.graph: list[tuple[int, set[int]]] = []  # (nodes, ids of the params that get a gradient)

    def setup(self, run):
        model = run.model
        for i, layer in enumerate(_layers(model)):
            bn = next((m for m in layer.modules() if isinstance(m, nn.BatchNorm2d)), None)

            def hook(module, args, out, i=i, bn=bn):
                if model.training:  # a training step, not an evaluation
                    self.forwards[-1][i] = (torch.is_grad_enabled(), out.requires_grad,
                                            bn.training if bn is not None else None)

            layer.register_forward_hook(hook)

    def on_step_start(self, run):
        self.forwards.append({})

    def on_step_end(self, run, loss):
        seen, stack, leaves = set(), [loss.grad_fn], set()
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            if hasattr(node, "variable"):
                leaves.add(id(node.variable))
            stack.extend(fn for fn, _ in node.next_functions)
        self.graph.append((len(seen), leaves))


def test_the_leading_frozen_block_builds_no_graph_and_keeps_bn_in_eval_mode_across_evaluations():
    data = tiny_data()
    model = tiny_model(data)
    keys = list(model.state_dict())
    probe = GradProbe()
    # Four rungs: evaluations at 25%, 50% and 75% call model.train() afterwards.
    result = train_tiny([FreezeOut(t0=0.4, schedule="linear"), probe], f"{STEPS}steps", data=data, model=model,
                        rungs=4)
    assert len(result.history) == 4
    frozen_at = result.attrs["freezeout.frozen_at_step"]
    layers = _layers(model)
    assert frozen_at[0] < STEPS * 0.5 and frozen_at[1] < STEPS * 0.75  # frozen before some evaluations
    params_of = [{id(p) for p in c.parameters()} for c in layers]
    nodes = [n for n, _ in probe.graph]
    for step, (forwards, (_, leaves)) in enumerate(zip(probe.forwards, probe.graph)):
        assert sorted(forwards) == list(range(len(layers)))
        frozen = [s is not None and step >= s for s in frozen_at]
        for i, (grad_enabled, requires_grad, bn_training) in forwards.items():
            if frozen[i]:
                assert (grad_enabled, requires_grad) == (False, False)  # under no_grad, no graph
                assert bn_training is False  # running statistics, even after evaluations
                assert not params_of[i] & leaves  # backward never reaches it
            else:
                assert (grad_enabled, requires_grad) == (True, True)
                assert params_of[i] <= leaves
                assert bn_training in (True, None)
    # The graph shrinks at every freeze and only then.
    for step in range(1, STEPS):
        if step in frozen_at:
            assert nodes[step] < nodes[step - 1]
        else:
            assert nodes[step] == nodes[step - 1]
    # The model comes back as it was: same state_dict keys, its own forward, every param trainable.
    assert list(model.state_dict()) == keys
    assert "forward" not in vars(model)
    assert all(p.requires_grad for p in model.parameters())


def test_the_frozen_prefix_forward_computes_what_the_model_computes():
    outputs = []

    class Compare(Trick):
        name = "compare"

        def on_step_end(self, run, loss):
            if "forward" in vars(run.model):
                x = run.data.val.x[:8]
                with torch.no_grad():
                    outputs.append((run.model(x), nn.Sequential.forward(run.model, x)))

    train_tiny([FreezeOut(t0=0.3, schedule="linear"), Compare()], "20steps")
    assert len(outputs) > 5
    assert all(torch.equal(a, b) for a, b in outputs)


# -- construction ------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "match"), [({"t0": 0.0}, "t0"), ({"t0": -0.5}, "t0"), ({"t0": 1.5}, "t0"),
                                                ({"t0": True}, "t0"), ({"schedule": "squared"}, "schedule"),
                                                ({"scale_lr": 1}, "scale_lr")])
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FreezeOut(**kwargs)


def test_search_space_builds_valid_tricks():
    from automl.trick_space import SpaceRecorder, build_trick

    rec = SpaceRecorder("freezeout")
    trick = build_trick(FreezeOut, rec)
    assert set(rec.params) == {"t0", "schedule", "scale_lr"}
    t0 = rec.params["t0"]
    assert (t0.low, t0.high) == (0.3, 0.9) and t0.low <= trick.t0 <= t0.high
    assert list(rec.params["schedule"].choices) == ["linear", "cubic"]
    assert sorted(rec.params["scale_lr"].choices) == [False, True]
    assert trick.schedule in ("linear", "cubic") and isinstance(trick.scale_lr, bool)
