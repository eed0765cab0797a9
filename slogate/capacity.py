"""Capacity under SLO: the highest load at which every SLO still holds.

The search brackets, then bisects, then re-tests the boundary:

1. bracket: try ``min``, then double the load until a point fails (or ``max`` passes);
2. bisect between the highest pass and the lowest failure until they are closer than
   the resolution (1 for concurrency, else ``resolution`` x the passing load);
3. re-test the highest pass: a boundary that passed once by luck fails its re-test, and
   the search continues below it.

A point whose measurement is ``invalid`` or ``error`` counts as not passing: capacity is
only claimed where it was measured to hold.  Every point tried is kept in the history.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: A measurement: load -> (verdict, summary of the point)
Measure = Callable[[float], tuple[str, dict[str, Any]]]


@dataclass
class Point:
    load: float
    verdict: str
    summary: dict[str, Any]
    retest: bool = False

    def to_json(self) -> dict[str, Any]:
        keys = (
            "completed", "failed", "output_throughput", "request_goodput", "good_fraction",
            "mean_ttft_ms", "p90_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "p90_tpot_ms",
        )  # fmt: skip
        return {
            "load": self.load,
            "verdict": self.verdict,
            "retest": self.retest,
            **{k: self.summary.get(k) for k in keys},
        }


@dataclass
class CapacityResult:
    kind: str  # "concurrency" or "request_rate"
    capacity: float | None  # None: not even the minimum passed
    at_max: bool  # the maximum passed: capacity is at least this
    history: list[Point] = field(default_factory=list)

    @property
    def boundary(self) -> Point | None:
        passing = [p for p in self.history if p.load == self.capacity and p.verdict == "pass"]
        return passing[-1] if passing else None

    @property
    def goodput(self) -> float | None:
        b = self.boundary
        return None if b is None else b.summary.get("request_goodput")

    def describe(self) -> str:
        unit = "concurrent requests" if self.kind == "concurrency" else "req/s"
        if self.capacity is None:
            low = self.history[0].load if self.history else "?"
            return f"no capacity: the SLOs fail already at {_fmt(low)} {unit}"
        more = " (the search's maximum; it may hold higher)" if self.at_max else ""
        good = f", goodput {self.goodput:.3g} req/s" if self.goodput is not None else ""
        return f"capacity {_fmt(self.capacity)} {unit}{more}{good}"


def _fmt(x: float | str) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def search(
    measure: Measure,
    low: float,
    high: float,
    integer: bool,
    resolution: float = 0.1,
    retests: int = 2,
) -> CapacityResult:
    """Find the highest load in [low, high] that passes (see the module docstring)."""
    kind = "concurrency" if integer else "request_rate"
    history: list[Point] = []

    def run(load: float, retest: bool = False) -> bool:
        verdict, summary = measure(load)
        history.append(Point(load, verdict, summary, retest))
        return verdict == "pass"

    def close_enough(passing: float, failing: float) -> bool:
        if integer:
            return failing - passing <= 1
        return failing - passing <= resolution * passing

    def middle(passing: float, failing: float) -> float:
        if integer:
            return float((int(passing) + int(failing)) // 2)
        return math.sqrt(passing * failing)  # rates span decades: bisect in log space

    # 1. bracket
    best: float | None = None
    worst: float | None = None
    load = low
    while True:
        if run(load):
            best = load
            if load >= high:
                break
            load = min(high, load * 2)
        else:
            worst = load
            break
    if best is None:
        return CapacityResult(kind, None, False, history)

    for _ in range(retests + 1):
        # 2. bisect
        while worst is not None and not close_enough(best, worst):
            mid = middle(best, worst)
            if mid in (best, worst):
                break
            if run(mid):
                best = mid
            else:
                worst = mid
        # 3. re-test the boundary
        if run(best, retest=True):
            break
        worst = best
        below = [p.load for p in history if p.verdict == "pass" and p.load < best]
        retested_fail = {p.load for p in history if p.retest and p.verdict != "pass"}
        candidates = [x for x in below if x not in retested_fail]
        if not candidates:
            return CapacityResult(kind, None, False, history)
        best = max(candidates)
    else:
        return CapacityResult(kind, None, False, history)
    return CapacityResult(kind, best, worst is None and best >= high, history)


@dataclass
class CapacityOutcome:
    """What a capacity test asserts on."""

    target: Any
    result: CapacityResult
    data: dict[str, Any]

    def check(self) -> None:
        """Fails when not even the lowest load met the SLOs, or below ``require``."""
        if self.data["verdict"] != "pass":
            need = self.target.require
            extra = f"; required at least {need:g}" if need is not None else ""
            raise AssertionError(f"{self.target.id}: {self.result.describe()}{extra}")
