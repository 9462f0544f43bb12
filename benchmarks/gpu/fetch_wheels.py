"""Download the wheels the GPU machine lacks, for its Python, into a git-ignored folder.

    .venv/bin/python benchmarks/gpu/fetch_wheels.py                 # -> benchmarks/gpu/wheels
    .venv/bin/python benchmarks/gpu/fetch_wheels.py --python 3.11 --dest /tmp/wheels311

The list is resolved, not guessed: starting from genlab's requirements in pyproject.toml,
every distribution installed in this environment (.venv, where genlab's tests pass) that the
GPU image does not have (gpu_image_packages.txt) is fetched at the version installed here, and
its requirements are followed in turn, with markers evaluated for the target Python on
x86-64 Linux. A package found in the image ends the walk there: the image's own copy is used.
Binary wheels are fetched for CPython `--python` on manylinux x86-64; a package with no wheel
on PyPI (antlr4-python3-runtime 4.9.3) is built here, and must come out pure Python.
The folder ends up holding exactly those wheels, one version each, plus `wheels.json`.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.version import Version

HERE = Path(__file__).resolve().parent
# the working tree plus carried paths must stay under 64 MiB (device notes)
MAX_MB = 56
PLATFORMS = ["manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"] + [
    f"manylinux_2_{n}_x86_64" for n in range(5, 40)
]


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def gpu_image() -> set[str]:
    text = (HERE / "gpu_image_packages.txt").read_text()
    return {
        canon(w) for line in text.splitlines() if not line.startswith("#") for w in line.split()
    }


def environment(python: str) -> dict[str, str]:
    """Marker environment of the target: CPython `python` on x86-64 Linux."""
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
    }


def applies(req: Requirement, env: dict[str, str], extra: str = "") -> bool:
    return req.marker is None or Marker(str(req.marker)).evaluate({**env, "extra": extra})


def resolve(python: str) -> dict[str, str]:
    """{distribution: version installed here} of everything genlab needs beyond the image."""
    image, env = gpu_image(), environment(python)
    try:
        import tomllib  # Python >= 3.11: the requirements as pyproject.toml says today

        with open(HERE.parents[1] / "pyproject.toml", "rb") as f:
            deps = tomllib.load(f)["project"]["dependencies"]
    except ModuleNotFoundError:  # as installed (pip install -e . after every change)
        deps = [r for r in md.requires("genlab") or [] if "extra ==" not in r]
    todo = [Requirement(r) for r in deps]
    todo = [r for r in todo if applies(r, env)]
    needed: dict[str, str] = {}
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req = todo.pop()
        name = canon(req.name)
        if (name, frozenset(req.extras)) in done:
            continue
        done.add((name, frozenset(req.extras)))
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            if name in image:
                continue
            sys.exit(
                f"{req} is needed on the GPU machine (Python {python}) but is not installed "
                "here, so its tested version is unknown: install it into .venv first."
            )
        reqs = [Requirement(r) for r in dist.requires or []]
        # the extras asked for apply also to a package the image has (torchmetrics[image])
        todo += [r for r in reqs for e in req.extras if applies(r, env, e)]
        if name in image:
            continue
        needed[name] = dist.version
        todo += [r for r in reqs if applies(r, env)]
    return dict(sorted(needed.items()))


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
    )


def download(pins: dict[str, str], dest: Path, python: str) -> None:
    """Binary wheels for the target, one pip call; then, one by one, what that could not
    fetch (built here when PyPI has no wheel at all: it must be pure Python)."""
    tag = python.replace(".", "")
    target = ["--python-version", python, "--implementation", "cp"]
    target += [a for abi in (f"cp{tag}", "abi3", "none") for a in ("--abi", abi)]
    target += [a for p in PLATFORMS for a in ("--platform", p)]
    base = ["download", "--no-deps", "--only-binary=:all:", "-d", str(dest), *target]
    specs = [f"{n}=={v}" for n, v in pins.items()]
    if pip(*base, *specs).returncode == 0:
        return
    for spec in specs:
        if pip(*base, spec).returncode == 0:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            built = pip("wheel", "--no-deps", "-w", tmp, spec)
            wheels = list(Path(tmp).glob("*.whl"))
            if built.returncode or not wheels:
                sys.exit(f"no wheel of {spec} for Python {python}:\n{built.stderr[-2000:]}")
            if not wheels[0].name.endswith("-none-any.whl"):
                sys.exit(f"{spec} has no wheel for Python {python} on PyPI and is not pure")
            wheels[0].rename(dest / wheels[0].name)


def wheel_name(path: Path) -> str:
    return canon(path.name.split("-")[0])


def requirements_met(dest: Path, pins: dict[str, str], python: str) -> list[str]:
    """Requirements of the fetched wheels that neither the wheels nor the image satisfy."""
    image, env = gpu_image(), environment(python)
    problems = []
    for whl in dest.glob("*.whl"):
        with zipfile.ZipFile(whl) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            lines = z.read(meta).decode().splitlines()
        for line in lines:
            if line.startswith("Requires-Dist:"):
                req = Requirement(line.split(":", 1)[1].strip())
                name = canon(req.name)
                if not applies(req, env) or name in image:
                    continue
                if name not in pins:
                    problems.append(f"{whl.name} needs {req}: neither fetched nor on the image")
                elif pins[name] not in req.specifier:
                    problems.append(f"{whl.name} needs {req}, fetched {pins[name]}")
    return problems


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--python", default="3.12", help="the GPU machine's Python (3.12)")
    p.add_argument("--dest", default=str(HERE / "wheels"))
    args = p.parse_args()
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    pins = resolve(args.python)
    print(f"{len(pins)} packages for Python {args.python}: " + ", ".join(pins))
    download(pins, dest, args.python)
    # exactly the resolved set, one version each: two versions of one stop the install there
    for whl in dest.glob("*.whl"):
        version = Version(whl.name.split("-")[1])
        if wheel_name(whl) not in pins or version != Version(pins[wheel_name(whl)]):
            whl.unlink()
    missing = set(pins) - {wheel_name(w) for w in dest.glob("*.whl")}
    if missing:
        sys.exit(f"not fetched: {sorted(missing)}")
    problems = requirements_met(dest, pins, args.python)
    if problems:
        sys.exit("unmet requirements:\n  " + "\n  ".join(problems))
    wheels = sorted(dest.glob("*.whl"))
    mb = sum(w.stat().st_size for w in wheels) / 2**20
    (dest / "wheels.json").write_text(
        json.dumps(
            {"python": args.python, "pins": pins, "wheels": [w.name for w in wheels], "mb": mb},
            indent=1,
        )
    )
    print(f"{len(wheels)} wheels, {mb:.1f} MiB in {dest}")
    if mb > MAX_MB:
        sys.exit(f"{mb:.1f} MiB of wheels: more than the {MAX_MB} MiB a device call can carry")


if __name__ == "__main__":
    main()
