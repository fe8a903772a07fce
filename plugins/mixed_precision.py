"""Mixed-precision training: forward passes under ``torch.autocast``, optionally in channels-last layout.

Micikevicius et al. 2018, "Mixed Precision Training" (fp16 compute with fp32 master weights
and loss scaling); He et al. 2019, "Bag of Tricks for Image Classification with Convolutional
Neural Networks" (section 3.1). bf16 has fp32's exponent range, so it needs no loss scaling;
fp16 does, through a ``GradScaler``. Only CUDA gets fp16 here: elsewhere (CPU) it falls back
to bf16, and the trial records the dtype it really used. Under a budget of device time the
cheaper step buys more steps, which is the point of comparing it at equal time.
"""

from __future__ import annotations

from typing import Any

import torch

from automl import Trick, hookimpl
from automl.checks import boolean, one_of

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
OWNER = "mixed precision"
"""How its error messages name the trick."""


def autocast_settings(device: torch.device, dtype: str) -> tuple[dict[str, Any], bool]:
    """The ``torch.autocast`` keywords for ``dtype`` on ``device``, and whether they need a grad scaler.

    fp16 is only used on CUDA; any other device gets bf16 instead.
    """
    one_of(OWNER, "dtype", dtype, DTYPES)
    if dtype == "fp16" and device.type != "cuda":
        dtype = "bf16"
    return {"device_type": device.type, "dtype": DTYPES[dtype]}, dtype == "fp16"


class MixedPrecision(Trick):
    name = "mixed_precision"
    # After the tricks that build the batch (mixup, ...), so the layout it sets is the one the model sees.
    order = 5

    @classmethod
    def search_space(cls, trial):
        return {"dtype": trial.suggest_categorical("dtype", ["bf16", "fp16"]),
                "channels_last": trial.suggest_categorical("channels_last", [True, False])}

    def __init__(self, dtype: str = "bf16", channels_last: bool = False) -> None:
        one_of(OWNER, "dtype", dtype, DTYPES)
        boolean(OWNER, "channels_last", channels_last)
        self.dtype = dtype
        self.channels_last = channels_last

    def setup(self, run) -> None:
        run.autocast, scaled = autocast_settings(run.device, self.dtype)
        # The scaler is what makes fp16 safe: small gradients would underflow to zero without it.
        run.grad_scaler = torch.amp.GradScaler(run.device.type) if scaled else None
        run.attrs["mixed_precision.dtype"] = "fp16" if scaled else "bf16"
        if self.channels_last:
            # Tensor cores read NHWC; converting the weights once here is free, converting them per step is not.
            run.model.to(memory_format=torch.channels_last)

    def transform_batch(self, run, x, y):
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y


@hookimpl
def automl_register_tricks():
    return [MixedPrecision]
