"""What genlab.edit tells a reader (genlab.analysis.edit_report), in process: report.md's
sections for an edit and for attribute=null, and the loggers other than W&B (whose offline run
tests/test_editing_cli.py reads): TensorBoard gets the strip file's own pixels, and
the CSV logger the measured numbers. (Seen failing with the strip logged as float at half its
intensity, and with the identity kept averaged over an empty list for attribute=null.)
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from genlab.analysis.edit_report import log_edit, scalars, write_report
from genlab.analysis.editing import write_strip
from genlab.utils.loggers import CSVLogger


def a_summary(tmp_path, attribute: str | None) -> dict:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 8, 8, generator=gen)
    edited = torch.rand(3, 2 if attribute else 0, 1, 8, 8, generator=gen)
    strip = write_strip(tmp_path / "strip_condition.png", x, x.flip(-1), edited)
    entry = {
        "strip": str(strip),
        "reconstruction": {"psnr_db": 12.5, "ssim": 0.25},
        "identity": {"reconstruction_agreement": 0.5, "reconstruction_feature_distance": 0.1},
    }
    if attribute:
        entry["identity"]["edit_agreement"] = [0.25, 0.75]
        entry["judged"] = [
            {
                "judge": {"kind": "morpho"},
                "requested": [-1.0, 2.0],
                "achieved_vs_reconstruction": [-0.5, 1.5],
                "achieved_slope": 0.7,
                "abs_error": 0.5,
                "other_drift": {"slant": 1.25},
            }
        ]
    return {
        "ckpt_model": "CAAE",
        "route": "encode",
        "method": "condition" if attribute else "reconstruction",
        "attribute": attribute,
        "amounts": [-1.0, 2.0] if attribute else [],
        "keep": [],
        "n_inputs": 3,
        "source": "files",
        "coding": {"route": "encode"},
        "labeler": None,
        "labelled_draws": 0,
        "methods": {"condition": entry},
    }


def test_report_shows_the_strip_and_every_number(tmp_path):
    summary = a_summary(tmp_path, "thickness")
    text = write_report(tmp_path, summary, ckpt_path="RUN/last.ckpt").read_text()
    assert "# Edit: thickness by -1, +2 (CAAE)" in text
    assert "![strip_condition](strip_condition.png)" in text
    assert "columns: input | reconstruction | thickness -1, +2" in text
    for row in (
        "| morpho: achieved at +2 (vs reconstruction) | 1.5 |",
        "| morpho: slant drift (mean abs) | 1.25 |",
        "| identity kept at -1 | 0.25 |",
        "| reconstruction psnr_db | 12.5 |",
    ):
        assert row in text, row
    assert scalars(summary)["edit/condition/identity_kept"] == pytest.approx(0.5)


def test_report_of_a_reconstruction_only(tmp_path):
    summary = a_summary(tmp_path, None)
    text = write_report(tmp_path, summary, ckpt_path="RUN/last.ckpt").read_text()
    assert "attribute=null" in text and "columns: input | reconstruction." in text
    values = scalars(summary)
    assert "edit/condition/identity_kept" not in values
    assert values["edit/condition/reconstruction_identity_kept"] == 0.5


def test_tensorboard_gets_the_strips_pixels_and_csv_the_numbers(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    summary = a_summary(tmp_path, "thickness")
    summary["report"] = str(write_report(tmp_path, summary, ckpt_path="RUN/last.ckpt"))
    tb = TensorBoardLogger(save_dir=str(tmp_path), name="tensorboard", version="")
    log_edit([tb, CSVLogger(save_dir=str(tmp_path))], tmp_path, summary, config={"seed": 0})
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    (image,) = events.Images("edit/condition/strip")
    logged = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)))
    local = np.asarray(Image.open(summary["methods"]["condition"]["strip"]))
    assert logged.shape[:2] == local.shape[:2] and local.std() > 20
    assert np.array_equal(logged[..., : local.shape[-1]], local)
    with open(tmp_path / "csv" / "metrics.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["edit/condition/morpho/achieved_slope"]) == pytest.approx(0.7)
    assert float(row["edit/condition/reconstruction_psnr_db"]) == pytest.approx(12.5)
