"""Per-case files: ``serving_benchmark_{c}_{in}_{out}.json`` and its requests JSONL.

The JSON carries the keys vLLM's ``benchmark_serving.py --save-result`` writes (and the
ones SGLang's ``bench_serving`` adds, such as ``input_throughput`` and
``random_input_len``), so collector scripts written for either run unchanged on it.
Only those JSON files live in ``results/``: collectors walk the directory and open every
``.json`` they find.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slogate import __version__
from slogate.outcome import CaseResult
from slogate.report.files import write_json, write_text

VLLM_METRICS = ("ttft", "tpot", "itl", "e2el")


def result_json(result: CaseResult, run_info: dict[str, Any]) -> dict[str, Any]:
    case, s = result.case, result.summary
    out: dict[str, Any] = {
        "date": datetime.fromtimestamp(result.started_at, timezone.utc).strftime("%Y%m%d-%H%M%S"),
        "backend": result.engine,
        "model_id": result.model,
        "tokenizer_id": run_info.get("tokenizer"),
        "num_prompts": case.num_prompts,
        "request_rate": case.request_rate if case.request_rate is not None else "inf",
        "burstiness": case.burstiness,
        "max_concurrency": case.concurrency,
        "duration": s["duration"],
        "completed": s["completed"],
        "failed": s["failed"],
        "total_input_tokens": s["total_input_tokens"],
        "total_output_tokens": s["total_output_tokens"],
        "request_throughput": s["request_throughput"],
        "request_goodput": s["request_goodput"],
        "input_throughput": s["input_throughput"],
        "output_throughput": s["output_throughput"],
        "total_token_throughput": s["total_token_throughput"],
        "input_lens": s["input_lens"],
        "output_lens": s["output_lens"],
        "ttfts": s["ttfts"],
        "errors": [r.error for r in result.records if not r.warmup and not r.ok],
    }
    for metric in VLLM_METRICS:
        for stat in ("mean", "median", "std", "p90", "p95", "p99", "min", "max"):
            key = f"{stat}_{metric}_ms"
            out[key] = s.get(key)
    # SGLang's bench_serving names for the same things.
    out.update(
        {
            "random_input_len": case.input_len,
            "random_output_len": case.output_len,
            "random_range_ratio": case.range_ratio,
            "mean_e2e_latency_ms": s.get("mean_e2el_ms"),
            "median_e2e_latency_ms": s.get("median_e2el_ms"),
        }
    )
    out["slogate"] = {
        "version": __version__,
        "case": case.id,
        "verdict": result.verdict,
        "slo": dict(case.slo),
        "breaches": [
            {"name": b.name, "measured": b.measured, "limit": b.limit} for b in result.breaches
        ],
        # regressions against --baseline, with their intervals (also listed as breaches)
        "regressions": [b.to_json() for b in result.breaches if hasattr(b, "to_json")],
        "problems": result.problems,
        "error_rate": s["error_rate"],
        "errors_by_class": s["errors_by_class"],
        "good_fraction": s["good_fraction"],
        "goodput_limits_ms": s["goodput_limits_ms"],
        "mean_tokens_per_chunk": s["mean_tokens_per_chunk"],
        "endpoint": case.endpoint,
        "ignore_eos": case.ignore_eos,
        "warmup_requests": case.warmup_requests,
        "time_scale": result.time_scale,
        "client": result.client.to_json(),
        "server_metrics": result.server_metrics,
        "run": run_info,
    }
    return out


def requests_jsonl(result: CaseResult) -> str:
    origin = min((r.sent_ns for r in result.records), default=0)
    return "".join(json.dumps(r.to_json(origin)) + "\n" for r in result.records)


def write_case(results_dir: Path, result: CaseResult, run_info: dict[str, Any]) -> Path:
    """Write the case's JSON and requests log; returns the JSON's path."""
    stem = result.case.file_stem
    write_text(results_dir / "requests" / f"{stem}.requests.jsonl", requests_jsonl(result))
    path = results_dir / f"{stem}.json"
    write_json(path, result_json(result, run_info))
    return path
