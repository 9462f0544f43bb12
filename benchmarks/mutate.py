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


def adversarial_loop() -> tuple[str, str]:
    """(file, mutmut's class prefix) of the GAN loop: models/gan.py's GAN, or, once the one
    adversarial loop moved there, models/adversarial.py's AdversarialModule."""
    moved = REPO / "src" / "genlab" / "models" / "adversarial.py"
    if moved.is_file() and "class AdversarialModule(" in moved.read_text():
        return "src/genlab/models/adversarial.py", "xǁAdversarialModuleǁ"
    return "src/genlab/models/gan.py", "xǁGANǁ"


LOOP, LOOP_CLASS = adversarial_loop()

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
        "mutate": [LOOP],
        # the step counting, the D freezing, the noise seeding, the EMA and the schedulers
        "functions": [
            "x_frozen",
            *(
                LOOP_CLASS + name
                for name in (
                    "_noise",
                    "_step_uncounted",
                    "training_step",
                    "_update_ema",
                    "_track_ema_statistics",
                    "_step_schedulers",
                    "on_train_epoch_end",
                    "adopt_trainer_options",
                )
            ),
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
        "mutate": ["src/genlab/data/datamodules.py"],
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
    "progressive": {
        "mutate": ["src/genlab/nets/progressive_nets.py"],
        # pixel norm, the equalized-lr gains, minibatch stddev, fade-ins, padding
        "tests": [
            "tests/test_progressive_closed_forms.py",
            "tests/test_pggan.py",
            "-k",
            "not sample_and_eval",
        ],
    },
    "paired": {
        "mutate": ["src/genlab/data/paired.py"],
        # pairs read from files: the resize and crop, the same jitter and flip on both images,
        # the split fallbacks, the pairing of two folders by name, the (target, source)
        # helpers (the file checks of issue 34, _files/_headers/_say_what_is_done, are another
        # engineer's and have their own tests)
        "functions": [
            "x_to_tensor",
            "xǁPairFilesǁ",
            "xǁPairedImagesǁ__init__",
            "xǁPairedImagesǁ_roots",
            "xǁPairedImagesǁ_groups",
            "xǁPairedImagesǁ_pairs_in",
            "xǁPairedImagesǁscan",
            "xǁPairedImagesǁ_too_narrow",
            "xǁPairedImagesǁ_dataset",
            "xǁPairedImagesǁload_splits",
            "x_translation_pairing",
            "x_source_shape",
            "xǁDerivedPairsǁ",
            "x_pair_dataset",
            "x_load_pairs",
        ],
        "tests": [
            "tests/test_paired_alignment.py",
            "tests/test_translation.py::test_aligned_ab_files_split_by_pixels_in_both_directions",
            "tests/test_translation.py::"
            "test_aligned_flat_folder_is_split_by_fractions_and_jitter_keeps_pairs_aligned",
            "tests/test_translation.py::test_two_folders_match_by_name_and_name_a_missing_partner",
            "tests/test_translation.py::test_unreadable_file_is_named_or_skipped_with_its_pair",
            "tests/test_translation.py::test_paired_data_refuses_a_pairing_and_a_missing_folder",
            "tests/test_translation.py::test_pix2pix_trains_on_file_pairs",
            # the untrusted-data checks that paired.py does (another engineer's file)
            "tests/test_untrusted_data.py::"
            "test_links_out_of_the_data_folder_are_refused_unless_followed",
            "tests/test_untrusted_data.py::test_a_decompression_bomb_is_refused_before_decoding",
            "tests/test_untrusted_data.py::test_paired_defaults_say_they_upscale_small_grey_pairs",
        ],
    },
    "health": {
        "mutate": [LOOP],
        # the collapse signs, their thresholds and warnings, and the gradient norms they read
        "functions": [
            LOOP_CLASS + name
            for name in (
                "_count_collapse_signs",
                "_report_collapse_signs",
                "health",
                "on_before_optimizer_step",
            )
        ],
        "tests": [
            "tests/test_health.py",
            "tests/test_trust.py::test_gan_collapse_signs_are_recorded_and_warned",
            "tests/test_gan_steps.py::test_one_iteration_equals_a_hand_written_step",
        ],
    },
    "resume": {
        "mutate": ["src/genlab/callbacks/last_checkpoint.py"],
        # last.ckpt at every point a run can stop, the random state, stops on signals
        "functions": [
            "xǁRunInterruptedǁ",
            "x_finite_weights",
            "xǁLastCheckpointǁ",
            "x_check_written",
            "xǁRandomStateǁ",
        ],
        "tests": [
            "tests/test_last_checkpoint.py",
            "tests/test_csv_logger.py::test_a_resumed_run_drops_rows_written_after_its_checkpoint",
            "tests/test_signals.py::test_sigterm_in_process",
            "tests/test_signals.py::test_one_ctrl_c_in_process_finishes_the_step",
            "tests/test_signals.py::test_a_second_ctrl_c_in_process_stops_at_once",
            "tests/test_signals.py::"
            "test_a_second_ctrl_c_in_process_stops_at_once_without_a_python_handler",
            "tests/test_trust.py::test_last_ckpt_holds_the_final_state",
            "tests/test_family_contracts.py::TestAutoEncoder::test_resume_is_exact_mid_epoch_and_starts_at_the_checkpoint",
            "tests/test_family_contracts.py::TestVAE::test_resume_is_exact_mid_epoch_and_starts_at_the_checkpoint",
            "tests/test_family_contracts.py::TestGAN::test_resume_is_exact_mid_epoch_and_starts_at_the_checkpoint",
            "tests/test_trust.py::test_resume_is_exact_across_epoch_boundaries_in_a_chain",
            "tests/test_trust.py::test_divergence_after_a_checkpoint_names_it_and_writes_no_bad_one",
            "tests/test_trust.py::test_a_checkpoint_that_cannot_be_written_fails_the_run",
            "tests/test_gan.py::test_resume_is_exact",
            "tests/test_fast_path.py::test_resume_with_k_steps_per_batch_is_exact",
            "tests/test_translation.py::test_resume_is_exact_in_the_middle_of_an_epoch",
            "tests/test_pggan.py::test_resume_inside_a_fade_in_is_exact",
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
        "date": dt.date.today().isoformat(),
        "machine": machine(),
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


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"


def write_report(runs: list[dict]) -> None:
    """Merge `runs` into mutation.json (each group keeps the date and machine it was run on;
    the top-level date and machine are those of the latest run)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "mutation.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    groups = previous.get("groups", {})
    for g in groups.values():  # groups run before dates were kept per group
        g.setdefault("date", previous.get("date"))
        g.setdefault("machine", previous.get("machine"))
    for r in runs:
        groups[r["group"]] = r
    import mutmut

    meta = {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
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
