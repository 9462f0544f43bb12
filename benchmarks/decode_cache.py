"""Images per second out of an image folder: decoding every file vs the decode-once cache.

    python benchmarks/decode_cache.py                       # 20,000 JPEGs under /tmp
    python benchmarks/decode_cache.py --n 2000 --folder /tmp/small

Data only, no model: the training split of `image_folder` at 64x64 RGB, batch 128, read as
training reads it, for two epochs, four ways:
  files, workers 0 / 2   cache=false: a DataLoader decodes, resizes and crops every file every
                         epoch (setup: genlab's up-front decode check of every file)
  cache, resident        cache=true, device_resident=true (on this CPU: batches cut from the
                         array in memory); setup: building the cache (first run) or reading it
  cache, DataLoader      cache=true, device_resident=false: a DataLoader over the mapped array
The first epoch's rate counts the setup (check or cache build) with the epoch, as a first
epoch does; later epochs are the epoch alone. The synthetic folder (178x218 JPEGs, CelebA's
size; smooth colour fields with noise, ~10 KB each) is made once under --folder. Results:
benchmarks/results/decode_cache-cpu.{json,md}, with date, machine and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
from runs import cpu_model


def make_folder(folder: Path, n: int, seed: int = 0) -> None:
    """n JPEGs of 178x218 (CelebA's size), written once."""
    from PIL import Image

    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == n:
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, size=(7, 6, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((178, 218), Image.Resampling.BICUBIC), dtype=np.int16)
        noisy = smooth + rng.integers(-12, 13, size=smooth.shape, dtype=np.int16)
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(
            folder / f"{i:06d}.jpg", quality=90
        )


def measure(name: str, epochs: int, **options) -> dict:
    """Setup time, then seconds and images of each epoch over the training split."""
    from genlab.data import ImageFolder

    start = time.perf_counter()
    dm = ImageFolder(image_size=64, channels=3, batch_size=128, **options)
    dm.prepare_data()
    dm.setup("fit")
    setup = time.perf_counter() - start
    out = {"name": name, "setup_s": setup, "epochs": []}
    loader = dm.train_dataloader()
    for _ in range(epochs):
        t, n = time.perf_counter(), 0
        for x, _ in loader:
            n += len(x)
        out["epochs"].append({"s": time.perf_counter() - t, "images": n})
    first, later = out["epochs"][0], out["epochs"][-1]
    out["first_epoch_img_s"] = first["images"] / (setup + first["s"])
    out["later_epoch_img_s"] = later["images"] / later["s"]
    print(
        f"{name:28s} setup {setup:6.1f} s   first epoch {out['first_epoch_img_s']:8.0f} img/s"
        f"   later {out['later_epoch_img_s']:8.0f} img/s   (load {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--folder", default="/tmp/genlab-decode-bench/jpegs")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    folder = Path(args.folder)
    t = time.perf_counter()
    make_folder(folder, args.n)
    print(f"{args.n} JPEGs in {folder} ({time.perf_counter() - t:.0f} s)", flush=True)
    cache_dir = folder.parent / "cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    common = {"path": str(folder), "cache_dir": str(cache_dir)}
    load_before = os.getloadavg()
    runs = [
        measure("files, workers 0", args.epochs, **common, num_workers=0),
        measure("files, workers 2", args.epochs, **common, num_workers=2),
        # the first cached run builds the cache; its later epochs are the resident rate
        measure(
            "cache (built), resident", args.epochs, **common, cache=True, device_resident=True
        ),
        measure("cache (read), resident", args.epochs, **common, cache=True, device_resident=True),
        measure("cache (read), DataLoader w0", args.epochs, **common, cache=True, num_workers=0),
    ]
    load_after = os.getloadavg()
    import torch

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()}",
        "torch_threads": torch.get_num_threads(),
        "cache_build_threads": len(os.sched_getaffinity(0)),
        "load_average_1min_before_after": [load_before[0], load_after[0]],
        "images": args.n,
        "train_images": runs[0]["epochs"][0]["images"],
        "source": "178x218 JPEG, quality 90 -> 64x64 RGB, batch 128",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "decode_cache-cpu.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    files = runs[0]["later_epoch_img_s"]
    lines = [
        f"{meta['date']}; {meta['machine']}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after (shared machine: absolute rates are noisy, compare within "
        f"the run); {args.n} JPEGs {meta['source']}; training split "
        f"{meta['train_images']} images.",
        "",
        "| path | setup s | first epoch img/s | later epochs img/s | later vs files w0 |",
        "|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['name']} | {r['setup_s']:.1f} | {r['first_epoch_img_s']:.0f} | "
            f"{r['later_epoch_img_s']:.0f} | {r['later_epoch_img_s'] / files:.0f}x |"
        )
    (out / "decode_cache-cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
