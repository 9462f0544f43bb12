"""Label conditioning: `label_vector`, the one conversion of labels to the vectors nets see
(used by the CVAE's wrappers below and by the conditional GAN nets), and wrappers that
condition any encoder or decoder: labels (one-hot, or attribute vectors) enter as an extra
image plane (encoder) or extra code dims (decoder)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genlab.utils.errors import GenlabError


def label_vector(y: torch.Tensor | None, num_classes: int, *, check: bool = True) -> torch.Tensor:
    """Class indices (B,) -> one-hot (B, num_classes); attribute vectors (B, k) pass as floats.

    A GenlabError when labels are missing or do not fit `num_classes`. Reading the labels'
    range makes the host wait for the device: nets check it outside training (`check`), and
    during training the models check the data's classes once, before the first step."""
    if y is None:
        raise GenlabError(
            f"this net is conditioned on labels (num_classes={num_classes}) and got none: pass "
            "y, class indices (B,) or attribute vectors (B, num_classes)."
        )
    if y.ndim == 1 and not torch.is_floating_point(y):
        if check and len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise GenlabError(
                f"a label in [{int(y.min())}, {int(y.max())}] is outside 0..{num_classes - 1}: "
                "set model.num_classes to the number of classes of the data."
            )
        return F.one_hot(y, num_classes).float()
    y = y.float().view(len(y), -1)
    if y.shape[1] != num_classes:
        raise GenlabError(
            f"labels have {y.shape[1]} entries but model.num_classes={num_classes}: set "
            f"model.num_classes={y.shape[1]}."
        )
    return y


class ConditionalEncoder(nn.Module):
    """x (B, C, H, W), y -> net(cat[x, label plane]): the label is embedded as one extra image
    plane (a learned (num_classes -> H*W) map), so any image encoder works: build it with
    C + 1 channels. (One plane rather than num_classes one-hot planes keeps MLP encoders small.)
    """

    def __init__(self, net: nn.Module, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.net, self.num_classes, self.image_size = net, num_classes, image_size
        self.embed = nn.Linear(num_classes, image_size * image_size)
        self.out_dim = getattr(net, "out_dim", None)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        plane = self.embed(
            label_vector(y, self.num_classes, check=not self.training).to(x)
        )  # (b, h*w)
        plane = plane.view(-1, 1, self.image_size, self.image_size)
        return self.net(torch.cat([x, plane], dim=1))


class ConditionalDecoder(nn.Module):
    """z (B, d), y -> net(cat[z, label]) (build the net with in_dim = d + num_classes)."""

    def __init__(self, net: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.net, self.num_classes = net, num_classes
        self.in_dim = getattr(net, "in_dim", None)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(
            torch.cat([z, label_vector(y, self.num_classes, check=not self.training).to(z)], dim=1)
        )
