"""The tricks on models automl did not write: torchvision's ResNet-18 and, when installed, timm's.

Each trick's effect is checked on the foreign model as its own test checks it on automl's: FreezeOut's frozen
layers get no gradient and stop moving, zero_gamma's gammas are zero at the first step, no_bias_decay decays
the conv and linear weights alone, EMA's average is the one written out by hand, SWA's is the mean over its
window with BatchNorm recomputed, a snapshot ensemble predicts the mean of its snapshots' softmaxes,
mixed_precision runs the convolutions in bf16 on channels-last inputs and weights kept in fp32, and
distillation's teacher, a ResNet-18 checkpoint, is rebuilt from it and gives the student its logits.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from automl.storage.artifacts import checkpoint
from automl.testing import tiny_data, train_tiny
from automl.train.models import build_model
from automl.run import TrialContext
from automl.trick import Trick
from automl_plugins.distillation import Distillation
from automl_plugins.ema import Ema, ema_decay
from automl_plugins.freezeout import FreezeOut, forward_layers
from automl_plugins.mixed_precision import MixedPrecision
from automl_plugins.no_bias_decay import NoBiasDecay
from automl_plugins.snapshot_ensemble import SnapshotEnsemble
from automl_plugins.swa import Swa
from automl_plugins.zero_gamma import NO_BLOCK, ZeroGamma

pytestmark = pytest.mark.usefixtures("one_thread")

TORCHVISION_LAYERS = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]
RESNET18_BLOCKS = 8
WD = 0.01


def _data():
    return tiny_data(n_train=64, n_val=32, n_test=32)


def _model(spec: str, data, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(spec, in_channels=data.input_shape[0], num_classes=data.num_classes)


class Recorder(Trick):
    """At each step start: the params of each FreezeOut layer, the gammas, the param groups' weight decay;
    after each step: which layers' params hold a gradient. Last in the order: it sees every trick's work."""

    name = "recorder"
    order = 1 << 30

    def __init__(self, layers):
        self.layers = layers
        self.params, self.grads, self.gammas, self.decay = [], [], None, None

    def on_step_start(self, run):
        self.params.append([[p.detach().clone() for m in layer for p in m.parameters()] for layer in self.layers])
        if run.step == 0:
            self.gammas = {n: m.weight.detach().clone() for n, m in run.model.named_modules()
                           if isinstance(m, nn.BatchNorm2d)}
            names = {id(p): n for n, p in run.model.named_parameters()}
            self.decay = {names[id(p)]: g["weight_decay"] for g in run.optimizer.param_groups for p in g["params"]}

    def on_step_end(self, run, loss):
        self.grads.append([any(p.grad is not None for m in layer for p in m.parameters()) for layer in self.layers])


def _check_freezeout(model, data, expected_layers: int):
    layers = forward_layers(model)
    assert len(layers) == expected_layers
    trick, rec = FreezeOut(t0=0.3, schedule="linear", scale_lr=False), Recorder(layers)
    result = train_tiny([trick, rec], "20steps", data=data, model=model, lr=0.05, batch_size=16)
    frozen_at = result.attrs["freezeout.frozen_at_step"]
    frozen = [i for i, step in enumerate(frozen_at) if step is not None]
    assert frozen == list(range(len(frozen))) and len(frozen) >= 2  # a prefix, in forward order
    assert frozen_at[-1] is None  # the classifier trains to the end
    for i in frozen:
        start = frozen_at[i]
        # From the step it froze at: no gradient is computed for it, and it never moves again.
        assert not any(rec.grads[s][i] for s in range(start, result.steps)), i
        assert all(torch.equal(a, b) for a, b in zip(rec.params[start][i], rec.params[-1][i])), i
        if start > 0:
            assert rec.grads[start - 1][i], i  # and it did train before
    assert all(step[-1] for step in rec.grads)


def test_freezeout_freezes_torchvision_resnet18_layer_by_layer_in_forward_order():
    data = _data()
    model = _model("torchvision:resnet18", data)
    names = {id(m): n for n, m in model.named_children()}
    assert [names[id(layer[0])] for layer in forward_layers(model)] == TORCHVISION_LAYERS
    _check_freezeout(model, data, len(TORCHVISION_LAYERS))


def test_zero_gamma_zeroes_the_last_bn_of_every_torchvision_block_at_the_first_step():
    data = _data()
    model = _model("torchvision:resnet18", data)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)  # away from 1, so that "untouched" cannot pass by chance
    last = {f"{n}.bn2" for n, m in model.named_modules() if type(m).__name__ == "BasicBlock"}
    rec = Recorder([])
    result = train_tiny([ZeroGamma(), rec], "2steps", data=data, model=model, lr=0.05)
    assert result.attrs["zero_gamma.blocks"] == len(last) == RESNET18_BLOCKS
    for name, gamma in rec.gammas.items():
        assert (torch.count_nonzero(gamma) == 0) == (name in last), name


def test_no_bias_decay_decays_only_the_conv_and_linear_weights_of_resnet18():
    data = _data()
    model = _model("torchvision:resnet18", data)
    rec = Recorder([])
    train_tiny([NoBiasDecay(), rec], "1steps", data=data, model=model, weight_decay=WD)
    decayed = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert sorted(rec.decay) == sorted(n for n, _ in model.named_parameters())
    for name, wd in rec.decay.items():
        assert wd == (WD if name in decayed else 0.0), name


class WeightRecorder(Trick):
    name = "weight_recorder"
    order = 1 << 30

    def __init__(self):
        self.after = []

    def on_step_end(self, run, loss):
        self.after.append((run.progress, {k: v.detach().clone() for k, v in run.model.state_dict().items()
                                          if v.is_floating_point()}))


def test_ema_averages_resnet18_as_written_out_by_hand():
    data, half_life = _data(), 0.2
    model = _model("torchvision:resnet18", data)
    trick, rec = Ema(half_life=half_life), WeightRecorder()
    train_tiny([trick, rec], "6steps", data=data, model=model, lr=0.05)
    (last, ema) = rec.after[0][0], dict(rec.after[0][1])
    for progress, state in rec.after[1:]:
        d = ema_decay(progress - last, half_life)
        ema = {k: d * ema[k] + (1 - d) * v for k, v in state.items()}
        last = progress
    averaged = trick.averaged.module.state_dict()
    assert all(torch.allclose(averaged[k], v, atol=1e-5) for k, v in ema.items())
    assert not all(torch.allclose(averaged[k], v, atol=1e-4) for k, v in rec.after[-1][1].items())


def test_zero_gamma_is_unavailable_for_a_network_without_residual_blocks_and_says_why():
    data = _data()
    context = TrialContext("s", 0, lambda: None, model=_model("torchvision:vgg11", tiny_data(shape=(3, 32, 32))))
    assert ZeroGamma.unavailable(context, {}) == NO_BLOCK
    resnet = TrialContext("s", 0, lambda: None, model=_model("torchvision:resnet18", data))
    assert ZeroGamma.unavailable(resnet, {}) is None
    assert ZeroGamma.unavailable(TrialContext("s", 0, lambda: None), {}) is None  # no model at hand: offered


def test_one_and_four_channel_images_get_a_first_conv_of_their_own():
    for channels in (1, 4):
        model = build_model("torchvision:resnet18", in_channels=channels, num_classes=5)
        assert model.conv1.in_channels == channels and model.conv1.out_channels == 64
        assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
        assert model(torch.randn(2, channels, 16, 16)).shape == (2, 5)


def test_timm_resnet18_freezes_by_its_own_groups_and_zeroes_its_blocks():
    pytest.importorskip("timm", reason="timm is not installed; pip install -e \".[timm]\" (it is in [dev])")
    data = _data()
    model = _model("timm:resnet18", data)
    assert model.conv1.in_channels == 1  # timm's own in_chans
    _check_freezeout(model, data, 1 + RESNET18_BLOCKS + 1)  # the stem, each block, the head
    model = _model("timm:resnet18", data)
    rec = Recorder([])
    result = train_tiny([ZeroGamma(), rec], "1steps", data=data, model=model, lr=0.05)
    last = {f"{n}.bn2" for n, m in model.named_modules() if hasattr(m, "zero_init_last")}
    assert result.attrs["zero_gamma.blocks"] == len(last) == RESNET18_BLOCKS
    for name, gamma in rec.gammas.items():
        assert (torch.count_nonzero(gamma) == 0) == (name in last), name


def _error(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(1) != y).float().mean().item()


def test_swa_averages_resnet18_over_its_window_and_recomputes_its_batchnorm():
    data = _data()
    model = _model("torchvision:resnet18", data)
    trick, rec = Swa(fraction=0.5), WeightRecorder()
    result = train_tiny([trick, rec], "8steps", data=data, model=model, lr=0.05, batch_size=16)
    window = [state for progress, state in rec.after if progress >= 0.5 - 1e-9]
    assert len(window) == int(trick.averaged.n_averaged) == 4
    averaged = trick.averaged.module
    for name, param in averaged.named_parameters():
        assert torch.allclose(param, torch.stack([s[name] for s in window]).mean(0), atol=1e-5), name
    # BatchNorm's statistics recomputed on the training split for the averaged weights: not the model's.
    bn, model_bn = averaged.bn1, model.bn1
    assert not torch.allclose(bn.running_mean, model_bn.running_mean, atol=1e-4)
    assert bn.num_batches_tracked.item() == len(data.train) // 16
    with torch.no_grad():
        assert result.val_error == pytest.approx(_error(averaged.eval()(data.val.x), data.val.y))


def test_a_snapshot_ensemble_of_resnet18_predicts_the_mean_of_its_snapshots_softmaxes():
    data = _data()
    model = _model("torchvision:resnet18", data)
    trick = SnapshotEnsemble(cycles=3, alpha0=0.05)
    result = train_tiny([trick], "9steps", data=data, model=model, batch_size=16)
    assert trick.taken == 3 == len(trick.snapshots) == result.attrs["inference_cost"]
    assert not torch.equal(trick.snapshots[0]["fc.weight"], trick.snapshots[1]["fc.weight"])
    member = copy.deepcopy(model).eval()
    probs = []
    with torch.no_grad():
        for state in trick.snapshots:
            member.load_state_dict(state)
            probs.append(member(data.val.x).softmax(1))
        alone = model.eval()(data.val.x)
    ensemble = torch.stack(probs).mean(0)
    assert result.val_error == pytest.approx(_error(ensemble, data.val.y))
    assert result.val_error_model == pytest.approx(_error(alone, data.val.y))


class ConvInputs(Trick):
    """Each training step's loss, and what resnet18's first convolution received and gave in its forwards."""

    name = "conv_inputs"
    order = 1 << 30

    def __init__(self):
        self.seen, self.losses = [], []

    def setup(self, run):
        def record(module, inputs, output):
            if module.training:
                self.seen.append((output.dtype, inputs[0].is_contiguous(memory_format=torch.channels_last)))
        run.model.conv1.register_forward_hook(record)

    def on_step_end(self, run, loss):
        self.losses.append(loss.item())


def test_mixed_precision_with_channels_last_on_resnet18_runs_bf16_convs_on_fp32_weights():
    data = tiny_data(shape=(3, 16, 16), n_train=64, n_val=32, n_test=32)  # 3 channels: channels-last is visible
    model, probe = _model("torchvision:resnet18", data), ConvInputs()
    # Two steps at a small LR: the test is of the layout and the dtypes, not of how far bf16 steps can go
    # before a fresh ResNet-18 on 16x16 images, batch 16, diverges (its fp32 loss goes 2.5, 12, 26 at LR 0.1).
    result = train_tiny([MixedPrecision(dtype="bf16", channels_last=True), probe], "2steps", data=data,
                        model=model, batch_size=16, lr=0.001)
    assert probe.seen == [(torch.bfloat16, True)] * result.steps == [(torch.bfloat16, True)] * 2
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    # A 1x1 kernel (the downsampling shortcuts) is contiguous in both formats; a 3x3 one in one only.
    assert not any(c.weight.is_contiguous() for c in convs if c.kernel_size != (1, 1))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    # The bf16 forward computes the same thing: the first loss, before any update, is the fp32 one to bf16's
    # precision (8 bits of mantissa, about 0.4%), on the same weights and batch.
    fp32 = ConvInputs()
    train_tiny([fp32], "1steps", data=data, model=_model("torchvision:resnet18", data), batch_size=16, lr=0.001)
    assert fp32.seen == [(torch.float32, False)]
    assert probe.losses[0] == pytest.approx(fp32.losses[0], rel=0.01) and probe.losses[0] != fp32.losses[0]


def test_distillation_rebuilds_a_resnet18_teacher_from_its_checkpoint_and_teaches_with_its_logits(tmp_path):
    data = _data()
    teacher = _model("torchvision:resnet18", data, seed=5)
    train_tiny(budget="4steps", data=data, model=teacher, lr=0.05, batch_size=16)
    path = tmp_path / "teacher.pt"
    torch.save(checkpoint(teacher, "torchvision:resnet18", {}, data.input_shape[0], data.num_classes), path)
    teacher.eval()
    trick = Distillation(temperature=2.0, weight=1.0, teacher=str(path))
    checks = []

    class Check(Trick):
        name = "check"
        order = 20

        def transform_batch(self, run, x, y):
            with torch.no_grad():
                expected = teacher(x)
            checks.append(torch.allclose(trick._teacher_logits, expected, atol=1e-5))
            return x, y

    student = _model("torchvision:resnet18", data, seed=9)
    result = train_tiny([trick, Check()], "3steps", data=data, model=student, batch_size=16)
    assert checks == [True] * result.steps
    assert result.attrs["distillation.teacher"] == str(path)
    with torch.no_grad():  # the student is not the teacher: the soft loss had something to teach
        assert not torch.allclose(F.softmax(student.eval()(data.val.x), 1), F.softmax(teacher(data.val.x), 1))
