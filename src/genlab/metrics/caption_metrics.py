"""Does the image say what the text says? Two measures of text-to-image models, each from a
net trained separately from the model it judges.

Caption accuracy (captioned digits, genlab.data.captioned_digits): a `QuadrantReader`,
trained on the data generator's ground truth (what each quadrant of a canvas holds: nothing
or a digit, its size and thickness), reads an image back into a `Layout`; a caption is
satisfied when the layout makes it true (`satisfies`). `caption_accuracy` gives the fraction
of (image, caption) pairs satisfied, overall and per aspect (digits, positions, attributes);
on real canvases it is the reader's ceiling, on generated ones the model's accuracy. The
reader is position-agnostic (one net for every quadrant crop), so held-out digit/quadrant
combinations are read as well as seen ones.

R-precision (any captioned images, as AttnGAN, Xu et al. 2018): a `TextImageEncoder`
(an image CNN and a GRU text encoder into one space, trained contrastively on real pairs)
ranks each image's caption among `candidates` - 1 captions of other images; R-precision is
the fraction ranked first (chance: 1 / candidates).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genlab.data.captioned_digits import CaptionSpec, Layout, satisfies
from genlab.nets.text_encoders import GRUTextEncoder
from genlab.utils.errors import GenlabError


def _as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 0-255 or float [0, 1] images -> float [0, 1]."""
    return images.float().div(255) if images.dtype == torch.uint8 else images.float()


def _strided(channels: int, width: int, layers: int) -> list[nn.Module]:
    """4x4 stride-2 convs with BN and ReLU, widths width, 2 width, 4 width...: cheap on a CPU
    (a fraction of the cost of 3x3 convs and max-pooling at the same accuracy here)."""
    out: list[nn.Module] = []
    for k in range(layers):
        c_out = width * 2**k
        out += [nn.Conv2d(channels, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out)]
        out.append(nn.ReLU(True))
        channels = c_out
    return out


