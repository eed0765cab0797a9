"""Gate quality: does the gate stay green when nothing changed, and go red on a slowdown?

On the simulator: one baseline sweep, then N sweeps of the unchanged configuration
against it (every failing run is a false failure) and N sweeps with decode slowed by
``--slowdown`` (every failing run is a detection).  Each sweep is a real pytest session
of the suite (``pytest -m sweep --baseline DIR``), so the gate measured is the one CI runs.

    python bench/gate_quality.py                     # 20 + 20 runs, decode 10% slower
    python bench/gate_quality.py --runs 5 --slowdown 1.2
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A short sweep: enough requests per case for the noise estimate, a few seconds per run,
# on the SGLang-calibrated profile run 4x faster than real time (TTFT ~50 ms, TPOT ~10-20
# ms: latencies of a real engine's order, so a millisecond of machine jitter is not 5%).
MATRIX = """\
name: gate
description: short sweep for the gate-quality benchmark
defaults:
  ignore_eos: true
  num_prompts: 48
  warmup_requests: 2
  slo: {p90_ttft_ms: 2000, p90_tpot_ms: 80, error_rate: 0}
sweep:
  - lengths: [128x32]
    concurrency: [8, 32]
"""
SIM = ["--sim-profile", "h20-deepseek-r1-sglang", "--sim-time-scale", "4"]


def sweep(reports: Path, matrix: Path, extra: list[str]) -> tuple[int, float, list[str]]:
    """Run one sweep; returns pytest's exit code, its wall time and the failing cases."""
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "sweep", "-q", "-p", "no:cacheprovider",
         f"--matrix={matrix}", f"--reports-dir={reports}", *SIM, *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    wall = time.monotonic() - t0
    failing = [
        line.split(" - ")[0] for line in done.stdout.splitlines() if line.startswith("FAILED")
    ]
    if done.returncode not in (0, 1):
        raise SystemExit(f"the sweep broke (exit {done.returncode}):\n{done.stdout[-3000:]}")
    return done.returncode, wall, failing


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--slowdown", type=float, default=1.10, help="decode time factor")
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="slogate-gate-"))
    matrix = work / "gate.yaml"
    matrix.write_text(MATRIX)
    baseline = work / "baseline"
    code, wall, failing = sweep(baseline, matrix, [])
    if code != 0:
        raise SystemExit(f"the baseline sweep itself failed: {failing}")
    print(f"baseline sweep: {wall:.1f} s", flush=True)

    walls: list[float] = []
    false_failures, detections = [], []
    for kind, extra, bucket in (
        ("unchanged", [], false_failures),
        (f"decode x{args.slowdown:g}", [f"--engine-args=--decode-slowdown {args.slowdown}"],
         detections),
    ):  # fmt: skip
        for i in range(args.runs):
            reports = work / f"run-{kind.split()[0]}-{i}"
            code, wall, failing = sweep(reports, matrix, [f"--baseline={baseline}", *extra])
            walls.append(wall)
            if code == 1:
                bucket.append(failing)
            print(
                f"  {kind:<14} run {i + 1:2}/{args.runs}: "
                f"{'FAIL ' + ', '.join(failing) if code else 'pass'}  ({wall:.1f} s)",
                flush=True,
            )
            shutil.rmtree(reports, ignore_errors=True)

    result = {
        "runs": args.runs,
        "slowdown": args.slowdown,
        "false_failures": len(false_failures),
        "detections": len(detections),
        "sweep_wall_s_mean": sum(walls) / len(walls),
        "sweep_wall_s_max": max(walls),
    }
    print()
    print(f"false failures: {len(false_failures)}/{args.runs} unchanged runs")
    print(f"detections:     {len(detections)}/{args.runs} runs with decode x{args.slowdown:g}")
    print(
        f"sweep wall time: mean {result['sweep_wall_s_mean']:.1f} s, "
        f"max {result['sweep_wall_s_max']:.1f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
