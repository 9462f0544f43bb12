"""What genlab.edit did, for a reader: `report.md` in the edit folder (each method's strip
embedded beside what was measured), and the same strips and numbers sent to the configured
loggers (W&B, TensorBoard, CSV).

The loggers receive the pixels of the PNG files on disk, read back from them, so W&B shows
exactly the strips of the folder (uint8: wandb casts float arrays to uint8 without scaling).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genlab.analysis.tables import markdown_table

log = logging.getLogger(__name__)

STEP = 0  # an edit is one event: every row and image at step 0 of its own logger run


def _amounts(summary: dict[str, Any]) -> str:
    return ", ".join(f"{a:+g}" for a in summary["amounts"])


def strip_caption(summary: dict[str, Any], method: str) -> str:
    """What a strip's rows and columns are."""
    if summary["attribute"] is None:
        return f"{method}: one row per input; columns: input | reconstruction"
    return (
        f"{method}: one row per input; columns: input | reconstruction | "
        f"{summary['attribute']} {_amounts(summary)}"
    )


def scalars(summary: dict[str, Any]) -> dict[str, float]:
    """The measured numbers as flat `edit/<method>/<name>` scalars: the reconstruction's
    PSNR/SSIM/feature distance, each judge's achieved slope and mean absolute error, the
    identity kept (class agreement averaged over the amounts)."""
    out: dict[str, float] = {}
    for method, entry in summary["methods"].items():
        key = f"edit/{method}"
        for name, value in (entry.get("reconstruction") or {}).items():
            out[f"{key}/reconstruction_{name}"] = float(value)
        for judged in entry.get("judged", []):
            kind = judged["judge"]["kind"]
            out[f"{key}/{kind}/achieved_slope"] = float(judged["achieved_slope"])
            out[f"{key}/{kind}/abs_error"] = float(judged["abs_error"])
        identity = entry.get("identity")
        if identity:
            kept = identity.get("edit_agreement")
            if kept:
                out[f"{key}/identity_kept"] = float(sum(kept) / len(kept))
            out[f"{key}/reconstruction_identity_kept"] = float(
                identity["reconstruction_agreement"]
            )
    return out


def write_report(out_dir: Path, summary: dict[str, Any], *, ckpt_path: str) -> Path:
    """`out_dir/report.md`: the edit, each method's strip (relative link) and its numbers."""
    coding = summary.get("coding", {})
    how = "the model's encoder"
    if coding.get("route") == "invert":
        how = (
            f"inversion ({coding.get('steps')} Adam steps, loss {coding.get('loss_start', 0):.4g}"
            f" -> {coding.get('loss_end', 0):.4g}"
            + (
                f", from an encoder of {coding['encoder_steps']} steps"
                if coding.get("encoder_steps")
                else ""
            )
            + ")"
        )
    labeler = summary.get("labeler") or {}
    title = (
        f"{summary['attribute']} by {_amounts(summary)}"
        if summary["attribute"] is not None
        else "none (attribute=null: the images coded and decoded)"
    )
    lines = [
        f"# Edit: {title} ({summary['ckpt_model']})",
        "",
        f"- checkpoint: `{ckpt_path}`",
        f"- inputs: {summary['n_inputs']} images ({summary['source']}), coded by {how}",
        f"- method: `{summary['method']}`"
        + (f", holding {', '.join(summary['keep'])}" if summary.get("keep") else ""),
    ]
    if labeler and summary.get("labelled_draws"):
        lines.append(
            f"- directions from {summary['labelled_draws']} prior draws scored by the "
            f"{labeler.get('kind')} labeler ({', '.join(labeler.get('names', []))})"
        )
    for method, entry in summary["methods"].items():
        title = "the method" if method == summary["method"] else "beside it"
        strip = Path(entry["strip"]).name
        lines += ["", f"## `{method}` ({title})", "", strip_caption(summary, method) + ".", ""]
        lines += [f"![{Path(strip).stem}]({strip})", ""]
        rows: list[tuple[str, Any]] = []
        for name, value in (entry.get("reconstruction") or {}).items():
            rows.append((f"reconstruction {name}", value))
        for judged in entry.get("judged", []):
            kind = judged["judge"]["kind"]
            for asked, got in zip(
                judged["requested"], judged["achieved_vs_reconstruction"], strict=True
            ):
                rows.append((f"{kind}: achieved at {asked:+g} (vs reconstruction)", got))
            rows.append((f"{kind}: achieved slope (1 = exact)", judged["achieved_slope"]))
            rows.append((f"{kind}: mean abs error", judged["abs_error"]))
            for other, drift in judged.get("other_drift", {}).items():
                rows.append((f"{kind}: {other} drift (mean abs)", drift))
        identity = entry.get("identity")
        if identity:
            rows.append(
                ("identity kept by the reconstruction", identity["reconstruction_agreement"])
            )
            kept_by_amount = identity.get("edit_agreement", [])
            for asked, kept in zip(summary["amounts"], kept_by_amount, strict=True):
                rows.append((f"identity kept at {asked:+g}", kept))
        direction = entry.get("direction")
        if direction:
            for name in ("slope", "r2", "held_out_accuracy", "cosine_to_unconditional"):
                if name in direction:
                    rows.append((f"direction {name}", direction[name]))
        if rows:
            lines += markdown_table(["measure", "value"], rows).splitlines()
    lines += ["", "Every number: `edit.json`."]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def log_edit(
    loggers: Sequence[Any], out_dir: Path, summary: dict[str, Any], *, config: dict[str, Any]
) -> list[str]:
    """Send the edit to `loggers` (Lightning loggers): `config` as hyperparameters, the
    strips as images under `edit/<method>/strip` (the PNG files' own pixels), the `scalars`; then
    close them (W&B's run finished). Returns the offline W&B run folders (for `wandb sync`)."""
    if not loggers:
        return []
    import numpy as np
    import torch
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
    from PIL import Image

    offline: list[str] = []
    values = scalars(summary)
    for logger in loggers:
        logger.log_hyperparams(config)
        for method, entry in summary["methods"].items():
            with Image.open(entry["strip"]) as png:
                pixels = np.asarray(png).copy()  # (H, W[, C]) uint8, as on disk
            key, caption = f"edit/{method}/strip", strip_caption(summary, method)
            if isinstance(logger, WandbLogger):
                logger.log_image(key=key, images=[pixels], step=STEP, caption=[caption])
            elif isinstance(logger, TensorBoardLogger):
                hwc = pixels if pixels.ndim == 3 else pixels[..., None]
                logger.experiment.add_image(
                    key, torch.from_numpy(hwc), global_step=STEP, dataformats="HWC"
                )
                logger.experiment.add_text(f"{key}/caption", caption, global_step=STEP)
        if values:
            logger.log_metrics(values, step=STEP)
        if isinstance(logger, WandbLogger):
            run = logger.experiment
            run.summary["edit/report"] = str(Path(summary["report"]).relative_to(out_dir))
            if getattr(logger, "genlab_offline", False) and getattr(run, "dir", None):
                offline.append(str(Path(run.dir).parent))
        logger.finalize("success")
    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish()
    return offline
