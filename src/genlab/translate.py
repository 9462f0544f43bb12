"""Map a folder of images with a trained image-to-image model (pix2pix, SRGAN, inpainting):
`python -m genlab.translate ckpt_path=RUN/checkpoints/last.ckpt input_dir=DIR`.

`mode=source` (default): the files are inputs as the model takes them: low-resolution images
for super-resolution, edge maps, grey images, or images with holes plus a mask per image in
`mask_dir` (same file name, white = hole). `mode=derive`: the files are ordinary images, and
the run's pairing makes the inputs from them (downsampling, masks, edges), so each output can
be compared with its original. Writes `outputs/<name>.png` for every input, `triplets.png`
(input | output [| original]) and `translate.json` to RUN/translate/<time>/. Works for every
model satisfying `CanTranslate` (genlab.analysis.translate_folder).
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

import genlab.utils.resolvers  # noqa: F401  (registers ${genlab.*} before Hydra composes)
from genlab.utils.errors import exit_on_user_error
from genlab.utils.run import output_folder

log = logging.getLogger("genlab.translate")


@hydra.main(version_base="1.3", config_path="conf", config_name="translate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    # torch and the models load when the command runs, not for --help or a refusal
    from genlab.analysis.translate_folder import translate_folder
    from genlab.data.paired import translation_pairing
    from genlab.utils.commands import load_for_command

    with output_folder(cfg, "translate folder") as out_dir:
        # the run's data: its pairing and image shape (nothing is read from it)
        model, _, datamodule = load_for_command(cfg, seed=0, data="required")
        summary = translate_folder(
            model,
            translation_pairing(datamodule),
            str(cfg.input_dir),
            out_dir,
            image_shape=datamodule.image_shape,
            mode=cfg.mode,
            mask_dir=cfg.mask_dir,
            resize=cfg.resize,
            batch_size=cfg.batch_size,
            n_grid=cfg.n_grid,
            n_per_row=cfg.n_per_row,
            max_image_pixels=cfg.max_image_pixels,
            max_unresized_pixels=cfg.max_unresized_pixels,
        )
    log.info("%d images translated into %s", summary["n_images"], summary["outputs_dir"])
    print(summary["grid"])


if __name__ == "__main__":
    main()
