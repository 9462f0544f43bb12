"""Reconstruct 3D shapes from single views with a trained completion model (ShapeHD's
completion step, model=shape_completion or shapehd):
`python -m genlab.reconstruct3d ckpt_path=RUN/checkpoints/last.ckpt input_dir=DIR`
(conf/reconstruct3d.yaml).

The views are files (genlab.data.view_files: `NAME_depth.png` + `NAME_mask.png` per input for
a model that takes 2.5D sketches, `NAME.png` renders for one with an RGB estimator), or with
`source=data` n views of the run's own split. Writes, per input, `shapes/NAME.binvox` (the
predicted voxels at `threshold`), `shapes/NAME.png` (the input and renders from three views)
and `shapes/NAME.gif` (a turntable), then report.md and reconstruct3d.json, to
RUN/reconstruct3d/<time>/ (genlab.analysis.reconstruct3d_folder). A model that cannot
reconstruct 3D is refused, and so are input files that do not fit, all named at once, before
anything is written.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

import genlab.utils.resolvers  # noqa: F401  (registers ${genlab.*} before Hydra composes)
from genlab.utils.errors import GenlabError, exit_on_user_error
from genlab.utils.run import output_folder

log = logging.getLogger("genlab.reconstruct3d")
SOURCES = ("auto", "files", "data")


@hydra.main(version_base="1.3", config_path="conf", config_name="reconstruct3d")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    with output_folder(cfg, "reconstruct3d folder") as out_dir:
        source = input_source(cfg)  # said before torch loads and the checkpoint is read
        # torch and the models load when the command runs, not for --help or a refusal
        from functools import partial

        from genlab.analysis.reconstruct3d_folder import (
            check_reconstructs,
            data_views,
            reconstruct_views,
            view_kind,
            write_report,
        )
        from genlab.data.view_files import read_views
        from genlab.utils.commands import load_for_command

        check = partial(check_reconstructs, ckpt_path=str(cfg.ckpt_path))
        model, _, datamodule = load_for_command(cfg, seed=0, data="required", check=check)
        kind, image_size = view_kind(datamodule)
        files = truths = None
        if source == "files":
            names, views, files = read_views(
                str(cfg.input_dir), kind, image_size=image_size, max_inputs=int(cfg.max_inputs)
            )
            where = f"the files of `{Path(str(cfg.input_dir)).resolve()}`"
        else:
            names, views, truths = data_views(datamodule, str(cfg.split), int(cfg.n))
            where = f"{len(names)} views of the run's {cfg.split} split"
        summary = reconstruct_views(
            model,
            names,
            views,
            out_dir,
            threshold=float(cfg.threshold),
            batch_size=int(cfg.batch_size),
            files=files,
            truths=truths,
        )
        report = write_report(
            out_dir, summary, ckpt_path=str(cfg.ckpt_path), kind=kind, source=where
        )
    log.info("%d shapes reconstructed into %s", len(names), summary["shapes_dir"])
    print(report)


def input_source(cfg: DictConfig) -> str:
    """files | data, from `source` and `input_dir`; a GenlabError naming them when they do
    not fit (checked before anything is loaded)."""
    source, input_dir = str(cfg.source), cfg.input_dir
    if source not in SOURCES:
        raise GenlabError(f"source={source!r}: use one of {', '.join(SOURCES)}.")
    if source == "auto":
        source = "files" if input_dir is not None else "data"
    if source == "files":
        if input_dir is None or not Path(str(input_dir)).is_dir():
            raise GenlabError(
                f"input_dir={input_dir!r} is not a folder: give a folder of views "
                "(NAME_depth.png + NAME_mask.png per input for a sketch model, NAME.png for "
                "an RGB one; docs/3d.md), or source=data for the run's own views."
            )
    elif input_dir is not None:
        raise GenlabError(
            f"source=data takes the run's own views, but input_dir={input_dir!r} is set too: "
            "drop one of them."
        )
    if not 0 < float(cfg.threshold) < 1:
        raise GenlabError(f"threshold={cfg.threshold} must be in (0, 1).")
    return source


if __name__ == "__main__":
    main()
