"""Change one attribute of real images by a chosen amount and keep the rest:
`python -m genlab.edit ckpt_path=PATH attribute=NAME amount=X [input_dir=DIR]`
(conf/edit.yaml).

Images are coded by the model's encoder (autoencoders, VAEs, WAEs, the CAAE) or by GAN
inversion, moved along an InterFaceGAN boundary normal or a mean-difference vector (or, for
models conditioned on attributes, decoded with the changed condition), and written as
strips (input | reconstruction | edits), edited files, edit.json and report.md (the strips
beside what was measured) to RUN/edit/<time>/ (genlab.analysis.editing, edit_report); with
`logger=wandb` the strips and numbers also go to W&B. A model that can neither encode nor be
inverted is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import genlab.utils.resolvers  # noqa: F401  (registers ${genlab.*} before Hydra composes)
from genlab.utils.errors import GenlabError, exit_on_user_error
from genlab.utils.run import output_folder

log = logging.getLogger("genlab.edit")


@hydra.main(version_base="1.3", config_path="conf", config_name="edit")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    with output_folder(cfg, "edit folder") as out_dir:
        if cfg.input_dir is not None and not Path(str(cfg.input_dir)).is_dir():
            # said before torch loads and the checkpoint is read: there is nothing to edit
            raise GenlabError(
                f"input_dir={cfg.input_dir!r} is not a directory: give a folder of image files "
                "(PNG, JPEG, ...), or input_dir=null to edit images of the run's data."
            )
        # torch and the models load when the command runs, not for --help or a refusal
        from hydra.utils import instantiate

        from genlab.analysis.edit_report import log_edit, write_report
        from genlab.analysis.editing import amounts_of, check_method, code_route, write_edits
        from genlab.utils.commands import load_for_command
        from genlab.utils.run import instantiate_group, to_plain, write_json

        amounts = amounts_of(
            OmegaConf.to_object(cfg.amount) if OmegaConf.is_config(cfg.amount) else cfg.amount,
            cfg.steps,
        )
        loggers = instantiate_group(cfg.get("logger"))  # W&B starts after the edits
        # the refusal of a model that cannot be edited comes before anything else is built
        model, _, data = load_for_command(cfg, seed=cfg.seed, data="optional", check=code_route)
        model.eval()
        if cfg.attribute is not None:  # attribute=null: the images are only coded
            check_method(model, cfg.method, data)
        labeler = instantiate(cfg.labeler) if cfg.get("labeler") else None
        judges = (
            [instantiate(j) for j in cfg.judges]
            if cfg.get("judges") is not None
            else ([labeler] if labeler is not None else [])
        )
        summary = write_edits(
            model,
            data,
            out_dir,
            attribute=None if cfg.attribute is None else str(cfg.attribute),
            amounts=amounts,
            method=cfg.method,
            baselines=list(cfg.baselines),
            keep=[str(k) for k in cfg.keep],
            labeler=labeler,
            judges=judges,
            boundary=cfg.boundary,
            fraction=cfg.fraction,
            n_samples=cfg.n_samples,
            source=cfg.source,
            input_dir=cfg.input_dir,
            split=cfg.split,
            n_inputs=cfg.n_inputs,
            inversion=OmegaConf.to_container(cfg.inversion, resolve=True),
            feature=cfg.feature,
            classifier_ckpt=cfg.classifier_ckpt,
            seed=cfg.seed,
            max_image_pixels=cfg.max_image_pixels,
        )
        summary["report"] = str(write_report(out_dir, summary, ckpt_path=str(cfg.ckpt_path)))
        write_json(out_dir / "edit.json", summary)  # on disk before any logger is reached
        synced = log_edit(loggers, out_dir, summary, config=to_plain(cfg))
    log.info("edits written to %s", out_dir)
    for folder in synced:
        log.info("W&B ran offline: upload with `wandb sync %s`", folder)
    print(summary["methods"][summary["method"]]["strip"])


if __name__ == "__main__":
    main()
