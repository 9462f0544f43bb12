"""Training scalars are computed and logged only on the batches the loggers record."""

from __future__ import annotations

import csv

import lightning as L
import pytest
from conftest import FAST, make_cfg

from genlab.train import train


class LogSpy(L.Callback):
    """Records which training batch each `self.log("train/...")` call came from."""

    calls: list[tuple[int, str]] = []

    def setup(self, trainer, pl_module, stage) -> None:
        original, self.batch_idx = pl_module.log, -1

        def log(name, *args, **kwargs):
            if trainer.training and name.startswith("train/"):
                LogSpy.calls.append((self.batch_idx, name))
            return original(name, *args, **kwargs)

        pl_module.log = log

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch_idx = batch_idx


@pytest.mark.parametrize(
    ("model", "names"),
    [
        ("vae", {"loss", "nelbo_nats", "bits_per_dim", "recon_nats", "kl_nats", "kl_weight"}),
        ("gan", {"loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g"}),
    ],
)
def test_train_scalars_only_on_logging_steps(tmp_path, model, names):
    LogSpy.calls = []
    cfg = make_cfg(
        tmp_path,
        *FAST,
        f"model={model}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=7",
        "trainer.log_every_n_steps=3",
        "+callbacks.spy._target_=test_logging.LogSpy",
        "test=false",
    )
    summary = train(cfg)
    assert summary["global_step"] == 7
    # Lightning writes batches 2 and 5 (every 3rd); nothing is computed for the others
    assert sorted({b for b, _ in LogSpy.calls}) == [2, 5]
    for batch in (2, 5):
        logged = {n.removeprefix("train/") for b, n in LogSpy.calls if b == batch}
        assert logged == names
    # ... and the loggers received exactly those: one row per logging step
    (path,) = tmp_path.glob("run/csv/**/metrics.csv")
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r.get(f"train/{sorted(names)[0]}")]
    assert [int(r["step"]) for r in rows] == [2, 5]
