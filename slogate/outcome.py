"""A finished case: its summary, its SLO verdict, and whether the measurement is valid.

Verdicts:
- ``pass``: every SLO held.
- ``fail``: at least one SLO broken (an assertion: Allure *failed*).
- ``invalid``: the numbers cannot be trusted, e.g. the client could not keep the target
  number of requests in flight or its event loop lagged (Allure *broken*).
- ``error``: the run itself broke, e.g. the engine died (Allure *broken*).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from slogate.errors import InfrastructureError, InvalidMeasurement
from slogate.loadgen.runner import ClientStats
from slogate.matrix import Case
from slogate.records import RequestRecord
from slogate.slo import Breach

#: The client's event loop may lag (p99 over 50 ms ticks) by this much, or by this
#: fraction of the median TTFT if that is more, before its timestamps stop being trusted:
#: a reply that arrives while the loop is busy is stamped late by up to the lag.
MAX_LOOP_LAG_MS = 10.0
MAX_LOOP_LAG_FRACTION_OF_TTFT = 0.10
#: Above this the client process was CPU-bound (100 = one core) and queued its own work.
MAX_CLIENT_CPU_PERCENT = 95.0
#: Open loop: requests may leave this much after their scheduled time (p99).
MAX_SCHEDULE_LAG_MS = 10.0
#: A percentile is asserted only when the sample can bound it: with n samples, the
#: largest lies below the true q-quantile with probability q**n; we want that under 5%.
PERCENTILE_CONFIDENCE = 0.95
_QUANTILES = {"median": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}


def samples_needed(stat: str) -> int:
    """Samples for the ``stat`` (median, p90 ...) to be bounded by the sample maximum.

    ``n >= ln(1 - confidence) / ln(q)``: 5 for the median, 29 for p90, 59 for p95 and
    299 for p99.  With fewer, a p99 "measured" from the data is just the maximum of too
    few requests and says little about the engine's real tail (MLPerf sizes its runs the
    same way, with a stricter margin).
    """
    q = _QUANTILES.get(stat)
    if q is None:
        return 1
    return math.ceil(math.log(1 - PERCENTILE_CONFIDENCE) / math.log(q))


@dataclass
class CaseResult:
    case: Case
    engine: str
    model: str
    summary: dict[str, Any]
    records: list[RequestRecord]
    client: ClientStats
    breaches: list[Breach] = field(default_factory=list)
    verdict: str = "pass"
    problems: list[str] = field(default_factory=list)  # why invalid / error
    started_at: float = field(default_factory=time.time)
    time_scale: float = 1.0
    server_metrics: list[dict[str, Any]] = field(default_factory=list)

    def check(self) -> None:
        """Turn the verdict into the test's outcome.

        A broken SLO is an ``AssertionError`` (Allure: failed); an invalid measurement or a
        broken run is another exception (Allure: broken), so the report keeps "the engine
        got slower" apart from "the run could not judge it".
        """
        if self.verdict == "fail":
            raise AssertionError(self.message)
        if self.verdict == "invalid":
            raise InvalidMeasurement(self.message)
        if self.verdict == "error":
            raise InfrastructureError(self.message)

    @property
    def message(self) -> str:
        if self.verdict == "fail":
            regressed = sum(1 for b in self.breaches if b.name.startswith("regression:"))
            parts = []
            if len(self.breaches) > regressed:
                parts.append(f"{len(self.breaches) - regressed} SLO(s) broken")
            if regressed:
                parts.append(f"{regressed} regression(s) against the baseline")
            lines = [f"{self.case.id}: {', '.join(parts)}"]
            lines += [f"  - {b}" for b in self.breaches]
            return "\n".join(lines)
        if self.verdict in ("invalid", "error"):
            return f"{self.case.id}: {self.verdict}: " + "; ".join(self.problems)
        return f"{self.case.id}: all {len(self.case.slo)} SLO(s) met"


def validity_problems(
    case: Case,
    summary: dict[str, Any],
    client: ClientStats,
    max_loop_lag_ms: float = MAX_LOOP_LAG_MS,
) -> list[str]:
    """Reasons the client, not the engine, may have shaped the numbers."""
    problems = []
    if case.concurrency is not None and client.peak_in_flight < client.target_in_flight:
        problems.append(
            f"invalid measurement: the client kept at most {client.peak_in_flight} of "
            f"{client.target_in_flight} requests in flight; raise the open-file limit "
            f"(ulimit -n) or lower concurrency"
        )
    median_ttft = summary.get("median_ttft_ms") or 0.0
    lag_limit = max(max_loop_lag_ms, MAX_LOOP_LAG_FRACTION_OF_TTFT * median_ttft)
    if client.loop_lag_p99_ms > lag_limit:
        problems.append(
            f"invalid measurement: the client's event loop lagged {client.loop_lag_p99_ms:.1f} "
            f"ms (p99; limit {lag_limit:.1f} ms), so replies were stamped late; run the client "
            f"where the engine does not compete for its CPU (or accept the error with "
            f"--max-client-lag-ms)"
        )
    if client.cpu_percent > MAX_CLIENT_CPU_PERCENT:
        problems.append(
            f"invalid measurement: the client used {client.cpu_percent:.0f}% of a core, so it "
            f"was the bottleneck; give it a core of its own or lower concurrency"
        )
    if client.schedule_lag_p99_ms is not None and client.schedule_lag_p99_ms > MAX_SCHEDULE_LAG_MS:
        problems.append(
            f"invalid measurement: requests left {client.schedule_lag_p99_ms:.1f} ms after their "
            f"scheduled time (p99; limit {MAX_SCHEDULE_LAG_MS:g} ms), so the arrival process "
            f"was not the one asked for; lower the request rate"
        )
    if summary["num_prompts"] == 0:
        problems.append("invalid measurement: no measured requests")
    for name in case.slo:
        stat, _, metric = name.partition("_")
        metric = metric.removesuffix("_ms")
        needed = samples_needed(stat)
        have = summary.get(f"count_{metric}")
        if needed > 1 and have is not None and have < needed:
            per_request = metric != "itl"
            what = "completed requests" if per_request else "token gaps"
            fix = (
                f"raise num_prompts to at least {needed}"
                if per_request
                else "ask for more output tokens or more prompts"
            )
            problems.append(
                f"invalid measurement: {name} needs at least {needed} samples to be bounded "
                f"with {PERCENTILE_CONFIDENCE:.0%} confidence, this case has {have} {what}; "
                f"{fix} (or judge a lower percentile)"
            )
    return problems
