"""Draw samples from a checkpoint: `python -m genlab.sample ckpt_path=PATH n=64`.

Writes `samples.png` (a grid; one row per class for conditional models) and samples.json to
RUN/samples/<time>/, and with `save_individual=true` each of the n samples as its own PNG in
`images/` (for external FID tools); other modalities add their own files by their writer
(waveforms: `samples_<i>.wav`, 16-bit, at the data's rate; `digit=7 n=8`: eight of the
digit). Works for every model satisfying `CanSample` (genlab.analysis.samples).
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

import genlab.utils.resolvers  # noqa: F401  (registers ${genlab.*} before Hydra composes)
from genlab.utils.errors import exit_on_user_error
from genlab.utils.run import output_folder

log = logging.getLogger("genlab.sample")


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    # torch and the models load when the command runs, not for --help or a refusal
    import torch

    from genlab.analysis.samples import write_samples
    from genlab.utils.checkpoint import load_model, pick_device

    with output_folder(cfg, "samples folder") as out_dir:
        psi = truncation_option(cfg.get("truncation"))  # refused before anything is read
        torch.manual_seed(cfg.seed)
        model, run_cfg = load_model(cfg.ckpt_path)
        model = model.to(pick_device(cfg.device))
        datamodule = run_data(run_cfg)
        conditions = sample_conditions(cfg, model, datamodule)
        truncate(model, psi)
        classes, n_per_row = one_class(cfg, model)
        summary = write_samples(
            model,
            out_dir,
            modality=getattr(datamodule, "modality", None),
            condition=getattr(datamodule, "condition", None),
            conditions=conditions,
            n=cfg.n,
            n_per_row=n_per_row,
            temperature=cfg.temperature,
            seed=cfg.seed,
            save_individual=cfg.save_individual,
            classes=classes,
            grid_max=cfg.grid_max,
            batch_size=cfg.batch_size,
        )
        if psi is not None:  # write_samples does not know of it
            from genlab.utils.run import write_json

            write_json(out_dir / "samples.json", {**summary, "truncation": psi})
    log.info("samples written to %s", out_dir)
    print(summary["grid"])


def one_class(cfg: DictConfig, model) -> tuple[list[int] | None, int]:  # noqa: ANN001
    """(classes, n_per_row): `digit=D` draws n samples of the one class D (one row of n: for
    spoken digits, n WAV files of the digit); else the `classes` and `n_per_row` options."""
    from genlab.utils.errors import GenlabError

    digit = cfg.get("digit")
    if digit is None:
        return (list(cfg.classes) if cfg.classes is not None else None), cfg.n_per_row
    if not getattr(model, "num_classes", 0):
        raise GenlabError(
            f"digit={digit}: {type(model).__name__} is not conditioned on a class (its "
            "num_classes is 0), so it cannot be asked for one; leave digit=null."
        )
    return [int(digit)], int(cfg.n)


def truncation_option(value: object) -> float | None:
    """The `truncation` option as psi > 0, or None (off); a GenlabError naming it otherwise."""
    from genlab.utils.errors import GenlabError

    if value is None:
        return None
    try:
        psi = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        psi = float("nan")
    if not psi > 0 or psi == float("inf"):
        raise GenlabError(
            f"truncation={value!r} must be a number > 0 (z drawn from N(0, 1) truncated to "
            "[-psi, psi]), or null for no truncation."
        )
    return psi


def truncate(model, psi: float | None) -> None:  # noqa: ANN001
    """With psi, the model's samples are drawn with the truncation trick (GANs: z from a
    normal truncated to [-psi, psi], see GAN.sample_latent); refused, naming the option, for
    models that do not take it."""
    import functools
    import inspect

    from genlab.utils.errors import GenlabError

    if psi is None:
        return
    sample = getattr(model, "sample", None)
    if sample is None or "truncation" not in inspect.signature(sample).parameters:
        raise GenlabError(
            f"truncation={psi}: {type(model).__name__} does not sample with the truncation "
            "trick (GANs do). Leave truncation=null, or use temperature= to scale the prior."
        )
    # write_samples draws through model.sample: this model's draws are truncated from here
    model.sample = functools.partial(sample, truncation=psi)


def run_data(run_cfg: DictConfig):  # noqa: ANN201 (a datamodule, or None)
    """The run's datamodule (not set up: nothing is read), for what a sample is and what it
    is conditioned on; None when it cannot be built here (its data live elsewhere)."""
    from hydra.utils import instantiate

    from genlab.utils.checkpoint import data_config
    from genlab.utils.errors import GenlabError

    try:
        return instantiate(data_config(run_cfg))
    except Exception as exc:  # noqa: BLE001  (any data problem: sample as images)
        err = exc if isinstance(exc, GenlabError) else None
        log.info("the run's data cannot be built here (%s): samples are written as images", err)
        return None


def sample_conditions(cfg: DictConfig, model, datamodule):  # noqa: ANN001, ANN201
    """The conditions to sample from: `text=...` (data conditioned on text), `source=data`
    (`n_conditions` of the data's test split: captions, context clips, sketches), or None
    (unconditional or class-conditional models: `classes=...`)."""
    from genlab.models.protocols import CanSample
    from genlab.utils.errors import GenlabError

    texts = cfg.get("text")
    source = cfg.get("source", "auto")
    if source == "auto":
        source = "data" if not isinstance(model, CanSample) else "prior"
    if texts is None and source == "prior":
        return None
    if datamodule is None:
        raise GenlabError(
            "text= and source=data need the run's data to make conditions, and it cannot be "
            "built here: run genlab.sample where the run's data are (data.data_dir)."
        )
    datamodule.setup("test")
    if texts is not None:
        import torch

        texts = [texts] if isinstance(texts, str) else list(texts)
        return torch.cat([datamodule.encode_condition(str(t)) for t in texts])
    if source != "data":
        raise GenlabError(f"source={source!r}: use auto, prior or data.")
    return datamodule.grid_conditions(int(cfg.get("n_conditions", 8)), split="test")


if __name__ == "__main__":
    main()
