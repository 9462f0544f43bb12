"""What a run prints: the real CLI in a subprocess (a default run on the bundled digits, its
resume, a two-job sweep) prints none of the frameworks' lines that concern no run, while a
warning about the user's run still reaches the console (genlab.utils.console)."""

from __future__ import annotations

import pytest
from conftest import run_cli, run_dirs

# A default run made tiny: default callbacks (progress bar, grids), default loggers (CSV and
# W&B offline), the config tree printed. log_every_n_steps stays at its default 10, above the
# 4 batches of an epoch: Lightning's warning about it is one that matters to the user.
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "data.batch_size=32",
]
# W&B speaks (conftest silences it for the other tests)
LOUD = {"WANDB_SILENT": "false", "WANDB_MODE": "offline"}

NOISE = {
    "Lightning's weights_only line": "`weights_only` was not set",
    "Lightning's product tips": "💡 Tip",
    "litlogger": "litlogger",
    "W&B's anonymous setting": "anonymous setting",
    "torch's LeafSpec deprecation, raised in Lightning": "isinstance(treespec, LeafSpec)",
    "ModelCheckpoint's non-empty folder": "exists and is not empty",
}
MATTERS = "is smaller than the logging interval Trainer(log_every_n_steps=10)"


def console(proc) -> str:
    return proc.stdout + proc.stderr


def assert_quiet(text: str) -> None:
    found = {name: words for name, words in NOISE.items() if words in text}
    assert not found, f"{found} in the console:\n{text[-6000:]}"


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("console")
    proc = run_cli(*TINY, f"paths.root_dir={root}", cwd=root, env=LOUD)
    (run,) = run_dirs(root)
    return root, run, console(proc)


def test_a_default_run_prints_only_what_concerns_it(first_run):
    _, run, text = first_run
    assert_quiet(text)
    assert MATTERS in text  # a warning about this run still reaches the user
    assert "wandb: Run data is saved locally" in text  # W&B itself was not silenced
    assert text.count("CONFIG") == 1  # a single run prints its config tree, as asked
    assert (run / "config_tree.log").is_file()


def test_a_resume_prints_nothing_about_its_own_checkpoints(first_run):
    root, run, _ = first_run
    proc = run_cli(f"resume={run}", "trainer.max_epochs=2", cwd=root, env=LOUD)
    text = console(proc)
    assert "Restored all states from the checkpoint" in text  # it did resume
    assert_quiet(text)
    assert MATTERS in text


def test_a_sweep_writes_each_jobs_config_instead_of_printing_it(tmp_path):
    proc = run_cli(
        "-m", "seed=1,2", *TINY, "logger=csv", f"paths.root_dir={tmp_path}", cwd=tmp_path
    )
    text = console(proc)
    assert_quiet(text)
    assert "CONFIG" not in text and "├──" not in text
    jobs = sorted(p for p in (tmp_path / "logs" / "train" / "multiruns").glob("*/[0-9]"))
    assert len(jobs) == 2
    for job in jobs:
        tree = (job / "config_tree.log").read_text()
        assert "CONFIG" in tree and "seed" in tree
    assert text.count(MATTERS) >= 1
