"""What a new user types on a new machine: the Trainer options Lightning users know (and how
the GAN loop honours them), grids at the end of every run whatever the validation interval,
the CPU thread count chosen from the CPUs the process may use."""

from __future__ import annotations

import csv
import logging
import os

import pytest
import torch
from conftest import FAST, TINY_GAN, make_cfg
from PIL import Image

from genlab.train import train
from genlab.utils.errors import GenlabError
from genlab.utils.preflight import cgroup_cpu_limit, choose_threads, usable_cpus


# --- Trainer options -------------------------------------------------------------------------
def test_trainer_options_are_overridable_without_plus(tmp_path):
    """max_steps, val_check_interval, limit_*_batches, gradient_clip_val,
    accumulate_grad_batches are in the trainer group: typed as Lightning users type them."""
    summary = train(
        make_cfg(
            tmp_path,
            *FAST,
            "trainer.max_epochs=10",
            "trainer.max_steps=6",
            "trainer.limit_train_batches=4",
            "trainer.val_check_interval=2",
            "trainer.accumulate_grad_batches=2",
            "trainer.gradient_clip_val=0.5",
            "test=false",
        )
    )
    # 6 optimizer steps of 2 accumulated batches each: 12 batches, 3 epochs of 4
    assert summary["global_step"] == 6
    with open(tmp_path / "run" / "csv" / "metrics.csv") as f:
        val_rows = [r for r in csv.DictReader(f) if r.get("val/loss")]
    # validation every 2 batches: twice per epoch of 4 batches
    assert len(val_rows) == 6


class RecordClippedNorms:
    """Optimizer step post-hooks: the total gradient norm each optimizer stepped with (the
    pre-hook would run before Lightning's closure, which clips)."""

    def __init__(self) -> None:
        self.norms: dict[int, list[float]] = {0: [], 1: []}

    def attach(self, optimizers) -> None:
        for i, opt in enumerate(optimizers):
            opt.register_step_post_hook(self._hook(i))

    def _hook(self, i):
        def hook(opt, args, kwargs):
            grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
            self.norms[i].append(float(torch.nn.utils.get_total_norm(grads)))

        return hook


def test_gan_applies_trainer_gradient_clip_itself_per_net(tmp_path):
    """Lightning refuses gradient_clip_val under manual optimization; the GAN takes it over
    and clips G's and D's gradients separately, before every step of each."""
    import lightning as L
    from hydra.utils import instantiate

    cfg = make_cfg(tmp_path, *FAST, *TINY_GAN, "trainer.gradient_clip_val=0.01")
    model = instantiate(cfg.model)
    taken = model.adopt_trainer_options({"gradient_clip_val": 0.01})
    assert taken == ["gradient_clip_val", "gradient_clip_algorithm"]
    assert model.gradient_clip_val == 0.01 and model.gradient_clip_algorithm == "norm"
    record = RecordClippedNorms()

    class Attach(L.Callback):
        def on_train_start(self, trainer, pl_module):
            record.attach(trainer.optimizers)

    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[Attach()],
    )
    trainer.fit(model, datamodule=instantiate(cfg.data))
    assert len(record.norms[0]) == len(record.norms[1]) == 5
    for norms in record.norms.values():
        assert max(norms) <= 0.01 * (1 + 1e-4)  # an unclipped norm here is ~0.1 to 10
    # through genlab.train the option reaches the model, not Lightning (which would raise)
    summary = train(
        make_cfg(tmp_path / "cli", *FAST, *TINY_GAN, "trainer.gradient_clip_val=0.5", "test=false")
    )
    assert summary["status"] == "completed"


def test_gan_refuses_gradient_accumulation_with_the_reason(tmp_path):
    cfg = make_cfg(tmp_path, *FAST, *TINY_GAN, "trainer.accumulate_grad_batches=2")
    with pytest.raises(GenlabError, match=r"trainer.accumulate_grad_batches=2: the GAN loop"):
        train(cfg)


