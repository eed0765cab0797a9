"""``summary.csv``: one row per case; the first seven columns are the user's collector's."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from slogate.records import ERROR_CLASSES
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
    "completed", "failed", "error_rate", *ERROR_CLASSES, "duration_s",
    "median_ttft_ms", "p90_ttft_ms", "p99_ttft_ms",
    "median_tpot_ms", "p90_tpot_ms", "p99_tpot_ms",
    "mean_itl_ms", "median_itl_ms", "p99_itl_ms",
    "mean_e2el_ms", "median_e2el_ms", "p99_e2el_ms",
    "total_token_throughput", "request_throughput", "request_goodput", "good_fraction",
    "verdict", "broken_slos", "regressions", "time_scale",
)  # fmt: skip

COLUMNS = USER_COLUMNS + MORE_COLUMNS


def _r(value: Any, digits: int = 2) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    return "" if value is None else value


def row(result: dict[str, Any]) -> dict[str, Any]:
    """One summary row from a case's result JSON (``serving_benchmark_*.json``)."""
    sg = result.get("slogate", {})
    lens_in, lens_out = result.get("input_lens") or [], result.get("output_lens") or []
    out = {
        "concurrency": result.get("max_concurrency") if result.get("max_concurrency") else "",
        "mean TTFT(ms)": _r(result.get("mean_ttft_ms")),
        "input_throughput(tokens/s)": _r(result.get("input_throughput")),
        "output_throughput(tokens/s)": _r(result.get("output_throughput")),
        "mean TPOT(ms)": _r(result.get("mean_tpot_ms")),
        # as the collector computes them: over every measured request
        "mean_input_len": _r(sum(lens_in) / len(lens_in)) if lens_in else "",
        "mean_output_len": _r(sum(lens_out) / len(lens_out)) if lens_out else "",
        "engine": result.get("backend", ""),
        "model": result.get("model_id", ""),
        "input_len": result.get("random_input_len", ""),
        "output_len": result.get("random_output_len", ""),
        "request_rate": result["request_rate"] if result.get("request_rate") != "inf" else "",
        "num_prompts": result.get("num_prompts", ""),
        "completed": result.get("completed", ""),
        "failed": result.get("failed", ""),
        "error_rate": _r(sg.get("error_rate"), 4),
        # failed requests by class (http_error, timeout ...), as the case JSON counts them
        **{cls: (sg.get("errors_by_class") or {}).get(cls, "") for cls in ERROR_CLASSES},
        "duration_s": _r(result.get("duration"), 3),
        "total_token_throughput": _r(result.get("total_token_throughput")),
        "request_throughput": _r(result.get("request_throughput"), 3),
        "request_goodput": _r(result.get("request_goodput"), 3),
        "good_fraction": _r(sg.get("good_fraction"), 4),
        "verdict": sg.get("verdict", ""),
        "broken_slos": ";".join(
            b["name"] for b in sg.get("breaches", []) if not b["name"].startswith("regression:")
        ),
        "regressions": ";".join(r["metric"] for r in sg.get("regressions", [])),
        "time_scale": sg.get("time_scale", ""),
    }
    for key in MORE_COLUMNS:
        if key.endswith("_ms") and key not in out:
            out[key] = _r(result.get(key))
    return out


def _sort_key(result: dict[str, Any]) -> tuple[Any, ...]:
    rate = result.get("request_rate")
    return (
        result.get("random_input_len") or 0,
        result.get("random_output_len") or 0,
        result.get("max_concurrency") or 0,
        rate if isinstance(rate, (int, float)) else 0.0,
    )


def load_results(results_dir: Path) -> list[dict[str, Any]]:
    """Every case JSON in ``results_dir`` (unreadable or half-written files are skipped)."""
    out = []
    for path in sorted(results_dir.glob("serving_benchmark_*.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return out


def render(results: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in sorted(results, key=_sort_key):
        writer.writerow(row(result))
    return buf.getvalue()


def write_summary(path: Path, results_dir: Path) -> None:
    """Rebuild ``summary.csv`` from the case files on disk.

    Deriving it from the files (not from memory) keeps it complete when cases are
    written by several processes (pytest-xdist) or by an earlier, interrupted session.
    """
    write_text(path, render(load_results(results_dir)))
