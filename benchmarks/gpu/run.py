"""The one-shot GPU check: tests marked `gpu`, then every benchmark of issue 24 in one process.

Run through benchmarks/gpu/run.sh (which installs the carried wheels first):

    bash benchmarks/gpu/run.sh OUT_DIR                          # on the GPU machine
    bash benchmarks/gpu/run.sh OUT_DIR --device cpu --quick     # the same, here, in minutes

Two processes (each pays the imports: 12-25 s on the GPU machines seen so far), each with
its own time limit (7.2 minutes together at most, plus the wheel install):
  tests  pytest -m gpu tests/test_gpu.py
  bench  benchmarks/throughput.py --in-process --probe: the machine, `genlab-train --help`
         and import times (cold); Lightning's fixed cost per step; plain loop vs genlab vs
         genlab+DataLoader for DCGAN-64 (also 4 GAN iterations per Lightning batch), the MLP
         VAE (also 8 steps per batch), the conv AE and a CIFAR-size conv AE; the DCGAN-64
         recipe without its epoch-end work ("steady", no checkpoint at all); the recipe as a
         user runs it over a CelebA-length epoch of synthetic images (steps and the epoch's
         end timed apart); and the peer, pytorch/examples' dcgan/main.py unchanged, when a
         local copy is there (benchmarks/gpu/peer/examples/dcgan/main.py, or --peer-dcgan).
OUT_DIR receives results.json (everything, rewritten after each phase, so a run cut short
still reports the phases it finished), results.md (tables, and each target met or not),
run.log (every phase's output) and bench-<device>.{json,md} (written after every case).
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
PEER = ROOT / "benchmarks" / "gpu" / "peer" / "examples" / "dcgan" / "main.py"
# seconds per phase: 100 + 330 = 430 s, plus the wheel install (~5 s): under 8 minutes
LIMITS = {"tests": 100, "bench": 330}
CASES = "dcgan,dcgan_k4,vae,vae_k8,conv_ae,cifar_conv,dcgan_recipe_steady,dcgan_celeba"
# the targets of issue 24 (device-resident data, bf16, everything a user has on)
RATIO_TARGET = 0.95
PEER_TARGET = 2.0
# issue 18's, still reported
RESIDENT_TARGET = 2.0
RESIDENT_CASES = {"vae": "MNIST size", "conv_ae": "MNIST size", "cifar_conv": "CIFAR size"}


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


def targets(bench: dict | None) -> list[dict]:
    """Issue 24's targets (and issue 18's resident one), met or not, from the benchmark."""
    out = []
    rows = (bench or {}).get("rows", [])
    for row in rows:
        if "error" in row:
            out.append(failed(row))
            continue
        ratio = row["ratio"]
        out.append(
            target(f"genlab / plain, {row['case']}", ratio, f">= {RATIO_TARGET}",
                   ratio >= RATIO_TARGET)
        )  # fmt: skip
        if "epoch_ratio" in row:
            out.append(
                target(f"genlab / plain over the whole epoch (its end included), {row['case']}",
                       row["epoch_ratio"], f">= {RATIO_TARGET}",
                       row["epoch_ratio"] >= RATIO_TARGET)
            )  # fmt: skip
        resident = row.get("resident_vs_dataloader")
        if row.get("key") in RESIDENT_CASES and resident:
            what = f"device-resident / DataLoader ({RESIDENT_CASES[row['key']]}), {row['case']}"
            out.append(
                target(what, resident, f">= {RESIDENT_TARGET}", resident >= RESIDENT_TARGET)
            )
    peer = ((bench or {}).get("meta") or {}).get("peer") or {}
    celeba = next((r for r in rows if r.get("key") == "dcgan_celeba" and "ratio" in r), None)
    if "images_per_s" in peer and celeba:
        value = celeba["genlab_img_s"] / peer["images_per_s"]
        out.append(
            target("genlab's CelebA-length recipe (steps) / pytorch/examples dcgan img/s",
                   value, f">= {PEER_TARGET} (with capture, not built yet)",
                   value >= PEER_TARGET)
        )  # fmt: skip
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
    if results.get("bench_md"):
        lines += ["", "## Benchmarks", "", results["bench_md"]]
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
    p.add_argument("--cases", default=CASES, help="benchmark cases")
    p.add_argument("--repeats", type=int, default=1, help="benchmark runs per case and impl")
    p.add_argument(
        "--peer-dcgan",
        default=str(PEER),
        help="pytorch/examples' dcgan/main.py (default: the carried copy, when there)",
    )
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
    timing = ["--warmup", "50", "--windows", "5"] if args.device == "cuda" else []
    if args.quick:  # every case, a few steps each: checks the harness, measures nothing
        timing = ["--steps", "2", "--warmup", "1", "--windows", "1", "--floor-steps", "20"]
        timing += ["--epoch-steps", "4", "--peer-iterations", "2"]
    # the CPU here is shared and slow: the same phases, more time each
    scale = 1.0 if args.device == "cuda" else 3.0

    def save() -> None:
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
        (out / "results.md").write_text(markdown(results))

    with open(out / "run.log", "a") as log:
        for phase in args.phases.split(","):
            if phase == "tests":
                xml = Path(tempfile.mkdtemp()) / "junit.xml"
                cmd = [py, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py"]
                cmd += ["-p", "no:cacheprovider", f"--junitxml={xml}"]
            elif phase == "bench":
                cmd = [py, str(BENCH), "--device", args.device, "--cases", args.cases]
                cmd += ["--in-process", "--probe", "--repeats", str(args.repeats)]
                cmd += ["--out", str(out), "--name", f"bench-{args.device}", *timing]
                cmd += ["--peer-dcgan", args.peer_dcgan]
            else:
                p.error(f"unknown phase {phase!r}")
            result = run_phase(phase, cmd, LIMITS[phase] * scale, log, env)
            output = result.pop("output")
            results["phases"][phase] = result
            if phase == "tests":
                results["tests"] = junit(xml)
                xml.unlink(missing_ok=True)
            else:
                name = f"bench-{args.device}"
                found = [ln for ln in output if ln.startswith("PROBE ")]
                results["probe"] = json.loads(found[0][6:]) if found else None
                if (out / f"{name}.json").is_file():
                    results["bench"] = json.loads((out / f"{name}.json").read_text())
                    results["bench_md"] = (out / f"{name}.md").read_text()
            results["targets"] = targets(results.get("bench"))
            save()
    print(markdown(results))
    failed = [n for n, r in results["phases"].items() if r["status"] != "ok"]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
