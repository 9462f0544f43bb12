"""What the benchmark scripts share: run a genlab command (`python -m genlab.train ...`) as a
subprocess with its wall and CPU time, and name the machine a measurement was made on.

Imported by the scripts beside it (`python benchmarks/<script>.py` puts this folder on the path).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run_timed(
    cmd: list[str],
    log_file: Path,
    threads: int,
    *,
    cwd: Path | None = None,
    wandb_mode: str = "offline",
    shown: str | None = None,
    tail: int = 0,
) -> dict[str, float]:
    """Run `cmd` with OMP_NUM_THREADS=threads, its output in log_file; its wall and CPU
    seconds (`wall_s`, `cpu_s`: the child's own rusage, so parallel jobs do not count each
    other). A failure ends the script (SystemExit) naming the command (`shown`, or `cmd`
    joined) and the log, with the log's last `tail` characters when tail > 0."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_MODE": wandb_mode}
    log_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log_file, "w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code:
        message = f"{shown or ' '.join(cmd)} failed (exit {code}); see {log_file}"
        if tail > 0:
            message += f":\n{log_file.read_text()[-tail:]}"
        raise SystemExit(message)
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime}


def run_cli(module: str, args: list[str], log_file: Path, threads: int) -> dict[str, float]:
    """`python -m module args` with its output in log_file (run_timed); its wall and CPU
    seconds to 0.1 s."""
    times = run_timed([sys.executable, "-m", module, *args], log_file, threads)
    return {key: round(seconds, 1) for key, seconds in times.items()}


def train_once(label: str, overrides: list[str], run_dir: Path, threads: int) -> dict[str, float]:
    """One `python -m genlab.train overrides hydra.run.dir=run_dir` (run_cli, its log beside
    run_dir); its times, kept in run_dir/time.json, which marks the run as finished: a
    finished run is read back, an unfinished one (of an earlier invocation) started again."""
    done = run_dir / "time.json"
    if done.exists():
        return json.loads(done.read_text())
    if run_dir.exists():
        shutil.rmtree(run_dir)
    args = [*overrides, f"hydra.run.dir={run_dir}"]
    times = run_cli("genlab.train", args, run_dir.parent / f"{run_dir.name}.log", threads)
    done.write_text(json.dumps(times))
    print(f"  trained {label}: {times['wall_s']:.0f} s, {times['cpu_s']:.0f} CPU-s", flush=True)
    return times


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo) or, elsewhere, its architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """The CPU's model name and its core count, as the results files record them."""
    return f"{cpu_model()}, {os.cpu_count()} CPUs"
