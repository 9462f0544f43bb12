"""The one-shot GPU check: tests marked `gpu`, the throughput benchmark, the DCGAN recipe.

Run through benchmarks/gpu/run.sh (which installs the carried wheels first):

    bash benchmarks/gpu/run.sh OUT_DIR                          # on the GPU machine
    bash benchmarks/gpu/run.sh OUT_DIR --device cpu --quick     # the same, here, in minutes

Phases, each in its own process with its own time limit (8.3 minutes together at most; on
an H100 on 2026-11-26 the first version took 5.4):
  probe       the machine, the GPU, package versions; `import genlab.train` works
  tests       pytest -m gpu tests/test_gpu.py
  throughput  benchmarks/throughput.py: plain loop vs genlab vs genlab+DataLoader for
              DCGAN-64, the MLP VAE (also with perf.steps_per_batch=8), the conv AE and a
              CIFAR-size conv AE
  recipe      benchmarks/throughput.py --cases dcgan_recipe,dcgan_recipe_steady: the DCGAN-64
              paper recipe as a user runs it (EMA, validation, sample grids, checkpoints) and
              the same without its epoch-end work, each against a plain loop
OUT_DIR receives results.json (everything, rewritten after each phase, so a run cut short
still reports the phases it finished), results.md (tables, and each target met or not),
run.log (every phase's output), throughput-<device>.{json,md} and recipe-<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "throughput.py"
# seconds per phase: 40 + 150 + 190 + 75 = 455 s, plus the wheel install (~10 s): under 8 min
LIMITS = {"probe": 40, "tests": 100, "throughput": 250, "recipe": 110}
CASES = "dcgan,vae,vae_k8,conv_ae,cifar_conv"
# the targets of issue 18 (all with device-resident data and bf16)
RATIO_TARGET = 0.90
RESIDENT_TARGET = 2.0
RESIDENT_CASES = {"vae": "MNIST size", "conv_ae": "MNIST size", "cifar_conv": "CIFAR size"}

PROBE = r"""
import importlib.metadata as md, json, os, platform, subprocess, sys, time
import torch
out = {"python": sys.version.split()[0], "platform": platform.platform(),
       "cpus": os.cpu_count(), "torch": torch.__version__,
       "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    out.update(gpu=p.name, capability=f"{p.major}.{p.minor}", gpu_memory_gb=p.total_memory / 1e9,
               multiprocessors=p.multi_processor_count, bf16=torch.cuda.is_bf16_supported())
    try:
        out["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception as exc:
        out["nvidia_smi"] = repr(exc)
names = ["lightning", "torchmetrics", "torchvision", "numpy", "pillow", "hydra-core",
         "omegaconf", "wandb", "optuna", "mlxtend", "hydra-submitit-launcher", "pytest"]
versions = {}
for n in names:
    try:
        versions[n] = md.version(n)
    except md.PackageNotFoundError:
        versions[n] = None
out["versions"] = versions
t = time.perf_counter()
import genlab.train  # noqa: F401  (every import genlab needs is there)
out["import_genlab_train_s"] = time.perf_counter() - t
print("PROBE " + json.dumps(out))
"""


def run_phase(name: str, cmd: list[str], limit: float, log, env: dict[str, str]) -> dict:
    """Run `cmd` in its own process group; stream its output to the log and to stdout; kill
    the whole group at the time limit."""
    header = f"\n===== {name}: {' '.join(cmd)} (limit {limit:.0f} s)\n"
    log.write(header)
    print(header, end="", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            log.write(line)
            print(line, end="", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=limit)
        status = "ok" if rc == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        rc = proc.wait()
        status = "timeout"
    reader.join(timeout=5)
    seconds = time.perf_counter() - start
    log.write(f"===== {name}: {status} (exit {rc}) after {seconds:.1f} s\n")
    log.flush()
    return {"status": status, "exit": rc, "seconds": round(seconds, 1), "output": lines}


def junit(path: Path) -> list[dict]:
    """Each test case of a JUnit XML report: name, outcome, seconds, message."""
    if not path.is_file():
        return []
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (node.get("message") or "") + "\n" + (node.text or "")
                break
        cases.append(
            {
                "name": case.get("name"),
                "outcome": outcome,
                "seconds": float(case.get("time") or 0),
                "message": message.strip()[-3000:],
            }
        )
    return cases


def target(what: str, value: float | None, wanted: str, met: bool | None) -> dict:
    """One row of the targets table."""
    return {"what": what, "value": value, "target": wanted, "met": met}


def failed(row: dict) -> dict:
    """The targets row of a benchmark case whose run failed."""
    return target(f"{row['case']}: the run failed", None, "runs", False)


def targets(throughput: dict | None, recipe: dict | None) -> list[dict]:
    """Issue 18's targets, met or not, from the benchmark rows."""
    out = []
    for row in (throughput or {}).get("rows", []):
        if "error" in row:
            out.append(failed(row))
            continue
        ratio = row["ratio"]
        out.append(
            target(f"genlab / plain, {row['case']}", ratio, f">= {RATIO_TARGET}",
                   ratio >= RATIO_TARGET)
        )  # fmt: skip
        resident = row.get("resident_vs_dataloader")
        if row.get("key") in RESIDENT_CASES and resident:
            what = f"device-resident / DataLoader ({RESIDENT_CASES[row['key']]}), {row['case']}"
            out.append(
                target(what, resident, f">= {RESIDENT_TARGET}", resident >= RESIDENT_TARGET)
            )
    for row in (recipe or {}).get("rows", []):
        if "error" in row:
            out.append(failed(row))
            continue
        what = (
            f"{row['case']}: genlab {row['genlab_img_s']:.0f} img/s vs plain "
            f"loop {row['plain_img_s']:.0f}"
        )
        out.append(target(what, row["ratio"], "reported (no fixed target)", None))
    return out


def markdown(results: dict) -> str:
    probe = results.get("probe") or {}
    lines = [
        "# genlab GPU check",
        "",
        f"{results['date']} on {probe.get('gpu') or probe.get('platform', '?')} "
        f"({probe.get('nvidia_smi', 'no nvidia-smi')}); Python {probe.get('python')}, torch "
        f"{probe.get('torch')}, CUDA {probe.get('cuda')}; device {results['device']}"
        f"{' (quick)' if results['quick'] else ''}.",
        "",
        "| phase | status | seconds |",
        "|---|---|---|",
        f"| install wheels | ok | {results['install_seconds']} |",
    ]
    lines += [
        f"| {name} | {p['status']} | {p['seconds']} |" for name, p in results["phases"].items()
    ]
    if results.get("tests"):
        lines += ["", "## Tests (marker gpu)", "", "| test | outcome | seconds |", "|---|---|---|"]
        lines += [
            f"| {t['name']} | {t['outcome']} | {t['seconds']:.1f} |" for t in results["tests"]
        ]
        for t in results["tests"]:
            if t["outcome"] in ("failed", "error"):
                lines += ["", f"### {t['name']}", "", "```", t["message"][-1500:], "```"]
    for key, title in (("throughput_md", "Throughput"), ("recipe_md", "DCGAN-64 recipe")):
        if results.get(key):
            lines += ["", f"## {title}", "", results[key]]
    if results.get("targets"):
        lines += ["", "## Targets", "", "| what | value | target | met |", "|---|---|---|---|"]
        for t in results["targets"]:
            met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
            value = "–" if t["value"] is None else f"{t['value']:.2f}"
            lines.append(f"| {t['what']} | {value} | {t['target']} | {met} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--quick", action="store_true", help="a few steps each: checks the harness")
    p.add_argument("--phases", default=",".join(LIMITS), help=f"of {','.join(LIMITS)}")
    p.add_argument("--cases", default=CASES, help="throughput cases")
    p.add_argument("--repeats", type=int, default=1, help="throughput runs per case and impl")
    p.add_argument("--install-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GENLAB_TEST_DEVICE": args.device}
    if args.device == "cpu":
        env.setdefault("OMP_NUM_THREADS", "1")
    py = sys.executable
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "device": args.device,
        "quick": args.quick,
        "install_seconds": args.install_seconds,
        "phases": {},
    }
    # --quick: a few steps and the two cheapest cases; the other cases were checked by hand
    timing = ["--warmup", "50", "--windows", "5"] if args.device == "cuda" else []
    if args.quick:
        timing = ["--steps", "3", "--warmup", "2", "--windows", "1", "--floor-steps", "20"]
    cases = "vae,cifar_conv" if args.quick else args.cases
    # the CPU here is shared and slow: the same phases, more time each
    scale = 1.0 if args.device == "cuda" else 5.0

    def save() -> None:
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
        (out / "results.md").write_text(markdown(results))

    with open(out / "run.log", "a") as log:
        for phase in args.phases.split(","):
            if phase == "probe":
                cmd = [py, "-c", PROBE]
            elif phase == "tests":
                xml = Path(tempfile.mkdtemp()) / "junit.xml"
                cmd = [py, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py"]
                cmd += ["-p", "no:cacheprovider", f"--junitxml={xml}"]
            elif phase == "throughput":
                cmd = [py, str(BENCH), "--device", args.device, "--cases", cases]
                cmd += ["--repeats", str(args.repeats), "--out", str(out), *timing]
            elif phase == "recipe":
                recipes = "dcgan_recipe" if args.quick else "dcgan_recipe,dcgan_recipe_steady"
                cmd = [py, str(BENCH), "--device", args.device, "--cases", recipes]
                cmd += ["--no-floor", "--repeats", "1", "--out", str(out)]
                cmd += ["--name", f"recipe-{args.device}", *timing]
            else:
                p.error(f"unknown phase {phase!r}")
            result = run_phase(phase, cmd, LIMITS[phase] * scale, log, env)
            output = result.pop("output")
            results["phases"][phase] = result
            if phase == "probe":
                found = [ln for ln in output if ln.startswith("PROBE ")]
                results["probe"] = json.loads(found[0][6:]) if found else None
            elif phase == "tests":
                results["tests"] = junit(xml)
                xml.unlink(missing_ok=True)
            else:
                name = f"{phase}-{args.device}"
                if (out / f"{name}.json").is_file():
                    results[phase] = json.loads((out / f"{name}.json").read_text())
                    results[f"{phase}_md"] = (out / f"{name}.md").read_text()
            results["targets"] = targets(results.get("throughput"), results.get("recipe"))
            save()
    print(markdown(results))
    failed = [n for n, r in results["phases"].items() if r["status"] != "ok"]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
