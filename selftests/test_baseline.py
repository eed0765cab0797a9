"""--baseline: regressions beyond run-to-run noise fail the case, with a sentence that says why."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from slogate.errors import ConfigError
from slogate.report.baseline import (
    Regression,
    baseline_samples,
    compare_samples,
    find_regressions,
    validate_baseline_dir,
)

RNG = np.random.default_rng(7)


def noisy(mean: float, n: int, sd: float) -> list[float]:
    return list(RNG.normal(mean, sd, n))


def test_identical_runs_do_not_regress() -> None:
    tpot = noisy(41.2, 200, 2.0)
    c = compare_samples("mean_tpot_ms", tpot, tpot)
    assert c is not None and c.change == 0 and c.ci_low < 0 < c.ci_high and not c.regressed


def test_a_clear_slowdown_regresses_with_an_interval_around_it() -> None:
    base = noisy(41.2, 200, 2.0)
    slower = [v * 1.163 for v in noisy(41.2, 200, 2.0)]
    c = compare_samples("mean_tpot_ms", base, slower)
    assert c is not None and c.regressed
    assert c.ci_low < c.change < c.ci_high and 0.13 < c.ci_low and c.ci_high < 0.20
    # Seeded: the same data give the same interval, run after run.
    assert compare_samples("mean_tpot_ms", base, slower) == c


def test_a_significant_but_tiny_change_does_not_fail_the_gate() -> None:
    base = noisy(40.0, 2000, 0.2)
    c = compare_samples("mean_tpot_ms", base, [v * 1.005 for v in base])
    assert c is not None and c.ci_low > 0  # real ...
    assert not c.regressed  # ... but below the 5% minimum effect


def test_a_change_whose_interval_reaches_below_the_minimum_effect_does_not_fail() -> None:
    # +8% on the mean, but one slow request makes it: the interval starts near zero.
    base = [10.7] * 7 + [10.9]
    now = [10.7] * 7 + [17.9]
    c = compare_samples("mean_ttft_ms", base, now)
    assert c is not None and c.change > 0.05 and c.ci_low < 0.05 and not c.regressed


def test_a_large_change_within_the_noise_does_not_fail_the_gate() -> None:
    base = [10.0, 50.0, 12.0, 90.0, 11.0, 13.0]
    c = compare_samples("mean_ttft_ms", base, [11.0, 12.0, 95.0, 10.0, 60.0, 44.0])
    assert c is not None and c.change >= 0.05 and c.ci_low <= 0 and not c.regressed
    assert compare_samples("mean_ttft_ms", [1.0, 2.0], [5.0, 6.0]) is None  # too few samples


def test_a_p99_is_judged_only_with_the_samples_that_bound_it() -> None:
    # With 32 requests a "p99" is the slowest one, and resampling it gives a falsely
    # narrow interval: as for SLOs, a p99 needs 299 samples.
    base, slower = noisy(30.0, 298, 1.0), noisy(40.0, 298, 1.0)
    assert compare_samples("p99_ttft_ms", base, slower) is None
    c = compare_samples("p99_ttft_ms", base + [30.0], slower + [40.0])
    assert c is not None and c.regressed and 0.2 < c.ci_low < c.change < c.ci_high < 0.45


def test_regression_reads_as_a_sentence() -> None:
    r = Regression(
        name="regression:mean_tpot_ms",
        measured=47.9,
        limit=41.2,
        metric="mean_tpot_ms",
        change=0.163,
        ci_low=0.141,
        ci_high=0.186,
        baseline_label="reports-old",
    )
    assert str(r) == (
        "mean_tpot_ms regressed: 41.2 ms -> 47.9 ms (+16.3%, 95% CI +14.1% .. +18.6%) "
        "against baseline reports-old"
    )
    found = find_regressions(
        {"ttft_ms": noisy(100, 50, 1), "tpot_ms": noisy(40, 50, 1)},
        {"ttft_ms": noisy(100, 50, 1), "tpot_ms": noisy(48, 50, 1)},
        "old",
    )
    assert [f.metric for f in found] == ["mean_tpot_ms"]
    assert found[0].name == "regression:mean_tpot_ms" and found[0].limit == pytest.approx(40, 0.05)


def test_baseline_samples_skip_warmup_failures_and_unjudged_cases(tmp_path: Path) -> None:
    (tmp_path / "requests").mkdir()
    lines = [
        {"warmup": True, "status": "ok", "ttft_ms": 1.0, "tpot_ms": 1.0},
        {"warmup": False, "status": "ok", "ttft_ms": 10.0, "tpot_ms": 4.0},
        {"warmup": False, "status": "ok", "ttft_ms": 12.0, "tpot_ms": None},
        {"warmup": False, "status": "timeout", "ttft_ms": 99.0, "tpot_ms": 9.0},
    ]
    (tmp_path / "requests" / "s.requests.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in lines)
    )
    (tmp_path / "s.json").write_text(json.dumps({"slogate": {"verdict": "pass"}}))
    assert baseline_samples(tmp_path, "s") == {"ttft_ms": [10.0, 12.0], "tpot_ms": [4.0]}
    (tmp_path / "s.json").write_text(json.dumps({"slogate": {"verdict": "invalid"}}))
    assert baseline_samples(tmp_path, "s") is None
    assert baseline_samples(tmp_path, "missing") is None


def test_baseline_dir_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such directory"):
        validate_baseline_dir(tmp_path / "nope", tmp_path / "reports")
    with pytest.raises(ConfigError, match="no serving_benchmark_"):
        validate_baseline_dir(tmp_path, tmp_path / "reports")
    results = tmp_path / "reports" / "results"
    results.mkdir(parents=True)
    (results / "serving_benchmark_1_32_32.json").write_text("{}")
    validate_baseline_dir(tmp_path / "reports", tmp_path / "other")
    with pytest.raises(ConfigError, match="copy it first"):
        validate_baseline_dir(tmp_path / "reports", tmp_path / "reports")


# One request at a time, so every run of the simulator schedules its steps alike: TTFT and
# TPOT then vary by 1-3% from run to run.  (With a few requests at higher concurrency the
# first wave may or may not share a prefill step, a run-level effect that requests of one
# run cannot show: such cases need more prompts, or repeats, before a gate is fair.)
RUN = ["-m", "smoke", "--concurrency", "1", "--lengths", "32x32,64x32", "--num-prompts", "8"]
RUN += ["-p", "no:cacheprovider"]
SENTENCE = re.compile(
    r"mean_tpot_ms regressed: ([\d.]+) ms -> ([\d.]+) ms \(\+([\d.]+)%, 95% CI "
    r"\+([\d.]+)% \.\. \+([\d.]+)%\) against baseline before"
)


def read_rows(reports: Path) -> dict[str, dict[str, str]]:
    """summary.csv rows by input length."""
    with (reports / "summary.csv").open() as fh:
        return {r["input_len"]: r for r in csv.DictReader(fh)}


def test_baseline_gate_passes_a_rerun_and_fails_a_slower_engine(project: pytest.Pytester) -> None:
    project.runpytest_subprocess(*RUN, "--reports-dir=before").assert_outcomes(passed=2)
    before = project.path / "before"

    # The same engine again: no regression.
    res = project.runpytest_subprocess(*RUN, "--reports-dir=again", "--baseline=before")
    res.assert_outcomes(passed=2)
    res.stdout.fnmatch_lines(["*baseline:*before: 0 case(s) regressed*"])
    assert "regressed:" not in res.stdout.str()

    # The simulator's decode 15% slower: both cases fail on mean TPOT, and on nothing else.
    res = project.runpytest_subprocess(
        *RUN, "--reports-dir=after", "--baseline=before", "--engine-args=--decode-slowdown 1.15"
    )
    res.assert_outcomes(failed=2)
    res.stdout.fnmatch_lines(["*baseline:*before: 2 case(s) regressed*"])
    after = project.path / "after"
    for length in ("32", "64"):
        stem = f"serving_benchmark_1_{length}_32"
        old = json.loads((before / "results" / f"{stem}.json").read_text())
        new = json.loads((after / "results" / f"{stem}.json").read_text())
        (breach,) = new["slogate"]["breaches"]
        assert breach == {
            "name": "regression:mean_tpot_ms",
            "measured": pytest.approx(new["mean_tpot_ms"], rel=1e-3),
            "limit": pytest.approx(old["mean_tpot_ms"], rel=1e-3),
        }
        assert new["slogate"]["verdict"] == "fail"
        row = read_rows(after)[length]
        assert row["verdict"] == "fail" and row["regressions"] == "mean_tpot_ms"
        assert row["broken_slos"] == ""

    sentences = SENTENCE.findall(res.stdout.str())
    assert len(sentences) >= 2  # each failure's message (pytest may repeat it in its summary)
    for base, now, change, low, high in sentences:
        assert float(now) > float(base)
        assert 5 <= float(low) <= float(change) <= float(high) <= 25
        assert float(change) == pytest.approx((float(now) / float(base) - 1) * 100, abs=2.5)


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("--baseline=missing", "ERROR: --baseline *missing: no such directory*"),
        ("--baseline=reports", "ERROR: --baseline *reports: this is where the run writes*"),
    ],
)
def test_bad_baseline_is_a_usage_error(project: pytest.Pytester, arg: str, message: str) -> None:
    results = project.path / "reports" / "results"
    results.mkdir(parents=True)
    (results / "serving_benchmark_1_32_32.json").write_text("{}")
    res = project.runpytest_subprocess("-m", "smoke", arg)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([message])
