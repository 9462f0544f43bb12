"""A fresh venv that holds only what the GPU image holds, to test run.sh's install here.

    .venv/bin/python benchmarks/gpu/emulate_image.py /tmp/image-venv
    PYTHON=/tmp/image-venv/bin/python WHEELS=/tmp/wheels311 \\
        bash benchmarks/gpu/run.sh /tmp/gpu-out --device cpu --quick

The new venv (this interpreter's base Python, with pip) sees, through a .pth file, a folder of
links to those distributions of this environment that gpu_image_packages.txt lists (torch,
lightning, torchvision, matplotlib, ...) and nothing else: no hydra-core, omegaconf, wandb,
mlxtend, optuna, genlab. Whatever genlab needs beyond the image must then come from the wheels,
as on the GPU machine. Nothing is copied or downloaded.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import subprocess
import sys
import sysconfig
from pathlib import Path

from fetch_wheels import canon, gpu_image


def image_site(dest: Path) -> int:
    """Link the files of this environment's image distributions into `dest`: a top-level
    entry whole when no other distribution shares it, else its files one by one."""
    image = gpu_image()
    site = Path(sysconfig.get_paths()["purelib"])
    owners: dict[str, set[str]] = {}
    files: dict[str, list[Path]] = {}
    for dist in md.distributions():
        name = canon(dist.metadata["Name"])
        rel = [Path(str(f)) for f in dist.files or [] if not str(f).startswith("..")]
        files[name] = rel
        for f in rel:
            owners.setdefault(f.parts[0], set()).add(name)
    linked = 0
    for name, rel in files.items():
        if name not in image:
            continue
        linked += 1
        for f in rel:
            top = f.parts[0]
            shared = len(owners[top]) > 1
            target = dest / (f if shared else Path(top))
            if target.exists() or target.is_symlink() or not (site / f).exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(site / (f if shared else Path(top)))
    return linked


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("venv")
    venv = Path(p.parse_args().venv)
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    links = venv / "image-site"
    links.mkdir(exist_ok=True)
    n = image_site(links)
    (Path(purelib) / "gpu-image.pth").write_text(f"{links}\n")
    print(f"{venv}: {n} distributions of the GPU image linked from this environment")


if __name__ == "__main__":
    main()
