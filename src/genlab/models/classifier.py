"""An image classifier: genlab's own domain feature network for generation metrics
(`fid_domain`, ...) on data and machines where Inception does not fit."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MultilabelAccuracy

from genlab.models.genlab_module import OptimizerFactory, SchedulerFactory, StepModule
from genlab.utils.errors import GenlabError


class Classifier(StepModule):
    """Trains `net` (x in [0, 1] -> logits) with cross-entropy on class labels, or with
    binary cross-entropy on attribute vectors when `multilabel=True` (CelebA).

    Logs `{train,val,test}/loss` and `{val,test}/acc`; judged by `val/acc` (mode max).
    `features(x)` gives the net's penultimate layer, the embedding of the domain metrics.
    """

    def __init__(
        self,
        *,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        multilabel: bool = False,
        monitor: str = "val/acc",
        monitor_mode: str = "max",
    ) -> None:
        super().__init__()
        num_classes = getattr(net, "num_classes", None)
        if not num_classes:
            raise GenlabError(
                "model=classifier needs the number of classes: this datamodule declares none "
                "(data.num_classes is null). Set model.net.num_classes=K, and "
                "model.multilabel=true for attribute vectors such as CelebA's 40 attributes."
            )
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.multilabel = multilabel
        self.monitor, self.monitor_mode = monitor, monitor_mode

        def accuracy() -> nn.Module:
            if multilabel:
                return MultilabelAccuracy(num_labels=num_classes, average="micro")
            return MulticlassAccuracy(num_classes=num_classes, average="micro")

        self.acc = nn.ModuleDict({"val": accuracy(), "test": accuracy()})

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        have, want = getattr(dm, "num_classes", None), int(self.net.num_classes)
        if have and not self.multilabel and int(have) > want:
            raise GenlabError(
                f"the data has {have} classes but model.net.num_classes={want}: set "
                f"model.net.num_classes={have} (labels above {want - 1} would not fit)."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (b, num_classes) logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)  # (b, feature_dim)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(logits, y.float())
        if y.ndim != 1:
            raise GenlabError(
                f"labels of shape {tuple(y.shape)} are not class indices: for attribute "
                "vectors (e.g. CelebA) set model.multilabel=true and model.net.num_classes to "
                "their length."
            )
        # checked where the host reads values anyway (not at every training step: a sync)
        checked = not self.training or self.logs_now("train")
        if checked and len(y) and int(y.max()) >= logits.shape[1]:
            raise GenlabError(
                f"label {int(y.max())} does not fit a classifier with {logits.shape[1]} classes: "
                "set model.net.num_classes to the number of classes of this dataset."
            )
        return F.cross_entropy(logits, y)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch  # (b, c, h, w) in [0, 1], (b,) or (b, k)
        logits = self(x)
        loss = self.loss(logits, y)
        if self.logs_now(stage):
            self.log_scalars(stage, {"loss": loss}, batch_size=len(x), prog_bar=("loss",))
        if stage in self.acc:
            self.acc[stage].update(logits, y.long() if self.multilabel else y)
            self.log(f"{stage}/acc", self.acc[stage], prog_bar=True, batch_size=len(x))
        return loss
