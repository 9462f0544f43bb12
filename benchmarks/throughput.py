"""Throughput of genlab's train entry against a plain PyTorch loop, in one run.

    python benchmarks/throughput.py --device cpu            # or cuda
    python benchmarks/throughput.py --device cuda --cases dcgan --steps 200
    python benchmarks/throughput.py --device cuda --cases dcgan_recipe --no-floor --name recipe

For each case the same nets (built from the same composed genlab config), the same
optimizers, the same precision and the same in-memory images are trained for a fixed number
of steps three ways, each in its own subprocess, alternating, `--repeats` times:
  plain      a hand-written loop: batches cut from a uint8 tensor on the device
  genlab     `genlab.train.train(cfg)` with the device-resident data (the default)
  genlab_dl  the same with `data.device_resident=false` (a torch DataLoader)
A fourth pair of runs measures Lightning's fixed cost per optimizer step on this machine: a
one-weight model trained through `lightning.Trainer` and through a plain loop. A step of t ms
cannot run faster under Lightning than t + that cost, so each row also shows the ratio this
floor alone allows ("ceiling").
Steps after `--warmup` are timed in `--windows` equal windows (device synchronised at each
boundary), and the fastest window of all repeats is reported, as timeit reports the fastest
run: other work on a shared machine only ever slows a window down. The JSON also keeps each
run's mean over all its timed steps.
Peak memory is the process's peak RSS on CPU, torch's peak allocated memory on CUDA. Results:
JSON and a Markdown table in --out. Progress bar, checkpoints, loggers and validation are off
on the genlab side, as a plain loop has none of them; genlab's own per-step work stays on
(training scalars at the default `trainer.log_every_n_steps`, GAN gradient norms on those
steps, the GAN's divergence check). EMA of G is off on both sides.
The `dcgan_recipe` case is the exception: genlab runs it as a user does (the DCGAN paper's
recipe at batch 128 with EMA of G, validation and sample grids every epoch, checkpoints, the
CSV logger), against the same plain loop; its ratio is the price of all that, and its row uses
each run's mean over all timed steps (validation and checkpoints fall between steps, so the
fastest window would leave them out). Its steady variant leaves out the epoch-end work and
every checkpoint (Lightning's default one included).
`dcgan_celeba` runs the recipe over one CelebA-length epoch (`--epoch-steps`, default 1271
steps at batch 128 on cuda) of synthetic images on the device, with the progress bar, and
reports its steps (ms per step after the warm-up) and its epoch's end (validation over a
CelebA-size split, grids, checkpoints) apart; the run stops one step into the next epoch, so
its final checkpoint and grids are not timed.
`--peer-dcgan PATH` also runs pytorch/examples' dcgan/main.py, unchanged, in this process
(`--dataset fake --imageSize 64 --batchSize 128`), after every case (docs/gpu.md says how
to get it); without it the peer is skipped, said in one line.
`--in-process` runs everything in this one process (the GPU check: there, each process paid
12-25 s of imports); `--probe` first times `genlab-train --help` and the imports, cold.
The images are mnist_5k's digits (bundled, no download), resized and made RGB where a case
needs 64x64x3 or 32x32x3 (CIFAR-size) inputs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

# the DCGAN paper's recipe at 64x64 as a user runs it: callbacks=gan (EMA grids, latent
# walks, checkpoints), the CSV logger
DCGAN_RECIPE = [
    "model=dcgan",
    "data.image_size=64",
    "data.channels=3",
    "data.batch_size=128",
    "callbacks=gan",
    "~callbacks.rich_progress_bar",
    "logger=csv",
]
CASES = {
    "dcgan": dict(
        overrides=[
            "model=dcgan",
            "data.image_size=64",
            "data.channels=3",
            "data.batch_size=64",
            "model.ema_decay=null",
        ],
        label="DCGAN 64x64 (G and D steps), batch 64",
        steps={"cpu": 30, "cuda": 300},
    ),
    "dcgan_k4": dict(
        overrides=[
            "model=dcgan",
            "data.image_size=64",
            "data.channels=3",
            "data.batch_size=64",
            "model.ema_decay=null",
            "perf.steps_per_batch=4",
        ],
        label="DCGAN 64x64, batch 64, 4 GAN iterations per Lightning batch",
        steps={"cpu": 32, "cuda": 300},
        per_batch=4,
    ),
    "vae": dict(
        overrides=["experiment=vae_mnist_classic"],
        label="MLP VAE 784-400-20, batch 128",
        steps={"cpu": 300, "cuda": 1000},
    ),
    "vae_k8": dict(
        overrides=["experiment=vae_mnist_classic", "perf.steps_per_batch=8"],
        label="MLP VAE 784-400-20, batch 128, 8 steps per Lightning batch (the fast path)",
        steps={"cpu": 320, "cuda": 1024},
        per_batch=8,
    ),
    "conv_ae": dict(
        overrides=["model=ae", "model/encoder=conv", "model/decoder=conv", "data.batch_size=128"],
        label="conv autoencoder 28x28, batch 128",
        steps={"cpu": 100, "cuda": 1000},
    ),
    "cifar_conv": dict(
        overrides=[
            "model=ae",
            "model/encoder=conv",
            "model/decoder=conv",
            "data.image_size=32",
            "data.channels=3",
            "data.batch_size=128",
        ],
        label="conv autoencoder 3x32x32 (CIFAR size), batch 128",
        steps={"cpu": 60, "cuda": 1000},
    ),
    "dcgan_recipe": dict(
        overrides=DCGAN_RECIPE,
        label="DCGAN-64 paper recipe, batch 128, run as a user runs it (EMA, validation, "
        "sample grids, checkpoints, CSV)",
        steps={"cpu": 12, "cuda": 310},
        full=True,
    ),
    # the bundled data make 31-step epochs, so the recipe above pays its epoch-end work
    # (validation, sample grid and latent walk, two checkpoint files) every 31 steps; a CelebA
    # epoch is 1,582 steps. This case is the same run without that work: its per-step cost.
    "dcgan_recipe_steady": dict(
        overrides=[
            *DCGAN_RECIPE,
            "~callbacks.model_checkpoint",
            "~callbacks.last_checkpoint",
            # else Lightning adds its default ModelCheckpoint, which wrote an 86 MB
            # checkpoint at every epoch end inside the timed window
            "++trainer.enable_checkpointing=false",
            "trainer.limit_val_batches=0",
        ],
        label="the same recipe without its epoch-end work (validation, grids, checkpoints): "
        "EMA, per-step logging to CSV, health checks",
        steps={"cpu": 12, "cuda": 310},
        full=True,
    ),
    # A CelebA-length epoch (1,271 steps at batch 128; --epoch-steps) of synthetic 64x64
    # images held on the device, with everything the recipe does at its own cadence: EMA,
    # the progress bar, CSV rows, a sample grid every 500 steps; at the epoch's end
    # validation over a CelebA-size validation split, the sample grid and latent walk, the
    # best and last checkpoints. Steps and the epoch's end are timed apart; the run stops one
    # step into the next epoch, so its final checkpoint and grids fall outside both.
    "dcgan_celeba": dict(
        overrides=[o for o in DCGAN_RECIPE if o != "~callbacks.rich_progress_bar"],
        label="DCGAN-64 recipe, batch 128, CelebA-length epoch of synthetic images",
        steps={"cpu": 3, "cuda": 300},  # the plain loop's; genlab runs the whole epoch
        full=True,
        epoch=True,
        progress_bar=True,
    ),
}
# CelebA's aligned faces: 162,770 training and 19,867 validation images
CELEBA_TRAIN, CELEBA_VAL = 162_770, 19_867


def register_synthetic_images() -> None:
    """`__main__.SyntheticImages`: genlab's image datamodule over uint8 images made up here
    (a block of random images repeated), so a CelebA-length epoch needs no download. Its
    batches are cut on the device by genlab's own device-resident path."""
    import importlib

    import torch

    from genlab.data import ImageDataModule

    # ArrayImages lives beside ImageDataModule, whatever that module is named
    array_images = importlib.import_module(ImageDataModule.__module__).ArrayImages

    class SyntheticImages(ImageDataModule):
        name = "synthetic_images"

        def __init__(self, *, train_size: int, val_size: int, **kwargs) -> None:
            kwargs.pop("test_fraction", None)
            super().__init__(**kwargs)
            self.sizes = {"train": train_size, "val": val_size, "test": val_size}

        def load_splits(self) -> dict:
            shape = (self.channels, self.image_size, self.image_size)
            gen = torch.Generator().manual_seed(0)
            block = torch.randint(0, 256, (1024, *shape), dtype=torch.uint8, generator=gen)
            splits = {}
            for split, n in self.sizes.items():
                images = block.repeat(-(-n // len(block)), 1, 1, 1)[:n]
                splits[split] = array_images(images, torch.zeros(n, dtype=torch.long))
            return splits

    sys.modules["__main__"].SyntheticImages = SyntheticImages  # type: ignore[attr-defined]


def compose(case: str, device: str, steps: int, extra: list[str], epoch_steps: int = 0):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import genlab
    import genlab.utils.resolvers  # noqa: F401

    out = Path(f"/tmp/genlab-bench-{case}-{time.time_ns()}")
    # ++: set whether or not the trainer group lists the key
    bare = [
        "++trainer.limit_val_batches=0",
        "++trainer.enable_checkpointing=false",
        "callbacks=none",
        "logger=[]",
    ]
    overrides = [
        *CASES[case]["overrides"],
        f"paths.root_dir={out}",
        "trainer=gpu" if device == "cuda" else "trainer=cpu",
        f"++trainer.max_steps={steps}",
        "trainer.max_epochs=-1",
        *([] if CASES[case].get("progress_bar") else ["++trainer.enable_progress_bar=false"]),
        "++trainer.enable_model_summary=false",
        *([] if CASES[case].get("full") else bare),
        "test=false",
        "extras.print_config=false",
        *extra,
    ]
    conf = Path(genlab.__file__).parent / "conf"
    with initialize_config_dir(version_base="1.3", config_dir=str(conf)):
        cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out / "run")
        cfg.hydra.runtime.cwd = str(out)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    if CASES[case].get("epoch"):  # synthetic images, CelebA's split sizes by default
        register_synthetic_images()
        train = epoch_steps * cfg.data.batch_size
        val = CELEBA_VAL if train >= CELEBA_TRAIN - cfg.data.batch_size else train // 8
        with open_dict(cfg):
            data = {k: cfg.data[k] for k in cfg.data if k != "_target_"}
            cfg.data = {
                **data,
                "_target_": "__main__.SyntheticImages",
                "train_size": train,
                "val_size": val,
                "num_classes": None,
                "device_resident": True,
            }
    return cfg


class Clock:
    """Times the steps after `warmup` in windows of `window` steps, synchronising the device at
    every window boundary."""

    def __init__(self, device: str, warmup: int, steps: int, windows: int) -> None:
        self.device, self.warmup, self.steps = device, warmup, steps
        self.window = max(1, steps // windows)
        self.marks: list[float] = []

    def sync(self) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()

    def step(self, step: int) -> None:
        # a mark when a window boundary is reached (a batch may take several steps)
        if step >= self.warmup + len(self.marks) * self.window:
            self.sync()
            self.marks.append(time.perf_counter())

    def end(self) -> None:
        self.sync()
        self.marks.append(time.perf_counter())

    def result(self, batch_size: int) -> dict:
        """Whole-run and fastest-window time per step (the fastest window is what the run
        does when nothing else on the machine gets in its way)."""
        full = self.steps // self.window
        windows = [b - a for a, b in zip(self.marks[:full], self.marks[1 : full + 1], strict=True)]
        return {
            "batch_size": batch_size,
            "mean_ms_per_step": 1e3 * (self.marks[-1] - self.marks[0]) / self.steps,
            "ms_per_step": 1e3 * min(windows) / self.window,
            "windows": len(windows),
        }


class EpochClock:
    """For a run of one epoch and one step: the time per step of the epoch's steps after
    `warmup` (the device synchronised at both ends), and the seconds from the end of its last
    step to the start of the next epoch's first (validation, grids, checkpoints)."""

    def __init__(self, device: str, warmup: int, epoch_steps: int) -> None:
        self.device, self.warmup, self.epoch_steps = device, warmup, epoch_steps
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
        self.marks.setdefault(name, time.perf_counter())

    def batch_start(self, trainer, batch_idx: int) -> None:
        if trainer.current_epoch == 0 and trainer.global_step == 0:
            self.mark("first_step")
        if trainer.current_epoch == 0 and trainer.global_step == self.warmup:
            self.mark("timed")
        if trainer.current_epoch == 1 and batch_idx == 0:
            self.mark("next_epoch")

    def batch_end(self, trainer, batch_idx: int) -> None:
        if trainer.current_epoch == 0 and batch_idx + 1 == trainer.num_training_batches:
            self.mark("epoch_steps_done")

    def result(self, batch_size: int, started: float) -> dict:
        m = self.marks
        ms = 1e3 * (m["epoch_steps_done"] - m["timed"]) / (self.epoch_steps - self.warmup)
        epoch_end = m["next_epoch"] - m["epoch_steps_done"]
        epoch_s = ms * self.epoch_steps / 1e3 + epoch_end
        return {
            "batch_size": batch_size,
            "ms_per_step": ms,
            "mean_ms_per_step": ms,
            "epoch_steps": self.epoch_steps,
            "epoch_end_s": epoch_end,
            "epoch_s": epoch_s,
            "epoch_images_per_s": self.epoch_steps * batch_size / epoch_s,
            "first_step_s": m["first_step"] - started,
            "windows": 1,
        }


def run_genlab(
    case: str,
    device: str,
    steps: int,
    warmup: int,
    windows: int,
    dataloader: bool,
    epoch_steps: int = 0,
) -> dict:
    import lightning as L

    from genlab.train import train

    epoch = CASES[case].get("epoch")
    if epoch:  # one whole epoch, then one step of the next (module doc)
        warmup, steps = (
            min(warmup, epoch_steps // 2),
            epoch_steps + 1 - min(warmup, epoch_steps // 2),
        )
    clock = Clock(device, warmup, steps, windows)
    epoch_clock = EpochClock(device, warmup, epoch_steps)
    first: list[float] = []

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if not first:
                first.append(time.perf_counter())
            if epoch:
                epoch_clock.batch_start(trainer, batch_idx)
            else:
                clock.step(trainer.global_step)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if epoch:
                epoch_clock.batch_end(trainer, batch_idx)

        def on_train_end(self, trainer, *args) -> None:
            clock.end()

    from omegaconf import open_dict

    cfg = compose(
        case,
        device,
        steps + warmup,
        ["data.device_resident=false"] if dataloader else [],
        epoch_steps=epoch_steps,
    )
    with open_dict(cfg):
        if not CASES[case].get("full"):
            cfg.callbacks = {}
        cfg.callbacks["timer"] = {"_target_": "__main__.Timer"}
    sys.modules["__main__"].Timer = Timer  # type: ignore[attr-defined]
    started = time.perf_counter()
    summary = train(cfg)
    assert summary["global_step"] == steps + warmup, summary["global_step"]
    if epoch:
        return epoch_clock.result(cfg.data.batch_size, started)
    return {**clock.result(cfg.data.batch_size), "first_step_s": first[0] - started}


def run_plain(
    case: str, device: str, steps: int, warmup: int, windows: int, epoch_steps: int = 0
) -> dict:
    """The hand-written loop: same nets, optimizers, precision and data as the genlab run."""
    import torch
    import torch.nn.functional as F
    from hydra.utils import instantiate

    cfg = compose(case, device, steps + warmup, [], epoch_steps=epoch_steps)
    torch.manual_seed(cfg.seed)
    if cfg.perf.matmul_precision:
        torch.set_float32_matmul_precision(cfg.perf.matmul_precision)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    from genlab.data.datamodules import materialize

    images, _, _ = materialize(dm.dataset("train"))
    images = images.to(device)
    bs = cfg.data.batch_size
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    fused = {"fused": True} if cfg.perf.fused_optimizer else {}
    cl = cfg.perf.channels_last

    def batches():
        while True:
            perm = torch.randperm(len(images), device=images.device)
            for i in range(0, len(images) - bs + 1, bs):
                x = images[perm[i : i + bs]].float().div_(255)
                yield x.contiguous(memory_format=torch.channels_last) if cl else x

    data = batches()
    clock = Clock(device, warmup, steps, windows)
    m = cfg.model
    if case.startswith("dcgan"):
        G, D = instantiate(m.generator).to(device), instantiate(m.discriminator).to(device)
        if cl:
            G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
        opt_g = instantiate(m.optimizer_g)(G.parameters(), **fused)
        opt_d = instantiate(m.optimizer_d)(D.parameters(), **fused)
        for step in range(steps + warmup):
            clock.step(step)
            real = next(data) * 2 - 1
            z = torch.randn(len(real), m.latent_dim, device=device)
            with autocast:
                fake = G(z)
                d_real, d_fake = D(real), D(fake.detach())
                loss_d = F.binary_cross_entropy_with_logits(
                    d_real, torch.ones_like(d_real)
                ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            D.requires_grad_(False)
            with autocast:
                d_gen = D(fake)
                loss_g = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            D.requires_grad_(True)
    else:
        enc, dec = instantiate(m.encoder).to(device), instantiate(m.decoder).to(device)
        if cl:
            enc, dec = (
                enc.to(memory_format=torch.channels_last),
                dec.to(memory_format=torch.channels_last),
            )
        opt = instantiate(m.optimizer)([*enc.parameters(), *dec.parameters()], **fused)
        for step in range(steps + warmup):
            clock.step(step)
            x = next(data)
            with autocast:
                if case.startswith("vae"):
                    mu, logvar = enc(x).chunk(2, dim=1)
                    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
                    rec = (
                        F.binary_cross_entropy_with_logits(dec(z), x, reduction="none")
                        .flatten(1)
                        .sum(1)
                    )
                    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
                    loss = (rec + kl).mean()
                else:
                    loss = (torch.sigmoid(dec(enc(x))) - x).pow(2).flatten(1).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    clock.end()
    return clock.result(bs)


def run_floor(device: str, steps: int, warmup: int, windows: int, lightning: bool) -> dict:
    """Seconds for `steps` optimizer steps of a one-weight model: Lightning's fixed cost."""
    import lightning as L
    import torch

    x = torch.ones(1, 1, device=device)
    clock = Clock(device, warmup, steps, windows)

    class OneWeight(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Linear(1, 1)

        def training_step(self, batch, batch_idx):
            return self.w(batch).square().mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=1e-3)

        def on_train_batch_start(self, batch, batch_idx) -> None:
            clock.step(self.global_step)

        def on_train_end(self) -> None:
            clock.end()

    class Repeat:
        def __iter__(self):
            return (x for _ in range(steps + warmup))

        def __len__(self) -> int:
            return steps + warmup

    model = OneWeight().to(device)
    if lightning:
        trainer = L.Trainer(
            accelerator=device,
            devices=1,
            max_steps=steps + warmup,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, train_dataloaders=Repeat())
    else:
        opt = model.configure_optimizers()
        for step, batch in enumerate(Repeat()):
            clock.step(step)
            loss = model.training_step(batch, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        clock.end()
    return clock.result(1)


def measure(args: argparse.Namespace, case: str, impl: str, steps: int) -> dict:
    """One timed run of `case` by `impl` in this process."""
    import torch

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # several steps per Lightning batch: whole batches of warm-up and timed steps
    k = CASES.get(case, {}).get("per_batch", 1)
    steps, warmup = -(-steps // k) * k, -(-args.warmup // k) * k
    timing = (args.device, steps, warmup, args.windows)
    if case == "floor":
        out = run_floor(*timing, lightning=impl == "lightning")
    elif impl == "plain":
        out = run_plain(case, *timing, epoch_steps=args.epoch_steps)
    else:
        out = run_genlab(
            case, *timing, dataloader=impl == "genlab_dl", epoch_steps=args.epoch_steps
        )
    out["steps"] = steps
    out["images_per_s"] = 1e3 * out["batch_size"] / out["ms_per_step"]
    if args.device == "cuda":
        out["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:  # in one process for all runs (--in-process): the peak so far
        out["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def worker(args: argparse.Namespace) -> None:
    out = measure(args, args.case, args.impl, args.steps)
    print("RESULT " + json.dumps(out), flush=True)


class _PeerDone(Exception):
    """Raised from the peer's own print once enough of its iterations were timed."""


def run_peer(path: str, device: str, lines: int, warmup: int) -> dict:
    """pytorch/examples' dcgan/main.py, unchanged, in this process (runpy) with its own
    arguments: `--dataset fake --imageSize 64 --batchSize 128` (and `--accel` on a GPU). It
    prints one line per iteration (after its `.item()` calls, so the device has finished
    it); the time between lines gives its img/s: `images_per_s` over every timed iteration
    (its epoch ends included: the fake data set is 1,000 images, 8 iterations, and each
    epoch restarts its 2 DataLoader workers, saves sample images at the first iteration
    and both nets at the end), `steady_images_per_s` from the median iteration. It stops
    (an exception raised from its print) after `warmup` + `lines` iterations."""
    import contextlib
    import io
    import re
    import runpy
    import statistics
    import tempfile

    pattern = re.compile(r"\[(\d+)/(\d+)\]\[(\d+)/(\d+)\]")
    stamps: list[tuple[float, int]] = []  # (time the line was printed, images of its batch)

    class Lines(io.TextIOBase):
        def write(self, text: str) -> int:
            found = pattern.match(text)
            if found:
                i, n = int(found[3]), int(found[4])
                images = 128 if i + 1 < n else 1000 - 128 * (n - 1)  # FakeData: 1,000
                stamps.append((time.perf_counter(), images))
                if len(stamps) > warmup + lines:
                    raise _PeerDone
            return len(text)

    out = tempfile.mkdtemp(prefix="genlab-bench-peer-")
    epochs = -(-(warmup + lines + 1) // 8) + 1
    argv = [path, "--dataset", "fake", "--imageSize", "64", "--batchSize", "128"]
    argv += ["--niter", str(epochs), "--outf", out, "--manualSeed", "0"]
    argv += ["--accel"] if device == "cuda" else []
    saved = sys.argv
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(Lines()):
            runpy.run_path(path, run_name="__main__")
    except _PeerDone:
        pass
    finally:
        sys.argv = saved
    timed = stamps[warmup:]
    gaps = [b[0] - a[0] for a, b in zip(timed[:-1], timed[1:], strict=True)]
    images = sum(n for _, n in timed[1:])
    return {
        "argv": argv[1:],
        "batch_size": 128,
        "iterations": len(gaps),
        "images_per_s": images / (timed[-1][0] - timed[0][0]),
        "steady_images_per_s": 128 / statistics.median(gaps),
        "ms_per_step": 1e3 * statistics.median(gaps),
    }


def case_steps(args: argparse.Namespace, case: str) -> int:
    """Timed steps: --steps, else the case's default for the device (~5-10 s of work)."""
    if args.steps:
        return args.steps
    return args.floor_steps if case == "floor" else CASES[case]["steps"][args.device]


def run_worker(args: argparse.Namespace, case: str, impl: str) -> dict:
    """One timed run in its own process (in this one with --in-process); {"error": ...}
    when it fails."""
    if args.in_process:
        import gc
        import traceback

        import torch

        try:
            result = measure(args, case, impl, case_steps(args, case))
        except Exception:
            error = traceback.format_exc()[-3000:]
            print(f"{case}/{impl} failed:\n{error}", flush=True)
            return {"error": error}
        finally:
            gc.collect()
            if args.device == "cuda":
                torch.cuda.empty_cache()
    else:
        cmd = [sys.executable, __file__, "--device", args.device]
        cmd += ["--steps", str(case_steps(args, case)), "--warmup", str(args.warmup)]
        cmd += ["--windows", str(args.windows), "--epoch-steps", str(args.epoch_steps)]
        proc = subprocess.run([*cmd, "--worker", case, impl], capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"{case}/{impl} failed:\n{proc.stderr[-3000:]}", flush=True)
            return {"error": proc.stderr[-3000:] or f"exit status {proc.returncode}"}
        result = json.loads(line[0][7:])
    print(f"{case:8s} {impl:10s} {result['images_per_s']:9.1f} img/s", flush=True)
    return result


def probe_machine(device: str) -> dict:
    """The machine, the device and package versions; then, cold in this process, the time
    of `genlab-train --help` and of importing torch and genlab's training code. Call it
    before anything imports torch."""
    import contextlib
    import importlib.metadata as md
    import io
    import os
    import runpy

    out: dict = {"python": sys.version.split()[0], "platform": platform.platform()}
    out["cpus"] = os.cpu_count()
    t = time.perf_counter()
    saved = sys.argv
    sys.argv = ["genlab-train", "--help"]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_module("genlab.train", run_name="__main__")
    except SystemExit:
        pass
    finally:
        sys.argv = saved
    out["help_s"] = time.perf_counter() - t
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    t = time.perf_counter()
    import torch

    out["import_torch_s"] = time.perf_counter() - t
    t = time.perf_counter()
    import genlab.training  # noqa: F401

    out["import_genlab_training_s"] = time.perf_counter() - t
    out.update(torch=torch.__version__, cuda=torch.version.cuda)
    if device == "cuda" and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(
            gpu=p.name,
            gpu_memory_gb=p.total_memory / 1e9,
            capability=f"{p.major}.{p.minor}",
            bf16=torch.cuda.is_bf16_supported(),
        )
        with contextlib.suppress(Exception):
            query = "--query-gpu=name,driver_version,memory.total,clocks.max.sm"
            out["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", query, "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
    versions = {}
    for name in ("lightning", "torchmetrics", "torchvision", "hydra-core", "omegaconf"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    out["versions"] = versions
    print("PROBE " + json.dumps(out), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--cases", default="dcgan,vae,conv_ae", help=f"of {', '.join(CASES)}")
    p.add_argument("--steps", type=int, help="timed steps (default: per case and device)")
    p.add_argument("--floor-steps", type=int, default=2000, help="steps of the one-weight model")
    p.add_argument("--no-floor", action="store_true", help="skip Lightning's fixed-cost runs")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--windows", type=int, default=5, help="timing windows per run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--name", help="file name of the results (default: throughput-<device>)")
    p.add_argument(
        "--epoch-steps",
        type=int,
        help="steps of the epoch-length cases' epoch (default: 1271, a CelebA epoch at batch "
        "128, on cuda; 6 on cpu)",
    )
    p.add_argument(
        "--peer-dcgan",
        help="pytorch/examples' dcgan/main.py (a local copy: docs/gpu.md), run unchanged as "
        "the peer; without it the peer is skipped",
    )
    p.add_argument("--peer-iterations", type=int, help="timed iterations of the peer")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="every run in this one process (the GPU check: each process pays the imports)",
    )
    p.add_argument("--probe", action="store_true", help="the machine, --help and import times")
    p.add_argument("--worker", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.epoch_steps is None:
        args.epoch_steps = 1271 if args.device == "cuda" else 6
    if args.worker:
        args.case, args.impl = args.worker
        return worker(args)
    machine = probe_machine(args.device) if args.probe else None

    cases = args.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}: use {', '.join(CASES)}")
    # Lightning's fixed cost first, so every report below can show the ceilings
    plan = {} if args.no_floor else {"floor": ["plain", "lightning"]}
    plan.update(
        {
            case: ["plain", "genlab"] + ([] if CASES[case].get("full") else ["genlab_dl"])
            for case in cases
        }
    )
    results: dict[str, dict[str, list[dict]]] = {}
    for case, impls in plan.items():
        results[case] = {i: [] for i in impls}
        for _ in range(args.repeats):  # alternate the implementations: drift hits all alike
            for impl in impls:
                results[case][impl].append(run_worker(args, case, impl))
        failed = [r["error"] for runs in results[case].values() for r in runs if "error" in r]
        if failed:  # reported as such; the other cases still run
            results[case] = {"error": failed[0]}
        if case != "floor":  # a report after every case: a run cut short keeps what it did
            report(args, plan, results, machine)
    peer = None
    if args.peer_dcgan and Path(args.peer_dcgan).is_file():
        # last: it sets cudnn.benchmark for the whole process
        lines = args.peer_iterations or (200 if args.device == "cuda" else 3)
        try:
            peer = run_peer(args.peer_dcgan, args.device, lines, warmup=min(args.warmup, 10))
            print(f"peer dcgan {peer['images_per_s']:9.1f} img/s", flush=True)
        except Exception as exc:
            peer = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"peer dcgan failed: {peer['error']}", flush=True)
    else:
        why = f"{args.peer_dcgan} is not a file" if args.peer_dcgan else "no --peer-dcgan PATH"
        peer = {"skipped": f"{why}: pytorch/examples' dcgan/main.py, see docs/gpu.md"}
        print(f"peer dcgan skipped: {peer['skipped']}", flush=True)
    report(args, plan, results, machine, peer)


def report(
    args: argparse.Namespace,
    plan: dict,
    results: dict,
    machine: dict | None = None,
    peer: dict | None = None,
) -> None:
    """Write <name>.json and <name>.md for the cases finished so far."""
    import torch

    cases = [c for c in results if c != "floor"]
    hardware = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    )

    def step_ms(case: str, impl: str) -> float:
        """ms per step: the fastest window of all repeats (the mean of the fastest run for
        a case run as a user runs it)."""
        key = "mean_ms_per_step" if CASES.get(case, {}).get("full") else "ms_per_step"
        return min(r[key] for r in results[case][impl])

    have_floor = "floor" in results and "error" not in results["floor"]
    floor = {i: step_ms("floor", i) for i in plan["floor"]} if have_floor else {}
    floor_ms = floor["lightning"] - floor["plain"] if floor else None
    rows = []
    for case in cases:
        if "error" in results[case]:
            rows.append(
                {"case": CASES[case]["label"], "key": case, "error": results[case]["error"]}
            )
            continue
        batch = results[case]["plain"][0]["batch_size"]
        fast = {i: 1e3 * batch / step_ms(case, i) for i in plan[case]}
        mem = {i: max(r["peak_mem_mb"] for r in runs) for i, runs in results[case].items()}
        plain_ms = step_ms(case, "plain")
        if CASES[case].get("epoch"):  # the epoch's steps and its end, from the fastest run
            best = min(results[case]["genlab"], key=lambda r: r["epoch_s"])
            extra = {
                k: best[k] for k in ("epoch_steps", "epoch_end_s", "epoch_s", "epoch_images_per_s")
            }
            extra["epoch_ratio"] = best["epoch_images_per_s"] / fast["plain"]
        else:
            extra = {}
        rows.append(
            {
                **extra,
                "case": CASES[case]["label"],
                "key": case,
                "plain_img_s": fast["plain"],
                "genlab_img_s": fast["genlab"],
                "ratio": fast["genlab"] / fast["plain"],
                "plain_ms_per_step": plain_ms,
                "ceiling": plain_ms / (plain_ms + floor_ms) if floor_ms is not None else None,
                "genlab_dataloader_img_s": fast.get("genlab_dl"),
                "resident_vs_dataloader": fast["genlab"] / fast["genlab_dl"]
                if "genlab_dl" in fast
                else None,
                "peak_mem_mb_plain": mem["plain"],
                "peak_mem_mb_genlab": mem["genlab"],
                "first_step_s": min(r.get("first_step_s", 0.0) for r in results[case]["genlab"]),
            }
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "device": args.device,
        "hardware": hardware,
        "torch": torch.__version__,
        "lightning": importlib.metadata.version("lightning"),
        "steps": {case: case_steps(args, case) for case in results},
        "warmup": args.warmup,
        "repeats": args.repeats,
        "windows": args.windows,
        "statistic": "fastest timing window of all repeats (mean of the fastest run for "
        "cases run as a user runs them)",
        "all_runs": results,
        "lightning_ms_per_step": floor.get("lightning"),
        "plain_ms_per_step": floor.get("plain"),
        "lightning_fixed_cost_ms": floor_ms,
        "epoch_steps": args.epoch_steps,
        "in_process": args.in_process,
        "probe": machine,
        "peer": peer,
    }
    name = args.name or f"throughput-{args.device}"
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    mem_unit = "peak allocated MB" if args.device == "cuda" else "peak RSS MB"

    def num(value: float | None, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    lines = [
        f"Hardware: {hardware}; torch {torch.__version__}, lightning {meta['lightning']}; "
        f"timed steps {', '.join(f'{c} {n}' for c, n in meta['steps'].items())} after "
        f"{args.warmup} warm-up; the fastest of {args.windows} windows x {args.repeats} runs "
        f"({'all in one process' if args.in_process else 'each run its own process'}).",
        "",
    ]
    if floor_ms is not None:
        lines += [
            f"Lightning's fixed cost per optimizer step here: {floor_ms:.2f} ms (a one-weight "
            f"model: {floor['lightning']:.2f} ms/step through lightning.Trainer, "
            f"{floor['plain']:.2f} ms/step in a plain loop). Ceiling = plain step time / "
            "(plain step time + that cost): the best genlab / plain ratio Lightning's loop "
            "allows.",
            "",
        ]
    lines += [
        "| case | plain loop img/s | genlab img/s | genlab / plain | ceiling "
        f"| genlab DataLoader img/s | resident / DataLoader | {mem_unit} plain / genlab |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            last = r["error"].strip().splitlines()[-1] if r["error"].strip() else "?"
            lines.append(f"| {r['case']} | failed: {last} | | | | | | |")
            continue
        if "epoch_s" in r:
            continue  # their own table below
        lines.append(
            f"| {r['case']} | {r['plain_img_s']:.0f} | {r['genlab_img_s']:.0f} | "
            f"{r['ratio']:.2f} | {num(r['ceiling'], '.2f')} | "
            f"{num(r['genlab_dataloader_img_s'], '.0f')} | "
            f"{num(r['resident_vs_dataloader'], '.2f')} | "
            f"{r['peak_mem_mb_plain']:.0f} / {r['peak_mem_mb_genlab']:.0f} |"
        )
    lines += epoch_table(rows, peer, machine)
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def epoch_table(rows: list[dict], peer: dict | None, machine: dict | None) -> list[str]:
    """Markdown of the epoch-length cases, the peer and the start-up times."""
    lines: list[str] = []
    epochs = [r for r in rows if "epoch_s" in r]
    if epochs:
        lines += [
            "",
            "Epoch-length cases (genlab runs one whole epoch; steps and the epoch's end timed "
            "apart, the final checkpoint and grids after both):",
            "",
            "| case | plain loop img/s | genlab img/s (steps) | genlab / plain | epoch steps "
            "| epoch-end s | genlab img/s (whole epoch) | whole epoch / plain |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['case']} | {r['plain_img_s']:.0f} | {r['genlab_img_s']:.0f} | "
            f"{r['ratio']:.2f} | {r['epoch_steps']} | {r['epoch_end_s']:.1f} | "
            f"{r['epoch_images_per_s']:.0f} | {r['epoch_ratio']:.2f} |"
            for r in epochs
        ]
    if peer is not None:
        lines.append("")
        if "images_per_s" in peer:
            lines.append(
                f"Peer: pytorch/examples dcgan/main.py unchanged ({' '.join(peer['argv'][:6])}"
                f"): {peer['images_per_s']:.0f} img/s over {peer['iterations']} iterations "
                f"(its epoch ends included), {peer['steady_images_per_s']:.0f} img/s from the "
                "median iteration."
            )
        else:
            lines.append(f"Peer: {peer.get('skipped') or 'failed: ' + peer.get('error', '?')}")
    if machine:
        lines += [
            "",
            f"Start-up (cold, in the benchmark process): `genlab-train --help` "
            f"{machine['help_s']:.1f} s; import torch {machine['import_torch_s']:.1f} s; "
            f"import genlab.training {machine['import_genlab_training_s']:.1f} s.",
        ]
    first = [r["first_step_s"] for r in rows if r.get("first_step_s")]
    if first:
        lines.append(
            f"From `train(cfg)` to the first training step: {min(first):.1f}-{max(first):.1f} s "
            "(data on the device, model, Lightning's set-up)."
        )
    return lines


if __name__ == "__main__":
    main()
