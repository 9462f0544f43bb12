"""Latent-space manipulation of a checkpoint:
`python -m genlab.latent ckpt_path=PATH op=interpolate|attribute ...` (conf/latent.yaml).

op=interpolate: strips between the codes of real images (source=data, models with an encoder)
or between prior draws (source=prior, e.g. GANs), linear and/or spherical. op=attribute: an
attribute vector (mean code with the attribute - mean code without) added at several scales.
PNG grids and latent.json go to RUN/latent/<time>/ (genlab.analysis.latent_space).
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

import genlab.utils.resolvers  # noqa: F401  (registers ${genlab.*} before Hydra composes)
from genlab.utils.errors import GenlabError, exit_on_user_error
from genlab.utils.run import output_folder, write_json

log = logging.getLogger("genlab.latent")


@hydra.main(version_base="1.3", config_path="conf", config_name="latent")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    # torch and the models load when the command runs, not for --help or a refusal
    import torch
    from hydra.utils import instantiate

    from genlab.analysis.latent_space import (
        interpolation_source,
        write_attribute_edit,
        write_interpolations,
    )
    from genlab.utils.checkpoint import data_config, load_model, pick_device

    with output_folder(cfg, "latent folder") as out_dir:
        if cfg.op not in ("interpolate", "attribute"):
            raise GenlabError(f"op={cfg.op!r}: use interpolate or attribute.")
        torch.manual_seed(cfg.seed)
        model, run_cfg = load_model(cfg.ckpt_path)
        model = model.to(pick_device(cfg.device))
        data = None
        if cfg.op == "attribute" or interpolation_source(model, cfg.source) == "data":
            datamodule = instantiate(data_config(run_cfg, cfg.get("data") or None))
            datamodule.prepare_data()
            datamodule.setup("test")
            data = datamodule.dataset(cfg.split)
        if cfg.op == "interpolate":
            result = write_interpolations(
                model,
                out_dir,
                data=data,
                source=cfg.source,
                mode=cfg.mode,
                pairs=cfg.pairs,
                steps=cfg.steps,
                seed=cfg.seed,
            )
        else:
            result = write_attribute_edit(
                model,
                data,
                out_dir,
                attribute=cfg.attribute,
                names=getattr(datamodule, "attr_names", None),
                source_class=cfg.source_class,
                n_exemplars=cfg.n_exemplars,
                n_inputs=cfg.n_inputs,
                scales=list(cfg.scales),
                max_images=cfg.max_images,
            )
        write_json(out_dir / "latent.json", result)
    log.info("latent %s written to %s", cfg.op, out_dir)


if __name__ == "__main__":
    main()
