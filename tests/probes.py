"""Callbacks that look inside a real training run, for tests: added to a run's config as
`+callbacks.<name>._target_=probes.<Class>`, they write what they saw to `out` (JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
from torch import nn

LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


class LayerProbe(L.Callback):
    """Records, for every call of a linear or conv layer of the model during training steps,
    the dtype of its output and whether torch.compile was tracing it
    (`torch.compiler.is_compiling()`, public API). Writes {"dtypes": [...], "compiling": [...]}
    to `out` when training ends."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.dtypes: set[str] = set()
        self.compiling: set[bool] = set()
        self.in_step = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for module in pl_module.modules():
            if isinstance(module, LAYERS):
                module.register_forward_hook(self._seen)

    def _seen(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if self.in_step:
            self.dtypes.add(str(output.dtype))
            self.compiling.add(torch.compiler.is_compiling())

    def on_train_batch_start(self, *args) -> None:
        self.in_step = True

    def on_train_batch_end(self, *args) -> None:
        self.in_step = False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out.write_text(
            json.dumps({"dtypes": sorted(self.dtypes), "compiling": sorted(self.compiling)})
        )


class PerfProbe(L.Callback):
    """Records, at the first training batch, what the `perf` switches should have changed:
    the batch's and the conv weights' memory format, the optimizers' `fused` flag and torch's
    float32 matmul precision. Writes them to `out` (JSON) when training ends."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.seen: dict = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.seen:
            return
        x = batch[0]
        convs = [m.weight for m in pl_module.modules() if isinstance(m, nn.Conv2d)]
        self.seen = {
            "batch_channels_last": x.is_contiguous(memory_format=torch.channels_last),
            "conv_weights_channels_last": bool(convs)
            and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs),
            "fused": [g.get("fused") for opt in trainer.optimizers for g in opt.param_groups],
            "matmul_precision": torch.get_float32_matmul_precision(),
        }

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out.write_text(json.dumps(self.seen))
