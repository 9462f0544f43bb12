"""Sparsity of autoencoder codes: penalties, the top-k transform and code statistics.

Three forms, each a small config object the autoencoder holds as `sparsity`:
- `L1Sparsity`: weight * sum_j |z_j| per example (use a ReLU code so units reach exactly 0);
- `KLSparsity`: Ng's sparse autoencoder (UFLDL): sigmoid codes, rho_hat_j the batch mean of
  unit j, penalty weight * sum_j KL(rho || rho_hat_j);
- `TopKSparsity`: the k-sparse autoencoder (Makhzani & Frey 2013): keep the k largest
  activations of each example, zero the rest; no penalty.
`transform(code)` is applied wherever the model encodes; `penalty(code)` (a scalar, already
weighted and averaged over the batch) is added to the training loss.
"""

from __future__ import annotations

import torch

from genlab.utils.errors import GenlabError


def l1_sparsity(code: torch.Tensor) -> torch.Tensor:
    """Per-example L1 norm of the code (B,)."""
    return code.abs().flatten(1).sum(1)


def kl_sparsity_batch(code: torch.Tensor, rho: float, eps: float = 1e-6) -> torch.Tensor:
    """sum_j KL(Bernoulli(rho) || Bernoulli(rho_hat_j)), rho_hat_j the batch mean of unit j.

    A batch-level scalar (the penalty is defined on batch statistics, not per example);
    `code` (B, D) must lie in [0, 1] (sigmoid codes). Zero iff every unit's mean is rho.
    """
    rho_hat = code.mean(0).clamp(eps, 1 - eps)  # (d,)
    kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))
    return kl.sum()


def top_k(code: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest values of each row of `code` (B, D), zero the others.

    Gradients flow only through the kept units (the support is chosen per example).
    """
    if k >= code.shape[1]:
        return code
    idx = code.topk(k, dim=1).indices  # (b, k)
    mask = torch.zeros_like(code).scatter_(1, idx, 1.0)
    return code * mask


def code_stats(code: torch.Tensor, threshold: float) -> dict[str, torch.Tensor]:
    """How sparse a batch of codes (B, D) is.

    `mean_activation`: mean |z|; `active_fraction`: fraction of entries with |z| > threshold
    (overall); `dead_unit_fraction`: fraction of units active for no example of the batch;
    `unit_active_fraction_max`: the busiest unit's fraction of active examples (per-unit view:
    1.0 means some unit fires for everything).
    """
    active = code.detach().abs() > threshold  # (b, d)
    per_unit = active.float().mean(0)  # (d,)
    return {
        "mean_activation": code.detach().abs().mean(),
        "active_fraction": active.float().mean(),
        "dead_unit_fraction": (per_unit == 0).float().mean(),
        "unit_active_fraction_max": per_unit.max(),
    }


def hoyer_sparsity(code: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Hoyer's scale-free sparsity per example (B,): 0 for a constant code, 1 for one non-zero
    unit: (sqrt(D) - |z|_1 / |z|_2) / (sqrt(D) - 1). Blind to rescaling the code, so a penalty
    cannot fake it by shrinking the code and growing the decoder. An all-zero code (no active
    unit, where the ratio is 0/0) counts as 1, the sparsest; the formula would give more."""
    d = code.shape[1]
    norm = code.norm(dim=1)
    ratio = code.abs().sum(1) / norm.clamp_min(eps)
    value = (d**0.5 - ratio) / (d**0.5 - 1)
    return torch.where(norm > eps, value, torch.ones_like(value))


class Sparsity:
    """No sparsity: identity transform, zero penalty (the base of the three forms)."""

    kind = "none"
    active_threshold = 1e-3
    # built from configs, also from a checkpoint's (genlab.utils.untrusted.check_targets)
    config_object = True

    def transform(self, code: torch.Tensor) -> torch.Tensor:
        return code

    def penalty(self, code: torch.Tensor) -> torch.Tensor:
        return code.new_zeros(())

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class L1Sparsity(Sparsity):
    """weight * |z|_1 per example, averaged over the batch."""

    kind = "l1"

    def __init__(self, weight: float = 0.05, *, active_threshold: float = 1e-3) -> None:
        if weight < 0:
            raise GenlabError(f"model.sparsity.weight (L1 lambda) must be >= 0, got {weight}.")
        self.weight, self.active_threshold = float(weight), float(active_threshold)

    def penalty(self, code: torch.Tensor) -> torch.Tensor:
        return self.weight * l1_sparsity(code).mean()


class KLSparsity(Sparsity):
    """weight * sum_j KL(rho || rho_hat_j) on sigmoid codes (Ng's sparse autoencoder)."""

    kind = "kl"

    def __init__(
        self, rho: float = 0.05, weight: float = 3.0, *, active_threshold: float = 0.1
    ) -> None:
        if not 0.0 < rho < 1.0:
            raise GenlabError(
                f"model.sparsity.rho (target mean activation) must be in (0, 1), got {rho}."
            )
        if weight < 0:
            raise GenlabError(f"model.sparsity.weight (KL beta) must be >= 0, got {weight}.")
        self.rho, self.weight, self.active_threshold = (
            float(rho),
            float(weight),
            float(active_threshold),
        )

    def penalty(self, code: torch.Tensor) -> torch.Tensor:
        if code.min() < 0 or code.max() > 1:
            raise GenlabError(
                "model.sparsity=kl needs codes in [0, 1]: set model.encoder.out_activation="
                "sigmoid (the model/sparsity=kl option does this unless something overrides it)."
            )
        return self.weight * kl_sparsity_batch(code, self.rho)


class TopKSparsity(Sparsity):
    """Keep the k largest activations per example (k-sparse autoencoder); no penalty."""

    kind = "topk"

    def __init__(self, k: int = 16, *, active_threshold: float = 1e-3) -> None:
        if k < 1:
            raise GenlabError(f"model.sparsity.k must be at least 1, got {k}.")
        self.k, self.active_threshold = int(k), float(active_threshold)

    def transform(self, code: torch.Tensor) -> torch.Tensor:
        return top_k(code, self.k)
