"""SLO thresholds: their names, how they are parsed, and how a case's summary is checked.

An SLO name is a key of the case summary (the same keys as vLLM's result JSON), so
``p99_ttft_ms=2000`` reads "the case's p99 TTFT must be at most 2000 ms".  Latencies and the
error rate are upper bounds; throughputs and goodput are lower bounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slogate.errors import ConfigError

LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el", "sched_ttft", "sched_e2el")
STATISTICS = ("mean", "median", "p90", "p95", "p99", "min", "max", "std")

#: name -> (direction, unit). "max" means the measured value must be <= the limit.
SLO_NAMES: dict[str, tuple[str, str]] = {
    f"{stat}_{metric}_ms": ("max", "ms") for stat in STATISTICS for metric in LATENCY_METRICS
}
SLO_NAMES.update(
    {
        "error_rate": ("max", ""),
        "output_throughput": ("min", "tok/s"),
        "input_throughput": ("min", "tok/s"),
        "total_token_throughput": ("min", "tok/s"),
        "request_throughput": ("min", "req/s"),
        "request_goodput": ("min", "req/s"),
        "good_fraction": ("min", ""),
    }
)


@dataclass(frozen=True)
class Breach:
    """One broken threshold, with what was measured."""

    name: str
    measured: float | None
    limit: float

    def __str__(self) -> str:
        direction, unit = SLO_NAMES[self.name]
        op = "<=" if direction == "max" else ">="
        suffix = f" {unit}" if unit else ""
        if self.measured is None:
            return f"{self.name}: no value was measured (limit {op} {_fmt(self.limit)}{suffix})"
        return f"{self.name} = {_fmt(self.measured)}{suffix}, limit {op} {_fmt(self.limit)}{suffix}"


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1 else f"{value:,.2f}"


def validate_slo(name: str, value: Any, where: str) -> float:
    """Check one threshold; ``where`` names the file/option for the error message."""
    if name not in SLO_NAMES:
        raise ConfigError(
            f"{where}: unknown SLO {name!r}; use a summary key such as p99_ttft_ms, "
            f"mean_tpot_ms, error_rate or output_throughput "
            f"(all: {', '.join(sorted(SLO_NAMES))})"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: SLO {name} must be a number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int with hundreds of digits
        value = math.inf
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: SLO {name} must be a finite number >= 0, got {value}")
    if name in ("error_rate", "good_fraction") and value > 1:
        raise ConfigError(f"{where}: SLO {name} is a fraction between 0 and 1, got {value}")
    return value


def parse_slo_option(text: str) -> tuple[str, float]:
    """Parse one ``--slo NAME=VALUE``."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name or not raw.strip():
        raise ConfigError(f"--slo {text!r}: expected NAME=VALUE, e.g. --slo p99_ttft_ms=2000")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"--slo {text!r}: {raw.strip()!r} is not a number; expected NAME=VALUE, "
            f"e.g. --slo p99_ttft_ms=2000"
        ) from None
    return name, validate_slo(name, value, "--slo")


def check(summary: Mapping[str, Any], slos: Mapping[str, float]) -> list[Breach]:
    """Every threshold the summary breaks, in the order the SLOs were given."""
    breaches = []
    for name, limit in slos.items():
        direction, _ = SLO_NAMES[name]
        measured = summary.get(name)
        if measured is None or (isinstance(measured, float) and math.isnan(measured)):
            breaches.append(Breach(name, None, limit))
        elif (direction == "max" and measured > limit) or (direction == "min" and measured < limit):
            breaches.append(Breach(name, float(measured), limit))
    return breaches


def per_request_limits(slos: Mapping[str, float]) -> dict[str, float]:
    """The per-request limits that decide whether a request is *good* (for goodput).

    A request is good when its own TTFT, TPOT and E2E latency are each within the loosest
    percentile threshold given for that metric: a request slower than the case's p99 limit
    is one the SLO tolerates only as an exception, so it does not count as good.
    """
    limits: dict[str, float] = {}
    for metric in ("ttft", "tpot", "e2el"):
        values = [
            limit
            for stat in ("p90", "p95", "p99", "max", "median", "mean")
            if (limit := slos.get(f"{stat}_{metric}_ms")) is not None
        ]
        if values:
            limits[metric] = max(values)
    return limits
