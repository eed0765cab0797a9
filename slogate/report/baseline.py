"""Regressions against a baseline run: is this case worse than the same case last time?

``--baseline DIR`` names an earlier reports directory.  Each case is compared with the
case of the same load and lengths there (``results/<stem>.json`` and its per-request
samples in ``results/requests/<stem>.requests.jsonl``).  For each statistic (mean TTFT,
p99 TTFT, mean TPOT) the relative change from baseline to now gets a 95% bootstrap
interval (2000 resamples of each run's requests, seeded, so a verdict is reproducible).
The metric has regressed when that whole interval lies above ``MIN_EFFECT`` (+5%): it
is worse by at least 5% with 95% confidence.  So a statistically clear 0.5% change does
not fail a gate (too small), and neither does a +8% whose interval reaches down to +0.3%
(not clear enough).  A p99 is judged only with at least 299 requests on each side, as
an SLO on it is.

Requests of one run share batches and queueing, so the interval measures sampling noise
within a run, not the drift between runs; asking the whole interval to clear the minimum
effect, rather than just zero, is what keeps a re-run of the same engine from failing.
A change must also exceed what the client's own timing could explain: the event loop's
lag (p99, at least 1 ms) of either run for TTFT, that lag spread over the output tokens
for TPOT.
Everything here is plain functions on plain numbers, apart from ``regressions`` which
reads the baseline files for one case.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slogate.errors import ConfigError
from slogate.outcome import CaseResult, samples_needed
from slogate.report.sweep import results_dir_of
from slogate.slo import Breach

#: Statistics checked, each lower-is-better: name -> (per-request sample, statistic).
METRICS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "mean_ttft_ms": ("ttft_ms", lambda a: a.mean(axis=-1)),
    "p99_ttft_ms": ("ttft_ms", lambda a: np.percentile(a, 99, axis=-1)),
    "mean_tpot_ms": ("tpot_ms", lambda a: a.mean(axis=-1)),
}
RESAMPLES = 2000
CONFIDENCE = 0.95
MIN_EFFECT = 0.05  # relative: the interval must lie above +5%
SEED = 20240611
#: The client cannot time anything finer than this, whatever its loop lag says (ms).
TIMING_RESOLUTION_MS = 1.0
#: Fewer samples than this on either side and no interval is meaningful: not judged.
#: (Percentiles need more: ``outcome.samples_needed``.)
MIN_SAMPLES = 3


@dataclass(frozen=True)
class Change:
    """A statistic in the baseline and now, with the bootstrap interval of the change."""

    metric: str
    baseline: float
    current: float
    change: float  # relative: current / baseline - 1
    ci_low: float
    ci_high: float
    regressed: bool


@dataclass(frozen=True)
class Regression(Breach):
    """A metric worse than in the baseline beyond noise; fails the case like a broken SLO.

    As a ``Breach`` it is listed where breaches are (the failure message, the JSON's
    ``breaches``, ``summary.csv``'s ``broken_slos``) under the name ``regression:<metric>``,
    with ``measured`` the value now and ``limit`` the baseline's.
    """

    metric: str = ""
    change: float = 0.0
    ci_low: float = 0.0
    ci_high: float = 0.0
    baseline_label: str = ""

    def __str__(self) -> str:
        return (
            f"{self.metric} regressed: {_ms(self.limit)} ms -> {_ms(self.measured)} ms "
            f"({self.change:+.1%}, {CONFIDENCE:.0%} CI {self.ci_low:+.1%} .. {self.ci_high:+.1%}) "
            f"against baseline {self.baseline_label}"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "baseline": self.limit,
            "current": self.measured,
            "change": self.change,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "baseline_dir": self.baseline_label,
            "message": str(self),
        }


def _ms(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def compare_samples(
    metric: str,
    baseline: Sequence[float],
    current: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    min_effect: float = MIN_EFFECT,
    seed: int = SEED,
) -> Change | None:
    """Bootstrap the relative change of ``metric``'s statistic from baseline to current.

    Each resample draws both runs' requests with replacement and takes the statistic's
    ratio; the interval is the central ``confidence`` share of those ratios.  None when
    either side has too few samples or a zero baseline (no ratio).
    """
    stat = METRICS[metric][1]
    a = np.asarray([v for v in baseline if v is not None and math.isfinite(v)], dtype=float)
    b = np.asarray([v for v in current if v is not None and math.isfinite(v)], dtype=float)
    # A percentile is judged only with the samples that bound it (299 for a p99, as for
    # SLOs): below that it is about the sample maximum, and a bootstrap of a maximum gives
    # an interval far narrower than the run-to-run spread.
    needed = max(MIN_SAMPLES, samples_needed(metric.split("_")[0]))
    if a.size < needed or b.size < needed:
        return None
    base, cur = float(stat(a)), float(stat(b))
    if base <= 0:
        return None
    rng = np.random.default_rng(seed)
    ratios = []
    # In chunks: a 2000 x n index matrix per side stays small even for large cases.
    chunk = max(1, min(resamples, 2_000_000 // max(a.size, b.size)))
    done = 0
    while done < resamples:
        k = min(chunk, resamples - done)
        sa = stat(a[rng.integers(0, a.size, size=(k, a.size))])
        sb = stat(b[rng.integers(0, b.size, size=(k, b.size))])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios.append(sb / sa - 1.0)
        done += k
    rel = np.concatenate(ratios)
    rel = rel[np.isfinite(rel)]
    tail = (1.0 - confidence) / 2 * 100
    low, high = (float(x) for x in np.percentile(rel, [tail, 100 - tail]))
    change = cur / base - 1.0
    return Change(metric, base, cur, change, low, high, low >= min_effect)


def find_regressions(
    baseline: Mapping[str, Sequence[float]],
    current: Mapping[str, Sequence[float]],
    baseline_label: str,
    min_effect: float = MIN_EFFECT,
    floors_ms: Mapping[str, float] | None = None,
) -> list[Regression]:
    """Regressions between two runs' per-request samples (``{"ttft_ms": [...], ...}``).

    ``floors_ms``: per metric, the smallest absolute change (ms) that is not within the
    client's own timing uncertainty; a smaller change is never called a regression.
    """
    out = []
    floors = floors_ms or {}
    for metric, (sample, _) in METRICS.items():
        c = compare_samples(
            metric, baseline.get(sample, ()), current.get(sample, ()), min_effect=min_effect
        )
        if c is not None and c.regressed and c.current - c.baseline > floors.get(metric, 0.0):
            out.append(
                Regression(
                    name=f"regression:{metric}",
                    measured=c.current,
                    limit=c.baseline,
                    metric=metric,
                    change=c.change,
                    ci_low=c.ci_low,
                    ci_high=c.ci_high,
                    baseline_label=baseline_label,
                )
            )
    return out


def current_samples(result: CaseResult) -> dict[str, list[float]]:
    """Per-request TTFT and TPOT (ms) of the measured, successful requests of a case."""
    ok = [r for r in result.records if r.ok and not r.warmup]
    return {
        "ttft_ms": [r.ttft_ns / 1e6 for r in ok if r.ttft_ns is not None],
        "tpot_ms": [t / 1e6 for r in ok if (t := r.tpot_ns) is not None],
    }


def baseline_samples(results_dir: Path, stem: str) -> dict[str, list[float]] | None:
    """The same samples from an earlier run's files; None when it lacks a judged case."""
    case_json = results_dir / f"{stem}.json"
    lines = results_dir / "requests" / f"{stem}.requests.jsonl"
    try:
        verdict = json.loads(case_json.read_text(encoding="utf-8")).get("slogate", {})
        text = lines.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    # An invalid or broken baseline case measured nothing trustworthy to compare with.
    if verdict.get("verdict") in ("invalid", "error"):
        return None
    out: dict[str, list[float]] = {"ttft_ms": [], "tpot_ms": []}
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("warmup") or row.get("status") != "ok":
            continue
        for key, values in out.items():
            if isinstance(row.get(key), (int, float)):
                values.append(float(row[key]))
    return out


def label(baseline_dir: Path) -> str:
    """How the baseline is named in messages: its directory (the reports dir, not results/)."""
    path = baseline_dir.parent if baseline_dir.name == "results" else baseline_dir
    return path.name or str(path)


def regressions(case_result: CaseResult, baseline_dir: Path) -> list[Regression]:
    """The case's regressions against the same case (load and lengths) in ``baseline_dir``.

    A case the baseline does not have, or had as invalid/error, is not judged.
    """
    results = results_dir_of(baseline_dir)
    base = baseline_samples(results, case_result.case.file_stem)
    if base is None:
        return []
    floors = timing_floors(case_result, _baseline_lag(results, case_result.case.file_stem))
    return find_regressions(
        base, current_samples(case_result), label(baseline_dir), floors_ms=floors
    )


def timing_floors(case_result: CaseResult, baseline_lag_ms: float) -> dict[str, float]:
    """How much of a change the client's own timing could explain, per metric (ms).

    A reply is stamped late by up to the event loop's lag; between two runs on a machine
    whose load changed, a TTFT can move by that much with the engine unchanged.  TPOT
    spreads the same error over the request's output tokens.
    """
    lag = max(TIMING_RESOLUTION_MS, baseline_lag_ms, case_result.client.loop_lag_p99_ms)
    tokens = max(1, case_result.case.output_len - 1)
    return {"mean_ttft_ms": lag, "p99_ttft_ms": lag, "mean_tpot_ms": lag / tokens}


def _baseline_lag(results_dir: Path, stem: str) -> float:
    try:
        data = json.loads((results_dir / f"{stem}.json").read_text(encoding="utf-8"))
        return float(data["slogate"]["client"]["loop_lag_p99_ms"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def validate_baseline_dir(baseline_dir: Path, reports_dir: Path) -> None:
    """Fail early, naming the fix, when ``--baseline`` cannot serve as one."""
    if not baseline_dir.is_dir():
        raise ConfigError(
            f"--baseline {baseline_dir}: no such directory; give the reports directory of an "
            f"earlier run (keep one with: cp -r reports reports-baseline)"
        )
    results = results_dir_of(baseline_dir)
    if not any(results.glob("serving_benchmark_*.json")):
        raise ConfigError(
            f"--baseline {baseline_dir}: no serving_benchmark_*.json in it or in its results/; "
            f"give the reports directory of an earlier slogate run"
        )
    if results.resolve() == (reports_dir / "results").resolve():
        raise ConfigError(
            f"--baseline {baseline_dir}: this is where the run writes (--reports-dir "
            f"{reports_dir}), and its results are replaced as the run starts; copy it first "
            f"(cp -r {reports_dir} {reports_dir}-baseline) and give the copy"
        )
