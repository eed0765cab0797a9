"""``summary.csv``: one row per case; the first seven columns are the user's collector's."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from slogate.outcome import CaseResult
from slogate.report.files import write_text

#: Exactly the columns, in this order, of the collector script users already have.
USER_COLUMNS = (
    "concurrency",
    "mean TTFT(ms)",
    "input_throughput(tokens/s)",
    "output_throughput(tokens/s)",
    "mean TPOT(ms)",
    "mean_input_len",
    "mean_output_len",
)

MORE_COLUMNS = (
    "engine", "model", "input_len", "output_len", "request_rate", "num_prompts",
    "completed", "failed", "error_rate", "duration_s",
    "median_ttft_ms", "p90_ttft_ms", "p99_ttft_ms",
    "median_tpot_ms", "p90_tpot_ms", "p99_tpot_ms",
    "mean_itl_ms", "median_itl_ms", "p99_itl_ms",
    "mean_e2el_ms", "median_e2el_ms", "p99_e2el_ms",
    "total_token_throughput", "request_throughput", "request_goodput", "good_fraction",
    "verdict", "broken_slos", "time_scale",
)  # fmt: skip

COLUMNS = USER_COLUMNS + MORE_COLUMNS


def _r(value: Any, digits: int = 2) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    return "" if value is None else value


def row(result: CaseResult) -> dict[str, Any]:
    c, s = result.case, result.summary
    out = {
        "concurrency": c.concurrency if c.concurrency is not None else "",
        "mean TTFT(ms)": _r(s["mean_ttft_ms"]),
        "input_throughput(tokens/s)": _r(s["input_throughput"]),
        "output_throughput(tokens/s)": _r(s["output_throughput"]),
        "mean TPOT(ms)": _r(s["mean_tpot_ms"]),
        "mean_input_len": _r(s["mean_input_len"]),
        "mean_output_len": _r(s["mean_output_len"]),
        "engine": result.engine,
        "model": result.model,
        "input_len": c.input_len,
        "output_len": c.output_len,
        "request_rate": c.request_rate if c.request_rate is not None else "",
        "num_prompts": s["num_prompts"],
        "completed": s["completed"],
        "failed": s["failed"],
        "error_rate": _r(s["error_rate"], 4),
        "duration_s": _r(s["duration"], 3),
        "total_token_throughput": _r(s["total_token_throughput"]),
        "request_throughput": _r(s["request_throughput"], 3),
        "request_goodput": _r(s["request_goodput"], 3),
        "good_fraction": _r(s["good_fraction"], 4),
        "verdict": result.verdict,
        "broken_slos": ";".join(b.name for b in result.breaches),
        "time_scale": result.time_scale,
    }
    for key in MORE_COLUMNS:
        if key.endswith("_ms") and key not in out:
            out[key] = _r(s.get(key))
    return out


def render(results: Iterable[CaseResult]) -> str:
    ordered = sorted(
        results,
        key=lambda r: (
            r.case.input_len,
            r.case.output_len,
            r.case.concurrency or 0,
            r.case.request_rate or 0.0,
        ),
    )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in ordered:
        writer.writerow(row(result))
    return buf.getvalue()


def write_summary(path: Path, results: Iterable[CaseResult]) -> None:
    write_text(path, render(results))