# --- grids at the end ------------------------------------------------------------------------
def test_a_gan_run_too_short_to_validate_still_leaves_its_grids(tmp_path, caplog):
    """check_val_every_n_epoch=4 with one epoch: no validation ever runs. The start says so,
    and the run still ends with a sample grid of its final state (and last.ckpt)."""
    with caplog.at_level(logging.WARNING):
        summary = train(
            make_cfg(
                tmp_path,
                *FAST,
                *TINY_GAN,
                "callbacks=gan",
                "trainer.max_epochs=1",
                "trainer.check_val_every_n_epoch=4",
                "test=false",
            )
        )
    assert "validation never runs" in caplog.text
    assert summary["best_ckpt"] is None and "no best checkpoint" in summary["best_ckpt_note"]
    assert summary["last_ckpt_step"] == summary["global_step"] == 4
    images = tmp_path / "run" / "images"
    (grid,) = images.glob("samples_s00000004.png")
    pixels = torch.tensor(list(Image.open(grid).convert("L").getdata()), dtype=torch.float)
    assert pixels.std() > 10  # 64 samples, not a blank or constant image
    assert list(images.glob("prior_interpolation_spherical_s00000004.png"))


def test_the_budget_that_ends_the_run_is_said_at_the_start(tmp_path, caplog):
    """max_steps=200 with max_epochs=2 of 4 batches: the epochs end it at step 8, said before
    the first step and recorded; with max_steps=6 the steps end it."""
    fast = [o for o in FAST if not o.startswith("trainer.max_epochs")]
    for max_steps, end, ends_by in ((200, 8, "max_epochs"), (6, 6, "max_steps")):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="genlab.train"):
            summary = train(
                make_cfg(
                    tmp_path / ends_by,
                    *fast,
                    "trainer.max_epochs=2",
                    f"trainer.max_steps={max_steps}",
                    "test=false",
                )
            )
        assert summary["status"] == "completed"
        assert summary["global_step"] == end
        assert (summary["expected_end_step"], summary["ends_by"]) == (end, ends_by)
        said = [r.getMessage() for r in caplog.records if "this run ends at" in r.getMessage()]
        other = {"max_epochs": "max_steps=200", "max_steps": "max_epochs=2"}[ends_by]
        assert said == [
            f"this run ends at step {end} by trainer.{ends_by}={2 if end == 8 else 6}, before "
            f"trainer.{other} is reached (4 steps per epoch)"
        ]
    # one budget: nothing to say
    summary = train(make_cfg(tmp_path / "one", *FAST, "test=false"))
    assert "expected_end_step" not in summary and "ends_by" not in summary


def test_without_a_validation_split_the_grids_show_training_examples(
    tmp_path, monkeypatch, caplog
):
    """data.val_fraction=0 with trainer.limit_val_batches=0 (as the refusal of an empty val
    split advises): the end-of-run grids draw fixed training examples, say so once, and the
    run completes (it failed in the grid before)."""
    import genlab.callbacks.images as images

    captions = {}
    real = images.log_image
    monkeypatch.setattr(
        images,
        "log_image",
        lambda trainer, key, grid, **kw: (
            captions.update({key: kw.get("caption")}) or real(trainer, key, grid, **kw)
        ),
    )
    with caplog.at_level(logging.INFO, logger="genlab.callbacks.images"):
        summary = train(
            make_cfg(
                tmp_path,
                *FAST,
                "data.val_fraction=0",
                "trainer.limit_val_batches=0",
                "trainer.max_epochs=1",
                "test=false",
            )
        )
    assert summary["status"] == "completed"
    run = tmp_path / "run"
    assert (run / "images" / "reconstructions_s00000004.png").is_file()
    assert list((run / "images").glob("interpolation_linear_*.png"))
    assert "fixed training samples" in captions["val/reconstructions"]
    notes = [r.getMessage() for r in caplog.records if "split is empty" in r.getMessage()]
    assert notes == ["the val split is empty: the grids show fixed training examples instead"]


