"""Capacity search results: ``capacity.csv`` (one row per search) and ``capacity/*.json``.

They live outside ``results/`` so that collectors walking that directory for
``serving_benchmark_*.json`` never see them.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from slogate.capacity import CapacityResult
from slogate.matrix import CapacityTarget
from slogate.report.files import write_json, write_text

COLUMNS = (
    "input_len", "output_len", "kind", "capacity", "at_search_max", "request_goodput",
    "output_throughput", "points", "history", "engine", "model", "verdict",
)  # fmt: skip


def capacity_json(
    target: CapacityTarget, result: CapacityResult, engine: str, model: str, verdict: str
) -> dict[str, Any]:
    boundary = result.boundary
    return {
        "id": target.id,
        "engine": engine,
        "model": model,
        "input_len": target.input_len,
        "output_len": target.output_len,
        "kind": result.kind,
        "range": [target.low, target.high],
        "require": target.require,
        "slo": dict(target.settings.get("slo", {})),
        "capacity": result.capacity,
        "at_search_max": result.at_max,
        "request_goodput": result.goodput,
        "output_throughput": boundary.summary.get("output_throughput") if boundary else None,
        "verdict": verdict,
        "description": result.describe(),
        "history": [p.to_json() for p in result.history],
    }


def render_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: (r["input_len"], r["output_len"], r["kind"])):
        flat = dict(row)
        flat["points"] = len(row["history"])
        flat["history"] = " ".join(
            f"{p['load']:g}:{p['verdict']}{'(retest)' if p['retest'] else ''}"
            for p in row["history"]
        )
        writer.writerow(flat)
    return buf.getvalue()


def write_capacity(reports_dir: Path, data: dict[str, Any]) -> None:
    write_json(reports_dir / "capacity" / f"{data['id']}.json", data)
    rows = []
    for path in sorted((reports_dir / "capacity").glob("*.json")):
        try:
            rows.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    write_text(reports_dir / "capacity.csv", render_csv(rows))


def history_table(data: dict[str, Any]) -> str:
    lines = [
        f"**{data['description']}**",
        "",
        "| load | verdict | output tok/s | goodput req/s | p90 TTFT ms | p90 TPOT ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in data["history"]:
        retest = " (re-test)" if p["retest"] else ""
        lines.append(
            f"| {p['load']:g} | {p['verdict']}{retest} | {_num(p, 'output_throughput')} | "
            f"{_num(p, 'request_goodput', 3)} | {_num(p, 'p90_ttft_ms')} | "
            f"{_num(p, 'p90_tpot_ms', 2)} |"
        )
    return "\n".join(lines)


def _num(point: dict[str, Any], key: str, digits: int = 1) -> str:
    value = point.get(key)
    return "" if value is None else f"{value:.{digits}f}"
