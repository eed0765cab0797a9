"""A finished case: its summary, its SLO verdict, and whether the measurement is valid.

Verdicts:
- ``pass``: every SLO held.
- ``fail``: at least one SLO broken (an assertion: Allure *failed*).
- ``invalid``: the numbers cannot be trusted, e.g. the client could not keep the target
  number of requests in flight or its event loop lagged (Allure *broken*).
- ``error``: the run itself broke, e.g. the engine died (Allure *broken*).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from slogate.errors import InfrastructureError, InvalidMeasurement
from slogate.loadgen.runner import ClientStats
from slogate.matrix import Case
from slogate.records import RequestRecord
from slogate.slo import Breach

#: The client's event loop may lag this much (p99 of 50 ms ticks) before its timestamps
#: are no longer trusted to the millisecond.
MAX_LOOP_LAG_P99_MS = 25.0


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
            lines = [f"{self.case.id}: {len(self.breaches)} SLO(s) broken"]
            lines += [f"  - {b}" for b in self.breaches]
            return "\n".join(lines)
        if self.verdict in ("invalid", "error"):
            return f"{self.case.id}: {self.verdict}: " + "; ".join(self.problems)
        return f"{self.case.id}: all {len(self.case.slo)} SLO(s) met"


def validity_problems(case: Case, summary: dict[str, Any], client: ClientStats) -> list[str]:
    """Reasons the client, not the engine, may have shaped the numbers."""
    problems = []
    if case.concurrency is not None and client.peak_in_flight < client.target_in_flight:
        problems.append(
            f"the client kept at most {client.peak_in_flight} of {client.target_in_flight} "
            f"requests in flight; raise the open-file limit (ulimit -n) or lower concurrency"
        )
    if client.loop_lag_p99_ms > MAX_LOOP_LAG_P99_MS:
        problems.append(
            f"the client's event loop lagged {client.loop_lag_p99_ms:.1f} ms (p99, limit "
            f"{MAX_LOOP_LAG_P99_MS:g} ms), so its timestamps are late; run the client on a "
            f"less loaded machine or lower concurrency"
        )
    if summary["num_prompts"] == 0:
        problems.append("no measured requests")
    return problems
