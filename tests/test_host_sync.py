"""On a GPU the host must never wait: no `.item()`, `.tolist()`, `bool(tensor)`, `float()`,
`.cpu()` or Python-number `torch.tensor(..., device=...)` in any family's training step between
the steps the loggers write (every `trainer.log_every_n_steps`), progress bar and callbacks
included. On the CPU these calls do not wait, but they are the same calls: counted here per
training batch, for every family, as users run it (default callbacks, the progress bar).

Not counted: calls inside torch.optim, whose step counters are CPU tensors unless an optimizer
is `capturable` or `fused` (then they live on the device and are not read on the host).
Shown failing (scratch copy): the non-finite check every 10 steps (1 `tolist` per 10 steps),
the classifier's label check at every step (`__int__`), a training row logged as separate
values converted one by one (`item`), the GAN logging `kl_weight`-style Python floats."""

from __future__ import annotations

import collections
import traceback

import lightning as L
import pytest
import torch
from conftest import FAST, TINY_GAN, make_cfg

from genlab.train import train

WATCHED = ("item", "tolist", "__bool__", "__float__", "__int__", "cpu")
LOG_EVERY = 50

FAMILIES = {
    "ae": ["model.encoder.hidden_dims=[32]", "model.decoder.hidden_dims=[32]"],
    "vae": ["model=vae", "model.encoder.hidden_dims=[32]", "model.decoder.hidden_dims=[32]"],
    "wae": ["model=wae", "model.encoder.hidden_dims=[32]", "model.decoder.hidden_dims=[32]"],
    "classifier": ["model=classifier", "model.net.hidden_channels=[4,8]"],
    "gan": TINY_GAN,
    "cgan_wgan_gp": [*TINY_GAN, "model=cgan", "model.loss=wgan_gp", "model.n_critic=2"],
    "pggan": [
        "experiment=pggan_mnist",
        "model.latent_dim=8",
        "model.generator.max_channels=8",
        "model.discriminator.max_channels=8",
        # no stage ends within the batches counted (a stage's snapshot is an event, as an
        # epoch's end is)
        "model.stabilise_images=100000",
    ],
    "pix2pix": [
        "experiment=pix2pix_edges_mnist",
        "model.generator.base_channels=4",
        "model.discriminator.base_channels=4",
    ],
}


class Counter(L.Callback):
    """Counts the watched calls made between the start of a batch that is not a logging step
    and the start of the next batch (everything the step and every batch hook did)."""

    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()
        self.sites: collections.Counter = collections.Counter()
        self.active = False
        self.batches = 0
        self._saved: dict[str, object] = {}

    def _wrap(self, name: str):
        original = getattr(torch.Tensor, name)

        def watched(tensor, *args, **kwargs):
            if self.active:
                frames = traceback.extract_stack(limit=6)[:-1]
                if not any("torch/optim/" in f.filename for f in frames[-2:]):
                    self.counts[name] += 1
                    self.sites[(name, f"{frames[-1].filename}:{frames[-1].lineno}")] += 1
            return original(tensor, *args, **kwargs)

        self._saved[name] = original
        return watched

    def on_fit_start(self, trainer, pl_module) -> None:
        for name in WATCHED:
            setattr(torch.Tensor, name, self._wrap(name))
        original = torch.tensor
        self._saved["torch.tensor"] = original

        def tensor(data, *args, **kwargs):
            if self.active and "device" in kwargs and not isinstance(data, torch.Tensor):
                self.counts["tensor(device=)"] += 1
            return original(data, *args, **kwargs)

        torch.tensor = tensor

    def on_fit_end(self, trainer, pl_module) -> None:
        torch.tensor = self._saved.pop("torch.tensor")  # type: ignore[assignment]
        for name, original in self._saved.items():
            setattr(torch.Tensor, name, original)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # not counted: an epoch's first batch (after its start-up) and last (validation and
        # the epoch's end follow it), and logging steps, which may sync
        first, last = batch_idx == 0, batch_idx + 1 >= trainer.num_training_batches
        logs = (trainer.global_step + 1) % LOG_EVERY == 0
        self.active = not (first or last or logs)
        self.batches += self.active

    def on_validation_start(self, trainer, pl_module) -> None:
        self.active = False

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.active = False


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_no_host_device_sync_between_logging_steps(tmp_path, family):
    fast = [o for o in FAST if "log_every" not in o and "rich_progress_bar" not in o]
    cfg = make_cfg(
        tmp_path,
        *fast,
        *FAMILIES[family],
        f"trainer.log_every_n_steps={LOG_EVERY}",
        "trainer.limit_train_batches=10",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=1",
        "test=false",
    )
    counter = Counter()
    cfg_callbacks = cfg.callbacks  # the run's own callbacks, progress bar included
    assert "rich_progress_bar" in cfg_callbacks
    import genlab.training as training

    build = training.build_trainer

    def with_counter(cfg, model, callbacks, loggers):
        return build(cfg, model, [*callbacks, counter], loggers)

    training.build_trainer = with_counter
    try:
        summary = train(cfg)
    finally:
        training.build_trainer = build
    assert summary["status"] == "completed"
    assert counter.batches >= 6
    assert not counter.counts, f"{dict(counter.counts)} at {counter.sites.most_common(5)}"