# --- the reader of digit canvases -------------------------------------------------------------
class QuadrantReader(nn.Module):
    """Canvas (B, C, S, S) in [0, 1] -> per quadrant (row-major, as QUADRANTS): logits of
    (empty, 0, ..., 9) (B, 4, 11), of the size (B, 4, 2) and of the thickness (B, 4, 2).
    One small CNN reads every quadrant crop (C, S/2, S/2), strided down to about 4 x 4."""

    def __init__(
        self, *, channels: int = 1, image_size: int = 32, width: int = 16, hidden: int = 64
    ) -> None:
        super().__init__()
        layers = max(1, (image_size // 8).bit_length() - 1)  # 32 -> 2, 64 -> 3
        self.body = nn.Sequential(  # (n, c, h, h) -> (n, hidden); h = S/2
            *_strided(channels, width, layers),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(width * 2 ** (layers - 1) * 16, hidden),
            nn.ReLU(True),
        )
        self.digit, self.size, self.thickness = (nn.Linear(hidden, k) for k in (11, 2, 2))

    @staticmethod
    def quadrants(x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B * 4, C, S/2, S/2), each canvas's quadrants row-major."""
        b, c, s, _ = x.shape
        h = s // 2
        q = x[:, :, : 2 * h, : 2 * h].reshape(b, c, 2, h, 2, h).permute(0, 2, 4, 1, 3, 5)
        return q.reshape(b * 4, c, h, h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.body(self.quadrants(x))  # (b * 4, hidden)
        b = len(x)
        return (
            self.digit(f).view(b, 4, 11),
            self.size(f).view(b, 4, 2),
            self.thickness(f).view(b, 4, 2),
        )

    @torch.no_grad()
    def read(self, images: torch.Tensor, *, batch_size: int = 512) -> list[Layout]:
        """The layout of each canvas as the reader sees it."""
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        out = []
        for chunk in images.split(batch_size):
            digit, size, thick = self(_as_float(chunk).to(device))
            d = digit.argmax(-1) - 1  # (b, 4): -1 empty
            s = torch.where(d >= 0, size.argmax(-1), -1)
            t = torch.where(d >= 0, thick.argmax(-1), -1)
            for row in zip(d.tolist(), s.tolist(), t.tolist(), strict=True):
                out.append(Layout(*(tuple(v) for v in row)))
        self.train(was)
        return out


def layout_targets(layouts: Sequence[Layout]) -> tuple[torch.Tensor, ...]:
    """(digit classes (N, 4) with 0 = empty, sizes (N, 4), thicknesses (N, 4); -1 where a
    quadrant is empty, ignored by the attribute losses)."""
    digits = torch.tensor([lay.digits for lay in layouts], dtype=torch.long) + 1
    sizes = torch.tensor([lay.sizes for lay in layouts], dtype=torch.long)
    thick = torch.tensor([lay.thicknesses for lay in layouts], dtype=torch.long)
    return digits, sizes, thick


def train_reader(
    images: torch.Tensor,
    layouts: Sequence[Layout],
    *,
    steps: int = 600,
    batch_size: int = 128,
    lr: float = 2e-3,
    width: int = 16,
    seed: int = 0,
) -> QuadrantReader:
    """A QuadrantReader trained on canvases (N, C, S, S) (uint8 or [0, 1]) and their true
    layouts: cross-entropy on every quadrant's content, and on the size and thickness of
    the occupied ones. Seeded (init and batches)."""
    if len(images) != len(layouts) or len(images) == 0:
        raise GenlabError(f"train_reader: {len(images)} canvases but {len(layouts)} layouts.")
    torch.manual_seed(seed)
    reader = QuadrantReader(channels=images.shape[1], image_size=images.shape[-1], width=width)
    digits, sizes, thick = layout_targets(layouts)
    opt = torch.optim.Adam(reader.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    reader.train()
    with torch.enable_grad():  # also when called under no_grad (an eval task)
        for _ in range(steps):
            idx = torch.randint(len(images), (min(batch_size, len(images)),), generator=gen)
            d_logits, s_logits, t_logits = reader(_as_float(images[idx]))
            loss = F.cross_entropy(d_logits.reshape(-1, 11), digits[idx].reshape(-1))
            for logits, target in ((s_logits, sizes[idx]), (t_logits, thick[idx])):
                if (target >= 0).any():
                    loss = loss + F.cross_entropy(
                        logits.reshape(-1, 2), target.reshape(-1), ignore_index=-1
                    )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return reader.eval()


def spec_accuracy(layouts: Sequence[Layout], specs: Sequence[CaptionSpec]) -> dict[str, float]:
    """Fractions of (layout, caption) pairs where the caption is true: `caption_acc` (every
    aspect), `digit_acc`, `position_acc`, and `attribute_acc` (over the captions that name
    an attribute; NaN when none does)."""
    if len(layouts) != len(specs) or not specs:
        raise GenlabError(f"spec_accuracy: {len(layouts)} layouts for {len(specs)} captions.")
    full = digit = place = 0
    attr_hits = attr_n = 0
    for lay, spec in zip(layouts, specs, strict=True):
        full += satisfies(spec, lay)
        digit += satisfies(spec, lay, positions=False, attributes=False)
        place += satisfies(spec, lay, digits=False, attributes=False)
        if any(m.size or m.thickness for m in spec.mentions):
            attr_n += 1
            attr_hits += satisfies(spec, lay, digits=False, positions=False)
    n = len(specs)
    return {
        "caption_acc": full / n,
        "digit_acc": digit / n,
        "position_acc": place / n,
        "attribute_acc": attr_hits / attr_n if attr_n else math.nan,
    }


def caption_accuracy(
    reader: QuadrantReader, images: torch.Tensor, specs: Sequence[CaptionSpec]
) -> dict[str, float]:
    """`spec_accuracy` of the images as the reader reads them: for generated images, whether
    each shows what its caption says; for real ones, the reader's ceiling."""
    return spec_accuracy(reader.read(images), specs)


# --- R-precision ------------------------------------------------------------------------------
class TextImageEncoder(nn.Module):
    """Images (B, C, S, S) in [0, 1] and captions (B, L) into one space: unit vectors (B, dim)
    whose dot products score how well a caption matches an image."""

    def __init__(self, *, vocab_size: int, channels: int, dim: int = 64, width: int = 16) -> None:
        super().__init__()
        self.image = nn.Sequential(  # (b, c, s, s) -> (b, dim)
            *_strided(channels, width, 3),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(4 * width * 16, dim),
        )
        self.text = GRUTextEncoder(
            vocab_size=vocab_size, embed_dim=dim, hidden_dim=dim, out_dim=dim
        )
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def embed_images(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image(_as_float(x)), dim=1)

    def embed_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(tokens), dim=1)


def train_text_image_encoder(
    images: torch.Tensor,
    tokens: torch.Tensor,
    *,
    vocab_size: int,
    steps: int = 400,
    batch_size: int = 64,
    lr: float = 2e-3,
    dim: int = 64,
    seed: int = 0,
) -> TextImageEncoder:
    """A TextImageEncoder trained on real images (N, C, S, S) and their captions (N, K, L)
    (one drawn per image per step) with the symmetric contrastive loss of CLIP (the other
    pairs of the batch are the negatives). Seeded."""
    if tokens.ndim != 3 or len(tokens) != len(images):
        raise GenlabError(
            f"train_text_image_encoder: captions (N, K, L) for N images, got "
            f"{tuple(tokens.shape)} for {len(images)} images."
        )
    torch.manual_seed(seed)
    enc = TextImageEncoder(vocab_size=vocab_size, channels=images.shape[1], dim=dim)
    opt = torch.optim.Adam(enc.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n, k = tokens.shape[:2]
    enc.train()
    with torch.enable_grad():  # also when called under no_grad (an eval task)
        for _ in range(steps):
            idx = torch.randperm(n, generator=gen)[: min(batch_size, n)]
            which = torch.randint(k, (len(idx),), generator=gen)
            zi = enc.embed_images(images[idx])
            zt = enc.embed_text(tokens[idx, which])
            logits = enc.log_scale.exp() * zi @ zt.T  # (b, b)
            target = torch.arange(len(idx))
            loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return enc.eval()


@torch.no_grad()
def r_precision(
    encoder: TextImageEncoder,
    images: torch.Tensor,
    tokens: torch.Tensor,
    *,
    candidates: int = 100,
    seed: int = 0,
    exclude: Callable[[int, int], bool] | None = None,
    batch_size: int = 512,
) -> float:
    """The fraction of images (N, C, S, S) whose own caption (N, L) scores above all of
    `candidates` - 1 captions drawn from the other images (R-precision with R = 1; chance
    is 1 / candidates). A drawn caption equal to the image's own, or one that
    `exclude(i, j)` says also describes image i (e.g. a caption true of its layout), is
    drawn again."""
    n = len(images)
    if len(tokens) != n or n < candidates:
        raise GenlabError(
            f"r_precision: {n} images with {len(tokens)} captions; it needs at least "
            f"`candidates`={candidates} of them."
        )
    encoder.eval()
    zi = torch.cat([encoder.embed_images(chunk) for chunk in images.split(batch_size)])
    zt = torch.cat([encoder.embed_text(chunk) for chunk in tokens.split(batch_size)])
    gen = torch.Generator().manual_seed(seed)
    hits = 0
    for i in range(n):
        chosen: list[int] = []
        tries = 0
        while len(chosen) < candidates - 1:
            j = int(torch.randint(n, (1,), generator=gen))
            tries += 1
            if tries > 100 * candidates:
                raise GenlabError(
                    f"r_precision: fewer than {candidates - 1} captions of other images differ "
                    f"from image {i}'s: use more images or fewer candidates."
                )
            if j == i or torch.equal(tokens[j], tokens[i]) or (exclude and exclude(i, j)):
                continue
            chosen.append(j)
        own = zi[i] @ zt[i]
        others = zt[chosen] @ zi[i]
        hits += bool((own > others).all())
    return hits / n
