"""Mutation testing of the modules where a wrong sign or constant silently gives wrong science
(`make mutate`, or `python benchmarks/mutate.py [group ...]`).

For each group below, mutmut 3 mutates the group's files in a scratch copy of the repository
(build/mutate/<group>/, so the working tree is never touched) and runs, for every mutant, only
the fast tests that cover that group (mutmut further narrows them to the tests that call the
mutated function). A mutant is killed when a test fails. Writes the counts per group, the time
taken and every surviving mutant (with its diff) to benchmarks/results/mutation.md and
mutation.json. Needs the `mutate` extra: pip install -e ".[mutate]".

Groups can be narrowed to the functions that matter (`functions`: prefixes of mutmut's mutant
names, e.g. the GAN's step counting and freezing, not its logging).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

GROUPS: dict[str, dict] = {
    "losses": {
        "mutate": ["src/genlab/losses/*"],
        "tests": [
            "tests/test_losses_closed_forms.py",
            "tests/test_vae_losses.py",
            "tests/test_gan.py::test_losses_match_closed_forms_at_known_points",
            "tests/test_gan.py::test_gradient_penalty_of_a_linear_critic_is_closed_form",
        ],
    },
    "distributions": {
        "mutate": ["src/genlab/distributions.py"],
        "tests": ["tests/test_losses_closed_forms.py", "tests/test_vae_losses.py"],
    },
    "distances": {
        "mutate": ["src/genlab/metrics/distances.py"],
        "tests": [
            "tests/test_distances_closed_forms.py",
            "tests/test_metrics.py",
            "-k",
            "not inception_path",
        ],
    },
    "generation": {
        "mutate": ["src/genlab/metrics/generation.py"],
        "tests": [
            "tests/test_generation_passes.py",
            "tests/test_metrics.py",
            "-k",
            "not inception_path",
        ],
    },
    "gan": {
        "mutate": ["src/genlab/models/gan.py"],
        # the step counting, the D freezing, the noise seeding, the EMA and the schedulers
        "functions": [
            "x_frozen",
            "xǁGANǁ_noise",
            "xǁGANǁ_step_uncounted",
            "xǁGANǁtraining_step",
            "xǁGANǁ_update_ema",
            "xǁGANǁ_step_schedulers",
            "xǁGANǁon_train_epoch_end",
            "xǁGANǁadopt_trainer_options",
        ],
        "tests": [
            "tests/test_gan.py::test_frozen_restores_flags_even_when_the_body_raises",
            "tests/test_gan.py::test_discriminator_is_frozen_and_untouched_in_the_generator_step",
            "tests/test_gan.py::test_max_steps_counts_gan_iterations",
            "tests/test_gan_steps.py",
            "tests/test_promises.py::test_label_smoothing_through_config",
        ],
    },
    "data": {
        "mutate": ["src/genlab/data/base.py"],
        # what exact resume rests on: the device-resident batches, the epoch shuffle, the
        # resumable DataLoader
        "functions": ["xǁTensorBatchesǁ", "xǁEpochShuffleǁ", "xǁResumableLoaderǁ"],
        "tests": [
            "tests/test_data.py::test_device_resident_batches_equal_the_dataloader_path",
            "tests/test_data.py::test_device_resident_shuffle_is_per_epoch_and_sharded",
            "tests/test_data.py::test_device_resident_dynamic_binarization_and_flips",
            "tests/test_resumable_data.py",
        ],
    },
}


def scratch_copy(group: str, spec: dict) -> Path:
    """A copy of src/, tests/ and pyproject.toml with mutmut's settings for `group`."""
    where = REPO / "build" / "mutate" / group
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "local")
    for name in ("src", "tests"):
        shutil.copytree(REPO / name, where / name, ignore=ignore)
    text = (REPO / "pyproject.toml").read_text()
    text = re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", text)
    lines = [
        "[tool.mutmut]",
        'source_paths = ["src"]',
        f"only_mutate = {json.dumps(spec['mutate'])}",
        f"pytest_add_cli_args_test_selection = {json.dumps(spec['tests'])}",
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]',
        "use_git_change_detection = false",
    ]
    (where / "pyproject.toml").write_text(text + "\n" + "\n".join(lines) + "\n")
    return where


def results(where: Path) -> dict[str, str]:
    """{mutant name: status} from `mutmut results --all true`."""
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=where,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            found[name] = status.strip()
    return found


def diff(where: Path, name: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "mutmut", "show", name],
        cwd=where,
        capture_output=True,
        text=True,
    ).stdout.strip()


def run_group(group: str, max_children: int) -> dict:
    spec = GROUPS[group]
    where = scratch_copy(group, spec)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    start = time.monotonic()
    names = []
    if spec.get("functions"):  # only the mutants of these functions are run
        module = spec["mutate"][0].removeprefix("src/").removesuffix(".py").replace("/", ".")
        names = [f"{module}.{prefix}*" for prefix in spec["functions"]]
    proc = subprocess.run(
        [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *names],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - start
    (where / "mutmut-run.log").write_text(proc.stdout[-20000:] + proc.stderr[-20000:])
    statuses = results(where)
    prefixes = spec.get("functions")
    if prefixes:
        statuses = {
            k: v
            for k, v in statuses.items()
            if any(k.split(".")[-1].startswith(p) for p in prefixes)
        }
    killed = sum(v in ("killed", "timeout", "segfault") for v in statuses.values())
    survivors = sorted(k for k, v in statuses.items() if v == "survived")
    other = sorted(k for k, v in statuses.items() if v not in ("killed", "survived", "timeout"))
    return {
        "group": group,
        "files": spec["mutate"],
        "functions": prefixes,
        "tests": spec["tests"],
        "mutants": len(statuses),
        "killed": killed,
        "survived": len(survivors),
        "other": {k: statuses[k] for k in other},
        "seconds": round(seconds, 1),
        "survivors": {k: diff(where, k) for k in survivors},
        "exit_code": proc.returncode,
    }


def write_report(runs: list[dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "mutation.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    groups = previous.get("groups", {})
    for r in runs:
        groups[r["group"]] = r
    import mutmut

    meta = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "tool": f"mutmut {mutmut.__version__}" if hasattr(mutmut, "__version__") else "mutmut",
    }
    path.write_text(json.dumps({**meta, "groups": groups}, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: {x: v[x] for x in ("mutants", "killed", "survived", "seconds")}
                for k, v in groups.items()
            },
            indent=2,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help=f"any of {', '.join(GROUPS)} (default: all)")
    parser.add_argument("--max-children", type=int, default=2)
    args = parser.parse_args()
    unknown = sorted(set(args.groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group(s) {unknown}: use {', '.join(GROUPS)}")
    runs = []
    for group in args.groups or list(GROUPS):
        print(f"mutating {group} ...", flush=True)
        runs.append(run_group(group, args.max_children))
        write_report(runs)


if __name__ == "__main__":
    main()
