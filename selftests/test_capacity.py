"""Capacity search: the algorithm on synthetic engines, and a real session on the sim."""

from __future__ import annotations

import csv
import json

import pytest

from slogate.capacity import search


def engine(threshold: float, flaky: set[float] | None = None):
    """Passes below ``threshold``; a ``flaky`` load passes its first time only."""
    seen: dict[float, int] = {}
    calls: list[float] = []

    def measure(load: float) -> tuple[str, dict]:
        calls.append(load)
        seen[load] = seen.get(load, 0) + 1
        ok = load <= threshold or (flaky is not None and load in flaky and seen[load] == 1)
        return ("pass" if ok else "fail"), {"request_goodput": load / 10}

    return measure, calls


@pytest.mark.parametrize("threshold", [1, 2, 37, 100, 1000])
def test_integer_search_finds_the_exact_boundary(threshold: int) -> None:
    measure, calls = engine(threshold)
    result = search(measure, 1, 1024, integer=True)
    assert result.capacity == threshold and not result.at_max
    assert len(calls) <= 2 * 11 + 2  # doubling + bisection + one re-test: logarithmic
    assert result.history[-1].retest and result.history[-1].load == threshold
    assert result.goodput == threshold / 10


def test_flaky_boundary_is_caught_by_the_retest() -> None:
    # 40 passes once by luck; its re-test fails and the search settles below it
    measure, _ = engine(37, flaky={40.0})
    result = search(measure, 1, 64, integer=True)
    assert result.capacity == 37
    assert any(p.load == 40 and p.retest and p.verdict == "fail" for p in result.history)


def test_edges() -> None:
    measure, _ = engine(0.5)
    assert search(measure, 1, 64, integer=True).capacity is None
    measure, _ = engine(10_000)
    result = search(measure, 1, 64, integer=True)
    assert result.capacity == 64 and result.at_max


def test_rate_search_bisects_within_the_resolution() -> None:
    measure, _ = engine(7.3)
    result = search(measure, 0.5, 64, integer=False, resolution=0.05)
    assert result.capacity is not None and 7.3 / 1.05 <= result.capacity <= 7.3


def test_invalid_points_do_not_count_as_capacity() -> None:
    def measure(load: float) -> tuple[str, dict]:
        return ("pass" if load <= 4 else "invalid"), {}

    assert search(measure, 1, 64, integer=True).capacity == 4


def test_capacity_session_on_the_simulator(project: pytest.Pytester) -> None:
    (project.path / "matrices" / "cap.yaml").write_text(
        "defaults: {min_prompts: 8, slo: {median_tpot_ms: 5.0, error_rate: 0}}\n"
        "capacity:\n  lengths: [32x16]\n  concurrency: {min: 1, max: 512}\n"
    )
    res = project.runpytest_subprocess(
        "-m", "capacity", "--matrix", "matrices/cap.yaml", "-p", "no:cacheprovider"
    )
    res.assert_outcomes(passed=1)
    with (project.path / "reports" / "capacity.csv").open() as fh:
        (row,) = list(csv.DictReader(fh))
    data = json.loads(
        (project.path / "reports" / "capacity" / "concurrency-in32-out16.json").read_text()
    )
    cap = data["capacity"]
    assert cap is not None and float(row["capacity"]) == cap
    # consistent with its own history: everything up to the capacity that was tried passed
    # at least once, and the load just above it failed
    verdicts = {p["load"]: p["verdict"] for p in data["history"] if not p["retest"]}
    assert all(v == "pass" for load, v in verdicts.items() if load <= cap)
    assert (
        data["at_search_max"]
        or verdicts.get(cap + 1) == "fail"
        or any(load > cap and v == "fail" for load, v in verdicts.items())
    )
    results_json = list((project.path / "reports" / "results").glob("*.json"))
    assert results_json == []  # search points are not sweep cases: the collector never sees them
