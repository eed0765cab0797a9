"""Per-request records -> summary statistics, with one definition per metric.

Definitions (times from ``perf_counter_ns`` at byte arrival, before parsing):

- TTFT: first chunk carrying generated text (content or reasoning) - request sent.
- E2E latency (e2el): last chunk carrying text - request sent.
- TPOT per request: (E2E - TTFT) / (output_tokens - 1); none below 2 output tokens.
- ITL: gaps between successive text-bearing chunks (``tokens_per_chunk`` says when a chunk
  carried several tokens, which makes ITL differ from TPOT).
- output tokens: ``usage.completion_tokens`` from the server, else a re-count of the text
  with the tokenizer, never the requested length.
- throughput: tokens (or requests) / measured window, the window running from the first
  send to the last completion of the measured (non-warm-up) requests.
- goodput: requests that met every per-request SLO / window; failed requests are not good,
  and ``good_fraction`` is over all issued requests.

Latency distributions are over successful requests; failed ones are counted by class and
judged by the ``error_rate`` SLO, never dropped silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from slogate.records import ERROR_CLASSES, RequestRecord

PERCENTILES = (50, 90, 95, 99)


def distribution(name: str, values_ms: Sequence[float]) -> dict[str, float | int | None]:
    """count, mean, median, p90, p95, p99, min, max, std of ``values_ms`` as ``{stat}_{name}_ms``.

    Percentiles use linear interpolation (numpy's default), as vLLM's benchmark does.
    """
    out: dict[str, float | int | None] = {f"count_{name}": len(values_ms)}
    keys = ("mean", "median", "p90", "p95", "p99", "min", "max", "std")
    if not values_ms:
        out.update({f"{k}_{name}_ms": None for k in keys})
        return out
    arr = np.asarray(values_ms, dtype=np.float64)
    p50, p90, p95, p99 = np.percentile(arr, PERCENTILES)
    stats = (arr.mean(), p50, p90, p95, p99, arr.min(), arr.max(), arr.std())
    out.update({f"{k}_{name}_ms": float(v) for k, v in zip(keys, stats, strict=True)})
    return out


def is_good(record: RequestRecord, limits: Mapping[str, float]) -> bool:
    """A successful request whose TTFT, TPOT and E2E latency are within ``limits`` (ms)."""
    if not record.ok:
        return False
    values = {"ttft": record.ttft_ns, "tpot": record.tpot_ns, "e2el": record.e2el_ns}
    for metric, limit in limits.items():
        value = values[metric]
        # Like vLLM: a request with fewer than 2 tokens has no TPOT and is not held to it.
        if value is None:
            if metric == "tpot":
                continue
            return False
        if value / 1e6 > limit:
            return False
    return True


def summarize(
    records: Iterable[RequestRecord], good_limits: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """The case summary: counts, throughput, goodput and every latency distribution."""
    measured = [r for r in records if not r.warmup]
    ok = [r for r in measured if r.ok]
    failed = [r for r in measured if not r.ok]
    issued = len(measured)

    if measured:
        start = min(r.sent_ns for r in measured)
        end = max(r.done_ns for r in measured)
        duration = max((end - start) / 1e9, 1e-9)
    else:
        duration = 0.0

    # Like vLLM's result JSON: lengths of every measured request (0 output for failed ones),
    # token totals over the successful ones.
    input_lens = [r.input_len for r in measured]
    output_lens = [(r.output_tokens or 0) if r.ok else 0 for r in measured]
    total_in = sum(r.input_len for r in ok)
    total_out = sum(r.output_tokens or 0 for r in ok)

    def rate(x: float) -> float:
        return x / duration if duration else 0.0

    ttfts = [r.ttft_ns / 1e6 for r in ok if r.ttft_ns is not None]
    tpots = [t / 1e6 for r in ok if (t := r.tpot_ns) is not None]
    e2els = [r.e2el_ns / 1e6 for r in ok if r.e2el_ns is not None]
    itls = [gap / 1e6 for r in ok for gap in r.itl_ns]
    tpc = [t for r in ok if (t := r.tokens_per_chunk) is not None]

    limits = good_limits or {}
    good = sum(1 for r in measured if is_good(r, limits))
    errors = Counter(r.status for r in failed)

    summary: dict[str, Any] = {
        "num_prompts": issued,
        "completed": len(ok),
        "failed": len(failed),
        "error_rate": len(failed) / issued if issued else 0.0,
        "errors_by_class": {cls: errors.get(cls, 0) for cls in ERROR_CLASSES},
        "duration": duration,
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": rate(len(ok)),
        "input_throughput": rate(total_in),
        "output_throughput": rate(total_out),
        "total_token_throughput": rate(total_in + total_out),
        "request_goodput": rate(good),
        "good_requests": good,
        "good_fraction": good / issued if issued else 0.0,
        "goodput_limits_ms": dict(limits),
        "mean_input_len": float(np.mean(input_lens)) if input_lens else 0.0,
        "mean_output_len": float(np.mean(output_lens)) if output_lens else 0.0,
        "mean_tokens_per_chunk": float(np.mean(tpc)) if tpc else None,
        "output_tokens_from_usage": sum(1 for r in ok if r.output_tokens_source == "usage"),
        "input_lens": input_lens,
        "output_lens": output_lens,
        "ttfts": [t / 1e3 for t in ttfts],  # seconds, as vLLM writes them
    }
    for name, values in (("ttft", ttfts), ("tpot", tpots), ("itl", itls), ("e2el", e2els)):
        summary.update(distribution(name, values))
    # Open loop: latency counted from when the schedule wanted the request sent, so a
    # client that sends late cannot hide the delay (MLPerf's rule).
    scheduled = [r for r in ok if r.scheduled_ns is not None]
    if scheduled:
        sched_ttft = [
            (r.first_token_ns - r.scheduled_ns) / 1e6
            for r in scheduled
            if r.first_token_ns is not None and r.scheduled_ns is not None
        ]
        sched_e2el = [
            (r.last_token_ns - r.scheduled_ns) / 1e6
            for r in scheduled
            if r.last_token_ns is not None and r.scheduled_ns is not None
        ]
        summary.update(distribution("sched_ttft", sched_ttft))
        summary.update(distribution("sched_e2el", sched_e2el))
    return summary


#: Window-based rates: with repeats, averaged over the repeats' own windows.
RATE_KEYS = (
    "request_throughput", "input_throughput", "output_throughput",
    "total_token_throughput", "request_goodput",
)  # fmt: skip
SPREAD_KEYS = RATE_KEYS[:3] + ("mean_ttft_ms", "median_ttft_ms", "mean_tpot_ms", "mean_itl_ms")


def summarize_repeats(
    runs: Sequence[Sequence[RequestRecord]], good_limits: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """One summary over several runs of the same case (``--repeat N``).

    Latency distributions pool every request of every run (more samples, so tighter
    percentiles); rates are the mean of each run's own rate (the idle time between runs
    is no part of any window); ``repeats`` keeps each run's headline numbers and
    ``spread`` their min, max and coefficient of variation, so noise is visible.
    """
    if len(runs) == 1:
        return summarize(runs[0], good_limits)
    pooled = summarize([r for run in runs for r in run], good_limits)
    each = [summarize(run, good_limits) for run in runs]
    for key in RATE_KEYS:
        pooled[key] = float(np.mean([e[key] for e in each]))
    pooled["duration"] = float(sum(e["duration"] for e in each))
    pooled["repeats"] = [{k: e[k] for k in ("completed", "failed", *SPREAD_KEYS)} for e in each]
    spread = {}
    for key in SPREAD_KEYS:
        values = [e[key] for e in each if e[key] is not None]
        if values:
            mean = float(np.mean(values))
            spread[key] = {
                "min": float(min(values)),
                "max": float(max(values)),
                "cv": float(np.std(values) / mean) if mean else 0.0,
            }
    pooled["spread"] = spread
    return pooled