# --- threads ---------------------------------------------------------------------------------
def test_thread_count_follows_the_usable_cpus(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert choose_threads("auto") == (
        usable_cpus(),
        f"{usable_cpus()} usable CPU(s) / 1 process(es)",
    )
    assert choose_threads("auto", processes_per_node=64)[0] == 1
    assert choose_threads(3) == (3, "threads option")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert choose_threads("auto") == (1, "OMP_NUM_THREADS")
    with pytest.raises(GenlabError, match="threads='many'"):
        choose_threads("many")
    # the affinity mask: a process pinned to one CPU gets one thread
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        mask = os.sched_getaffinity(0)
        try:
            os.sched_setaffinity(0, {min(mask)})
            assert usable_cpus() == 1
        finally:
            os.sched_setaffinity(0, mask)


def test_cgroup_quota_is_read_in_both_versions(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(v2) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(v1) == 4.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(v1) is None


def test_the_run_uses_and_records_the_thread_count(tmp_path):
    before = torch.get_num_threads()
    try:
        summary = train(make_cfg(tmp_path, *FAST, "threads=2", "test=false"))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert summary["threads"] == 2 and summary["threads_from"] == "threads option"


def test_a_busy_machine_gets_one_thread_unless_told_otherwise(monkeypatch):
    """Load figures as measured (docs/performance.md#cpu-threads): 14-19 on 2 CPUs, where one
    thread was four times faster, takes 1; 1.2-1.8, where two were faster, keeps 2."""
    import genlab.utils.preflight as preflight

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(preflight, "usable_cpus", lambda: 2)
    assert choose_threads("auto", load=1.8) == (2, "2 usable CPU(s) / 1 process(es)")
    assert choose_threads("auto", load=None) == (2, "2 usable CPU(s) / 1 process(es)")
    n, why = choose_threads("auto", load=14.0)
    assert n == 1
    assert why == (
        "the machine is busy: load average 14.0 on 2 usable CPU(s), where 2 threads would "
        "wait for one another; threads=2 to use them anyway"
    )
    assert choose_threads("auto", load=2.0)[0] == 1  # as many running as there are CPUs
    monkeypatch.setattr(preflight, "usable_cpus", lambda: 8)
    assert choose_threads("auto", load=6.5)[0] == 8
    assert choose_threads("auto", load=8.0)[0] == 1
    # an explicit choice wins
    assert choose_threads(2, load=14.0) == (2, "threads option")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_threads("auto", load=14.0) == (2, "OMP_NUM_THREADS")


def test_a_run_on_a_busy_machine_says_and_records_its_choice(tmp_path, monkeypatch, caplog):
    import genlab.utils.preflight as preflight

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(preflight, "usable_cpus", lambda: 2)
    monkeypatch.setattr(preflight, "_LOAD_AT_START", 3.5)  # measured once per process
    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="genlab.train"):
            summary = train(make_cfg(tmp_path, *FAST, "trainer.max_epochs=1", "test=false"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert summary["threads"] == 1
    assert summary["threads_from"].startswith("the machine is busy: load average 3.5 on 2")
    said = [r.getMessage() for r in caplog.records if "torch threads" in r.getMessage()]
    assert said == [f"torch threads: 1 ({summary['threads_from']})"]


# --- domain metrics on other data ------------------------------------------------------------
def test_domain_classifier_trained_on_other_data_is_flagged(tmp_path):
    """A classifier trained on grey-level digits judging a binarized VAE's samples: the
    metrics carry a warning that the domains differ (the issue's precision_domain 0)."""
    from types import SimpleNamespace

    from hydra.utils import instantiate

    from genlab.metrics.generation import domain_mismatch

    grey = {"_target_": "genlab.data.MNIST5k", "image_size": 28, "channels": 1, "binarize": None}
    extractor = SimpleNamespace(trained_on=grey)
    same = instantiate(make_cfg(tmp_path, "data=mnist_5k").data)
    assert domain_mismatch(extractor, same) is None
    binarized = instantiate(make_cfg(tmp_path, "data=mnist_5k", "data.binarize=static").data)
    warning = domain_mismatch(extractor, binarized)
    assert "data.binarize None vs static" in warning and "precision/recall" in warning
    other = instantiate(make_cfg(tmp_path, "data=cifar10").data)
    assert "data MNIST5k vs CIFAR10" in domain_mismatch(extractor, other)
    assert domain_mismatch(SimpleNamespace(), binarized) is None  # Inception: no domain
