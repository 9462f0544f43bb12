"""Draw samples from a checkpoint: `python -m genlab.sample ckpt_path=PATH n=64`.

Writes `samples.png` (a grid; one row per class for conditional models) to
RUN/samples/<time>/, and with `save_individual=true` each of the n samples as its own PNG in
`images/` (for external FID tools). Works for every model satisfying `CanSample`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from torchvision.utils import make_grid, save_image

import genlab.utils.resolvers  # noqa: F401
from genlab.eval import load_model
from genlab.models.protocols import CanSample
from genlab.utils.errors import GenlabError, exit_on_user_error
from genlab.utils.run import write_json

log = logging.getLogger("genlab.sample")


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise GenlabError(f"device={name!r}: use auto, cpu or cuda.")
    return name


def class_labels(model: Any, classes: list[int] | None) -> list[int] | None:
    """The classes to sample for a conditional model (all of them by default), else None."""
    if not getattr(model, "conditional", False):
        return None
    num = int(model.num_classes)
    chosen = list(range(num)) if classes is None else [int(c) for c in classes]
    bad = [c for c in chosen if not 0 <= c < num]
    if bad:
        raise GenlabError(f"classes={bad} are not classes of this model: use 0..{num - 1}.")
    return chosen


@torch.no_grad()
def draw(
    model: Any,
    n: int,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    batch_size: int = 500,
) -> torch.Tensor:
    """n samples (n, C, H, W) in [0, 1], drawn `batch_size` at a time (labels for conditional)."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        y = labels[start : start + m].to(model.device) if labels is not None else None
        kwargs = {"y": y} if y is not None else {}
        out.append(model.sample(m, generator=gen, temperature=temperature, **kwargs).float().cpu())
    return torch.cat(out).clamp(0, 1)


def write_samples(
    model: Any,
    out_dir: Path,
    *,
    n: int = 64,
    n_per_row: int = 8,
    temperature: float = 1.0,
    seed: int = 0,
    save_individual: bool = False,
    classes: list[int] | None = None,
    grid_max: int = 256,
    batch_size: int = 500,
) -> dict[str, Any]:
    """Write samples.png (and images/NNNNNN.png for each sample); return a summary."""
    if not isinstance(model, CanSample):
        raise GenlabError(
            f"{type(model).__name__} cannot sample (it has no sample_latent/decode/sample): "
            "sampling needs a generative model, e.g. model=vae, cvae, wae or a GAN."
        )
    if n < 1 or temperature <= 0:
        raise GenlabError(f"n={n} must be >= 1 and temperature={temperature} > 0.")
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = class_labels(model, classes)
    summary: dict[str, Any] = {"n": n, "temperature": temperature, "seed": seed}
    if chosen is None:
        x = draw(model, n, temperature=temperature, seed=seed, batch_size=batch_size)
        grid = make_grid(x[:grid_max], nrow=n_per_row, padding=2, pad_value=1.0)
        labels = None
    else:
        # grid: one row of n_per_row samples per class; files: n samples, classes in turn
        rows = torch.tensor(chosen).repeat_interleave(n_per_row)
        grid_x = draw(model, len(rows), temperature=temperature, seed=seed, labels=rows)
        grid = make_grid(grid_x, nrow=n_per_row, padding=2, pad_value=1.0)
        labels = torch.tensor(chosen)[torch.arange(n) % len(chosen)]
        x = (
            draw(model, n, temperature=temperature, seed=seed + 1, labels=labels)
            if save_individual
            else None
        )
        summary["classes"] = chosen
    save_image(grid, out_dir / "samples.png")
    summary["grid"] = str(out_dir / "samples.png")
    if save_individual:
        folder = out_dir / "images"
        folder.mkdir(exist_ok=True)
        for i, img in enumerate(x):  # type: ignore[arg-type]
            suffix = f"_c{int(labels[i])}" if labels is not None else ""
            save_image(img, folder / f"{i:06d}{suffix}.png")
        summary["images_dir"], summary["n_files"] = str(folder), len(x)  # type: ignore[arg-type]
    write_json(out_dir / "samples.json", summary)
    return summary


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    torch.manual_seed(cfg.seed)
    model, _ = load_model(cfg.ckpt_path)
    model = model.to(pick_device(cfg.device))
    out_dir = Path(cfg.paths.output_dir)
    summary = write_samples(
        model,
        out_dir,
        n=cfg.n,
        n_per_row=cfg.n_per_row,
        temperature=cfg.temperature,
        seed=cfg.seed,
        save_individual=cfg.save_individual,
        classes=list(cfg.classes) if cfg.classes is not None else None,
        grid_max=cfg.grid_max,
        batch_size=cfg.batch_size,
    )
    log.info("samples written to %s", out_dir)
    print(summary["grid"])


if __name__ == "__main__":
    main()
