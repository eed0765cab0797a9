"""The calibrated simulator profiles against the measured H20 tables they model.

Runs the suite itself (``pytest -m sweep --matrix=matrices/seed-method.yaml``: one wave
per case, EOS not ignored, as the tables were measured) on each calibrated profile at
concurrency 1, 64 and 256, and prints mean TPOT and output throughput next to the
measured rows.  Time-scaled runs are converted back to real time.

    python bench/sim_vs_seed.py [--time-scale 10]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (concurrency, input=output length) -> (mean TPOT ms, output throughput tok/s), as measured
SEED = {
    "h20-deepseek-r1-vllm": {
        (1, 128): (110.35, 9.04), (1, 256): (110.40, 8.97),
        (64, 128): (116.10, 505.68), (64, 256): (120.80, 441.89),
        (256, 128): (124.53, 675.69), (256, 256): (137.75, 464.55),
    },
    "h20-deepseek-r1-sglang": {
        (1, 128): (42.00, 23.02), (1, 256): (42.24, 23.23),
        (64, 128): (104.64, 525.62), (64, 256): (107.27, 554.94),
        (256, 128): (182.61, 1126.60), (256, 256): (139.63, 726.58),
    },
}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--time-scale", type=float, default=10.0)
    args = p.parse_args()
    rows = []
    for profile, seed in SEED.items():
        reports = Path(tempfile.mkdtemp(prefix="slogate-seed-"))
        subprocess.run(
            [sys.executable, "-m", "pytest", "-m", "sweep", "-q", "-p", "no:cacheprovider",
             "--matrix=matrices/seed-method.yaml", "--concurrency", "1,64,256",
             "--sim-profile", profile, "--sim-time-scale", str(args.time_scale),
             f"--reports-dir={reports}"],
            cwd=ROOT, capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
        with (reports / "summary.csv").open() as fh:
            for row in csv.DictReader(fh):
                key = (int(row["concurrency"]), int(row["input_len"]))
                tpot = float(row["mean TPOT(ms)"]) * args.time_scale
                tput = float(row["output_throughput(tokens/s)"]) / args.time_scale
                s_tpot, s_tput = seed[key]
                rows.append((profile, key, tpot, s_tpot, tput, s_tput))
    print(
        "| profile | c | in/out | TPOT sim / measured (ms) | err | "
        "out tok/s sim / measured | err |"
    )
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for profile, (c, n), tpot, s_tpot, tput, s_tput in rows:
        e1, e2 = tpot / s_tpot - 1, tput / s_tput - 1
        worst = max(worst, abs(e1), abs(e2))
        print(
            f"| {profile} | {c} | {n}/{n} | {tpot:.1f} / {s_tpot:.1f} | {e1:+.1%} | "
            f"{tput:.1f} / {s_tput:.1f} | {e2:+.1%} |"
        )
    print(f"\nlargest error: {worst:.1%} (time scale {args.time_scale:g})")


if __name__ == "__main__":
    main()
