"""Real pytest sessions of the user-facing suite against the simulator (pytester)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
USER_COLUMNS = [
    "concurrency",
    "mean TTFT(ms)",
    "input_throughput(tokens/s)",
    "output_throughput(tokens/s)",
    "mean TPOT(ms)",
    "mean_input_len",
    "mean_output_len",
]
FAST = ["--lengths", "32x16", "--num-prompts", "6", "-p", "no:cacheprovider"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def allure_results(reports: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (reports / "allure-results").glob("*-result.json")]


def test_smoke_sweep_writes_every_report(project: pytest.Pytester) -> None:
    res = project.runpytest_subprocess("-m", "smoke", *FAST)
    res.assert_outcomes(passed=2)
    reports = project.path / "reports"

    with (reports / "summary.csv").open() as fh:
        header = next(csv.reader(fh))
    assert header[:7] == USER_COLUMNS
    rows = read_csv(reports / "summary.csv")
    assert [(r["concurrency"], r["verdict"]) for r in rows] == [("1", "pass"), ("8", "pass")]
    assert all(float(r["mean_input_len"]) == 32 and float(r["mean_output_len"]) == 16 for r in rows)

    result = json.loads((reports / "results" / "serving_benchmark_8_32_16.json").read_text())
    assert result["completed"] == 6 and result["failed"] == 0
    assert result["output_lens"] == [16] * 6 and result["input_lens"] == [32] * 6
    for key in (
        "duration",
        "input_throughput",
        "output_throughput",
        "mean_ttft_ms",
        "p99_ttft_ms",
        "mean_tpot_ms",
        "median_itl_ms",
        "mean_e2el_ms",
        "total_token_throughput",
        "request_throughput",
        "max_concurrency",
    ):
        assert key in result, key
    assert 0 < result["mean_ttft_ms"] < result["mean_e2el_ms"]
    assert result["mean_tpot_ms"] > 0
    assert result["output_throughput"] == pytest.approx(6 * 16 / result["duration"])

    lines = reports / "results" / "requests" / "serving_benchmark_8_32_16.requests.jsonl"
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert sum(not r["warmup"] for r in records) == 6 and sum(r["warmup"] for r in records) == 1
    assert all(r["status"] == "ok" and r["output_tokens_source"] == "usage" for r in records)

    tests = allure_results(reports)
    assert sorted(t["status"] for t in tests) == ["passed", "passed"]
    params = {p["name"]: p["value"] for p in tests[0]["parameters"]}
    assert {"concurrency", "input_len", "output_len"} <= set(params)
    labels = {(lab["name"], lab["value"]) for lab in tests[0]["labels"]}
    assert ("epic", "sim") in labels and ("story", "in32-out16") in labels
    assert any(a["name"] == "metrics.json" for t in tests for a in t.get("attachments", []))
    assert (reports / "allure-results" / "environment.properties").read_text().count("engine=sim")

    res.stdout.fnmatch_lines(["*c8-in32-out16*6/6*ok*-> pass*", "*summary:*summary.csv*"])


@pytest.mark.parametrize("script", ["collect_vllm.py", "collect_sglang.py"])
def test_users_collector_scripts_run_unchanged(project: pytest.Pytester, script: str) -> None:
    project.runpytest_subprocess("-m", "smoke", *FAST).assert_outcomes(passed=2)
    results = project.path / "reports" / "results"
    subprocess.run([sys.executable, str(DATA / script), "--dir", str(results)], check=True)
    theirs = sorted(read_csv(results / "summary.csv"), key=lambda r: int(r["concurrency"]))
    ours = read_csv(project.path / "reports" / "summary.csv")
    assert len(theirs) == 2
    for t, o in zip(theirs, ours, strict=True):
        for col in USER_COLUMNS:
            assert float(t[col]) == pytest.approx(float(o[col]), abs=0.01), col


def test_broken_slo_fails_with_each_threshold_measured_and_limit(project: pytest.Pytester) -> None:
    res = project.runpytest_subprocess(
        "-m",
        "smoke",
        *FAST,
        "--concurrency",
        "2",
        "--slo",
        "median_tpot_ms=0.01",
        "--slo",
        "output_throughput=1e9",
    )
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(
        [
            "*c2-in32-out16: 2 SLO(s) broken*",
            "*- median_tpot_ms = * ms, limit <= 0.01 ms*",
            "*- output_throughput = * tok/s, limit >= 1,000,000,000.00 tok/s*",
        ]
    )
    (row,) = read_csv(project.path / "reports" / "summary.csv")
    assert row["verdict"] == "fail" and row["broken_slos"] == "median_tpot_ms;output_throughput"
    (test,) = allure_results(project.path / "reports")
    assert test["status"] == "failed"


def test_bad_matrix_is_a_usage_error(project: pytest.Pytester) -> None:
    bad = project.path / "matrices" / "bad.yaml"
    bad.write_text("sweep:\n  - lengths: [128x128]\n    concurency: [1]\n")
    res = project.runpytest_subprocess("--matrix", str(bad))
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([f"ERROR: {bad}: sweep[[]0]: unknown key 'concurency'*"])
    assert "Traceback" not in res.stdout.str() + res.stderr.str()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0,8"], "ERROR: --concurrency '0,8': '0' is not a positive integer*"),
        (["--lengths", "128"], "ERROR: --lengths: '128' is not a length pair*INPUTxOUTPUT*"),
        (["--slo", "p99_ttft_ms"], "ERROR: --slo 'p99_ttft_ms': expected NAME=VALUE*"),
        (["--engine", "tgi"], "ERROR: --engine 'tgi': unknown engine; choose one of*"),
        (["--engine", "external"], "ERROR: --engine external needs --base-url*"),
        (["--num-prompts", "x"], "ERROR: --num-prompts 'x': expected a positive integer*"),
        (["--sim-profile", "h100"], "ERROR: --sim-profile 'h100': unknown; choose one of*"),
        (["--matrix", "nope.yaml"], "ERROR: --matrix nope.yaml: no such file*"),
        (
            ["--engine", "vllm", "--model", "/no/such/model"],
            "ERROR: --model /no/such/model: no such path*",
        ),
    ],
)
def test_bad_options_are_usage_errors(
    project: pytest.Pytester, args: list[str], message: str
) -> None:
    res = project.runpytest_subprocess(*args)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([message])


def test_engine_that_dies_at_start_fails_fast_with_its_log(project: pytest.Pytester) -> None:
    t0 = time.monotonic()
    res = project.runpytest_subprocess("-m", "smoke", *FAST, "--engine-args=--no-such-flag")
    assert time.monotonic() - t0 < 60
    res.assert_outcomes(errors=2)
    res.stdout.fnmatch_lines(
        [
            "*sim exited with code 2*",
            "*last lines of the log*",
            "*unrecognized arguments: --no-such-flag*",
        ]
    )


def test_external_endpoint(project: pytest.Pytester, tmp_path: Path) -> None:
    """--engine external measures an endpoint slogate did not start."""
    from slogate.server import listening_socket

    sock = listening_socket()
    port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "slogate.sim", "--fd", str(sock.fileno()), "--model", "m1"],
        pass_fds=[sock.fileno()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    sock.close()
    try:
        res = project.runpytest_subprocess(
            "-m",
            "smoke",
            *FAST,
            "--concurrency",
            "2",
            "--engine",
            "external",
            "--base-url",
            f"http://127.0.0.1:{port}",
        )
        res.assert_outcomes(passed=1)
        (row,) = read_csv(project.path / "reports" / "summary.csv")
        assert (row["engine"], row["model"]) == ("external", "m1")
    finally:
        proc.terminate()
        proc.wait(10)


def test_open_loop_case_from_the_command_line(project: pytest.Pytester) -> None:
    res = project.runpytest_subprocess("-m", "smoke", *FAST, "--request-rate", "40")
    res.assert_outcomes(passed=1)
    (row,) = read_csv(project.path / "reports" / "summary.csv")
    assert (row["concurrency"], row["request_rate"], row["verdict"]) == ("", "40.0", "pass")
    result = json.loads(
        (project.path / "reports" / "results" / "serving_benchmark_rate40_32_16.json").read_text()
    )
    assert result["request_rate"] == 40.0 and result["max_concurrency"] is None
    assert result["slogate"]["client"]["schedule_lag_p99_ms"] is not None
    res.stdout.fnmatch_lines(["*r40-in32-out16*-> pass*"])


def test_too_few_samples_for_a_percentile_is_invalid(project: pytest.Pytester) -> None:
    res = project.runpytest_subprocess(
        "-m", "smoke", *FAST, "--concurrency", "2", "--slo", "p99_ttft_ms=5000"
    )
    res.assert_outcomes(failed=1)  # broken in Allure, an error that is not an assertion
    res.stdout.fnmatch_lines(
        [
            "*InvalidMeasurement*p99_ttft_ms needs at least 299 samples*"
            "this case has 6 completed requests; raise num_prompts*"
        ]
    )
    (row,) = read_csv(project.path / "reports" / "summary.csv")
    assert row["verdict"] == "invalid"
    (test,) = allure_results(project.path / "reports")
    assert test["status"] == "broken"
