"""Yardstick: the classic plain-PyTorch VAE loop (the pytorch/examples vae/main.py recipe:
784-400-20 MLP, ReLU, Bernoulli/BCE summed over pixels, Adam 1e-3, batch 128) against
genlab's `experiment=vae_mnist_classic`, on the same mnist_5k split with the same number of
epochs. Both report the test negative ELBO in nats per image (one z sample per image,
closed-form KL), from the epoch with the best validation -ELBO.

    python benchmarks/vae_reference.py --epochs 50 --seeds 0 1 2

Prints a table and writes benchmarks/results/vae_reference.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]


class ClassicVAE(nn.Module):
    """The pytorch/examples VAE, written out plainly."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc21, self.fc22 = (
            nn.Linear(784, 400),
            nn.Linear(400, 20),
            nn.Linear(400, 20),
        )
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.fc4(F.relu(self.fc3(z))), mu, logvar


def nelbo_sum(
    logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


@torch.no_grad()
def evaluate(model: nn.Module, data, seed: int = 0) -> float:
    """Test -ELBO per image with seeded noise; the training RNG stream is left untouched."""
    rng_state = torch.get_rng_state()
    torch.manual_seed(seed)
    model.eval()
    total, n = 0.0, 0
    for x, _ in DataLoader(data, batch_size=500):
        logits, mu, logvar = model(x)
        total += float(nelbo_sum(logits, x, mu, logvar))
        n += len(x)
    model.train()
    torch.set_rng_state(rng_state)
    return total / n


def run_reference(epochs: int, seed: int) -> dict:
    from genlab.data import MNIST5k

    dm = MNIST5k(data_dir=str(REPO / "data"), image_size=28, channels=1, batch_size=128)
    dm.setup()
    torch.manual_seed(seed)
    model = ClassicVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    # drop_last as genlab's train loader does: the same 31 optimizer steps per epoch
    loader = DataLoader(dm.dataset("train"), batch_size=128, shuffle=True, drop_last=True)
    best_val, best_state, t0 = float("inf"), None, time.time()
    for _ in range(epochs):
        for x, _ in loader:
            logits, mu, logvar = model(x)
            loss = nelbo_sum(logits, x, mu, logvar) / len(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        val = evaluate(model, dm.dataset("val"))
        if val < best_val:
            best_val, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
    last_test = evaluate(model, dm.dataset("test"))
    model.load_state_dict(best_state)
    return {
        "best_val_nelbo": best_val,
        "test_nelbo": evaluate(model, dm.dataset("test")),
        "test_nelbo_last_epoch": last_test,
        "seconds": time.time() - t0,
    }


def run_genlab(epochs: int, seed: int) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_cfg

    from genlab.train import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_cfg(
            Path(tmp),
            "experiment=vae_mnist_classic",
            f"trainer.max_epochs={epochs}",
            f"seed={seed}",
            "trainer=cpu",
            "logger=csv",
            "~callbacks.rich_progress_bar",
            "~callbacks.latent_interpolation",
            "~callbacks.reconstruction_grid",
            "~callbacks.sample_grid",
            "extras.print_config=false",
            f"paths.data_dir={REPO / 'data'}",
        )
        t0 = time.time()
        summary = train(cfg)
    return {
        "best_val_nelbo": summary["best_score"],
        "test_nelbo": summary["metrics"]["test/nelbo_nats"],
        "seconds": time.time() - t0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--impl", nargs="+", default=["plain", "genlab"], choices=["plain", "genlab"]
    )
    parser.add_argument(
        "--out", default=str(REPO / "benchmarks" / "results" / "vae_reference.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    for seed in args.seeds:
        for name, fn in (("plain", run_reference), ("genlab", run_genlab)):
            if name not in args.impl:
                continue
            result = {"impl": name, "seed": seed, "epochs": args.epochs, **fn(args.epochs, seed)}
            rows.append(result)
            print(json.dumps(result), flush=True)
    print(f"\n{'impl':8s} {'seed':>4s} {'val -ELBO':>10s} {'test -ELBO':>11s} {'seconds':>8s}")
    for r in rows:
        val, test = r["best_val_nelbo"], r["test_nelbo"]
        print(f"{r['impl']:8s} {r['seed']:4d} {val:10.2f} {test:11.2f} {r['seconds']:8.1f}")
    for name in ("plain", "genlab"):
        vals = [r["test_nelbo"] for r in rows if r["impl"] == name]
        if vals:
            print(f"{name}: mean test -ELBO {sum(vals) / len(vals):.2f} nats, {len(vals)} seed(s)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
