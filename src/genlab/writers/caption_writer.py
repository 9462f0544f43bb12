"""Images with their captions (text-to-image samples): a grid PNG with each caption under its
image, a Markdown and an HTML caption table, and W&B media (an Image per sample with its
caption, or one Table). Same three functions as every writer (genlab.writers): `save`,
`preview`, `media`; without captions they fall back to a plain image grid.

Captions are text someone typed or a dataset held: they are drawn as text, and escaped in the
Markdown and HTML tables (a caption never becomes markup).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from genlab.data.modality import Modality
from genlab.writers import image_writer

PAD = 2  # pixels between cells, as the image writer's grids
MAX_LINES = 4  # a longer caption is cut with an ellipsis under its image (complete in tables)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _as_pil(img: torch.Tensor, scale: int) -> Image.Image:
    """(C, H, W) in [0, 1] -> an RGB PIL image, enlarged `scale` times (nearest)."""
    x = img.detach().float().clamp(0, 1).cpu()
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    arr = (x.mul(255).add(0.5).clamp(0, 255).to(torch.uint8)).permute(1, 2, 0).numpy()
    out = Image.fromarray(np.ascontiguousarray(arr), "RGB")
    if scale > 1:
        out = out.resize((out.width * scale, out.height * scale), Image.Resampling.NEAREST)
    return out


def wrap(text: str, width: int, draw: ImageDraw.ImageDraw, font: Any) -> list[str]:
    """`text` broken into lines of at most `width` pixels (a word longer than a line is cut
    by characters), at most MAX_LINES lines (the last ends with an ellipsis when cut)."""
    lines: list[str] = []
    current = ""
    # at most MAX_LINES lines are drawn: a few hundred characters are all that can show
    text = text[: 64 * MAX_LINES]
    for word in " ".join(text.split()).split(" "):
        if not word:
            continue
        candidate = f"{current} {word}".strip()
        if draw.textlength(candidate, font=font) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while draw.textlength(current, font=font) > width and len(current) > 1:
            cut = len(current)
            while cut > 1 and draw.textlength(current[:cut], font=font) > width:
                cut -= 1
            lines.append(current[:cut])
            current = current[cut:]
    if current:
        lines.append(current)
    if len(lines) > MAX_LINES:
        last = lines[MAX_LINES - 1]
        while last and draw.textlength(last + "...", font=font) > width:
            last = last[:-1]
        lines = [*lines[: MAX_LINES - 1], last + "..."]
    return lines


def caption_grid(
    x: torch.Tensor,
    captions: Sequence[str],
    *,
    n_per_row: int = 8,
    min_cell: int = 96,
) -> Image.Image:
    """One RGB image: `x` (B, C, H, W) in [0, 1] in rows of `n_per_row`, each enlarged by a
    whole factor to at least `min_cell` pixels wide, its caption in black on white under it."""
    if len(captions) != len(x):
        raise ValueError(f"{len(x)} images but {len(captions)} captions")
    font = _font()
    scale = max(1, math.ceil(min_cell / x.shape[-1]))
    cell_w, cell_h = x.shape[-1] * scale, x.shape[-2] * scale
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [wrap(c, cell_w, probe, font) for c in captions]
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (10, 2)
    line_h = ascent + descent + 1
    text_h = line_h * max([len(w) for w in wrapped] + [1]) + PAD
    cols = max(1, min(n_per_row, len(x)))
    rows = max(1, math.ceil(len(x) / cols))
    grid = Image.new(
        "RGB",
        (cols * (cell_w + PAD) + PAD, rows * (cell_h + text_h + PAD) + PAD),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(grid)
    for i, (img, lines) in enumerate(zip(x, wrapped, strict=True)):
        r, c = divmod(i, cols)
        left = PAD + c * (cell_w + PAD)
        top = PAD + r * (cell_h + text_h + PAD)
        grid.paste(_as_pil(img, scale), (left, top))
        for k, line in enumerate(lines):
            draw.text((left, top + cell_h + 1 + k * line_h), line, fill=(0, 0, 0), font=font)
    return grid


def preview(
    x: torch.Tensor,
    *,
    modality: Modality,
    n_per_row: int = 8,
    captions: Sequence[str] | None = None,
) -> torch.Tensor:
    """(3, H', W') float in [0, 1]: the captioned grid (the plain image grid without
    captions)."""
    if captions is None:
        return image_writer.preview(x, modality=modality, n_per_row=n_per_row)
    grid = caption_grid(x, captions, n_per_row=n_per_row)
    return torch.from_numpy(np.asarray(grid).copy()).permute(2, 0, 1).float().div(255)


def markdown_escape(text: str) -> str:
    """A caption as the text of a Markdown table cell: HTML-escaped (Markdown renders inline
    HTML), `|` and backslashes escaped, whitespace made single spaces."""
    text = html.escape(" ".join(text.split()), quote=False)
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _png_data_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def save(
    x: torch.Tensor,
    stem: Path,
    *,
    modality: Modality,
    n_per_row: int = 8,
    captions: Sequence[str] | None = None,
) -> list[Path]:
    """Write `stem.png` (the captioned grid), `stem.md` (a table: sample, place in the grid,
    caption) and `stem.html` (a self-contained table of each image beside its caption).
    Without captions: the image writer's grid only."""
    stem = Path(stem)
    if captions is None:
        return image_writer.save(x, stem, modality=modality, n_per_row=n_per_row)
    captions = list(captions)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, md, page = stem.with_suffix(".png"), stem.with_suffix(".md"), stem.with_suffix(".html")
    caption_grid(x, captions, n_per_row=n_per_row).save(png)
    cols = max(1, min(n_per_row, len(x)))
    rows_md = [
        f"| {i} | {i // cols + 1}, {i % cols + 1} | {markdown_escape(c)} |"
        for i, c in enumerate(captions)
    ]
    md.write_text(
        f"![samples]({png.name})\n\n| sample | row, column | caption |\n|---|---|---|\n"
        + "\n".join(rows_md)
        + "\n"
    )
    scale = max(1, math.ceil(96 / x.shape[-1]))
    cells = "\n".join(
        f'<tr><td>{i}</td><td><img src="{_png_data_uri(_as_pil(img, scale))}" alt="sample {i}">'
        f"</td><td>{html.escape(c)}</td></tr>"
        for i, (img, c) in enumerate(zip(x, captions, strict=True))
    )
    page.write_text(
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>"
        f"{html.escape(stem.name)}</title></head><body>\n<table>\n"
        "<tr><th>sample</th><th>image</th><th>caption</th></tr>\n"
        f"{cells}\n</table>\n</body></html>\n"
    )
    return [png, md, page]


def media(
    x: torch.Tensor, *, modality: Modality, captions: Sequence[str] | None = None
) -> list[Any]:
    """One wandb.Image per sample, captioned."""
    return image_writer.media(x, modality=modality, captions=list(captions) if captions else None)


def table(x: torch.Tensor, captions: Sequence[str]) -> Any:
    """A wandb.Table with columns `image` and `caption`, one row per sample."""
    import wandb

    from genlab.utils.loggers import to_uint8

    rows = [
        [wandb.Image(to_uint8(img).numpy(), caption=c), c]
        for img, c in zip(x.detach().float().clamp(0, 1).cpu(), captions, strict=True)
    ]
    return wandb.Table(columns=["image", "caption"], data=rows)
