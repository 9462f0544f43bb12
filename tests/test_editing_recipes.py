"""The face recipes of docs/editing.md, composed as shipped and shrunk only in size: each
trains (one batch, through genlab.train with its real data module on small files in the
dataset's own layout), and the condition edit it is for changes the right entry of the
condition: UTKFace's age group read from the file names, CelebA's attribute column as its
list_attr_celeba.txt orders it.

Seen failing (2026-12-05) on the recipes and code as they were: experiment=caae_utkface built a
CAAE of num_classes=2 for UTKFace's 11-entry condition (the model's refusal at setup);
CelebA's condition was a class before its data were set up, so genlab.edit refused
method=condition on a caae_celeba checkpoint, and a column looked up before setup (the
official order) edited the wrong attribute of a file ordered otherwise."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import make_cfg
from datafiles import CELEBA_ATTRS, write_celeba
from hydra.utils import instantiate
from PIL import Image

from genlab.analysis.editing import ConditionEdit, check_method, write_edits
from genlab.train import train

# the recipes' nets at the smallest size they take (sizes only: every other option as shipped)
SMALL = [
    "data.image_size=32",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.cache=false",
    "model.latent_dim=8",
    "model.encoder.hidden_channels=[8,16]",
    "model.generator.base_channels=8",
    "model.discriminator.base_channels=8",
    "model.latent_discriminator.hidden_dims=[8]",
    "trainer=cpu",
    "debug=fdr",
    "logger=csv",
    "~callbacks.rich_progress_bar",
]
AGES = [3, 25, 47, 68, 9, 33, 52, 80]  # (age, gender = index % 2)


def utkface_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for i, age in enumerate(AGES):
        path = folder / f"{age}_{i % 2}_{i % 5}_2017011617452{i:04d}.jpg.chip.jpg"
        Image.new("RGB", (40, 48), (30 * i, 120, 200 - 20 * i)).save(path, format="JPEG")
        paths.append(path)
    return paths


def trained_recipe(tmp_path: Path, recipe: str, *more: str) -> tuple:
    data_dir = f"paths.data_dir={tmp_path / 'data'}"
    cfg = make_cfg(tmp_path, f"experiment={recipe}", data_dir, *SMALL, *more)
    summary = train(cfg)
    assert summary["status"] == "completed", summary
    torch.manual_seed(0)
    return instantiate(cfg.model).eval(), instantiate(cfg.data)


def test_caae_utkface_trains_and_ages_a_face_by_its_file_name(tmp_path):
    """The condition of a face aged by 20 years is the one-hot of the group its age + 20 falls
    in (the paper's ten groups, written out here), its gender kept; the edit decodes the face's
    own code with it."""
    paths = utkface_files(tmp_path / "data" / "UTKFace")
    # 8 faces: a quarter each to validate and test on
    more = ["data.val_fraction=0.25", "data.test_fraction=0.25"]
    model, data = trained_recipe(tmp_path, "caae_utkface", *more)
    assert check_method(model, "auto", data) == "condition"
    edit = ConditionEdit(data, "age")
    values = edit.values(torch.zeros(len(paths), 3, 32, 32), [str(p) for p in paths], None)
    assert values.tolist() == [[float(a), float(i % 2)] for i, a in enumerate(AGES)]
    starts = [0, 6, 11, 16, 21, 31, 41, 51, 61, 71]
    older = edit.condition(values + torch.tensor([20.0, 0.0]))
    for i, age in enumerate(AGES):
        group = max(k for k, s in enumerate(starts) if age + 20 >= s)
        want = [0.0] * 10 + [float(i % 2)]
        want[group] = 1.0
        assert older[i].tolist() == want, (age, older[i])
    codes = torch.randn(len(AGES), 8, generator=torch.Generator().manual_seed(1)).tanh()
    (edited,) = edit.edit(model, codes, values, [20.0]).unbind(1)
    with torch.no_grad():
        assert torch.equal(edited, model.decode(codes, older))
    # the command's library function on the files: the condition edit, a strip per file
    summary = write_edits(
        model, data, tmp_path / "edit", attribute="age", amounts=[-20.0, 20.0],
        input_dir=str(paths[0].parent), labeler=None, n_inputs=8,
    )  # fmt: skip
    assert summary["method"] == "condition" and summary["route"] == "encode"
    assert Path(summary["methods"]["condition"]["strip"]).is_file()


def test_caae_celeba_trains_and_edits_the_files_own_attribute_column(tmp_path):
    """The CelebA data of the recipe say they are attributes before setup (so genlab.edit takes
    method=condition); the test file orders its 40 attributes otherwise than the official
    list, and the edit of Smiling changes the column the file gives it (38, not the official
    31), and only that one."""
    write_celeba(tmp_path / "data", n=12)
    model, data = trained_recipe(tmp_path, "caae_celeba")
    assert check_method(model, "auto", data) == "condition"
    edit = ConditionEdit(data, "Smiling")  # refused here if the name were unknown
    data.setup("test")
    assert data.attr_names == CELEBA_ATTRS and edit.k == 38
    x, y = data.dataset("test")[0]
    values = torch.stack([data.dataset("test")[i][1] for i in range(2)]).float()
    codes = torch.rand(2, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    (edited,) = edit.edit(model, codes, values, [1.0]).unbind(1)
    moved = values.clone()
    moved[:, 38] += 1.0
    with torch.no_grad():
        assert torch.equal(edited, model.decode(codes, moved))
    assert x.shape == (3, 32, 32) and y.shape == (40,)
