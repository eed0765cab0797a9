"""summary.md, sweep charts and the Allure side of each case (attachments, labels, history ids)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from slogate.report.plots import SweepPoint, distribution_png, server_metrics_png, sweep_png
from slogate.report.sweep import MD_COLUMNS, case_row, load_cases, pair_table, render_summary_md

FAST = ["--lengths", "32x16", "--num-prompts", "6", "-p", "no:cacheprovider"]
PNG = b"\x89PNG\r\n\x1a\n"
USER_HEADER = (
    "| Concurrency | Mean TTFT (ms) | Input Throughput (tokens/s) | Output Throughput (tokens/s) "
    "| Mean TPOT (ms) | Mean Input Len | Mean Output Len | Verdict |"
)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def slogate_json(
    c: int, ttft: float, out_tp: float, verdict: str = "pass", **extra: object
) -> dict:
    return {
        "backend": "vllm",
        "model_id": "/mnt/models/DeepSeek-R1",
        "max_concurrency": c,
        "request_rate": "inf",
        "random_input_len": 128,
        "random_output_len": 128,
        "completed": c,
        "mean_ttft_ms": ttft,
        "p99_ttft_ms": ttft * 2,
        "mean_tpot_ms": 110.0,
        "input_throughput": out_tp,
        "output_throughput": out_tp,
        "input_lens": [128] * c,
        "output_lens": [120, 124] * (c // 2) + [128] * (c % 2),
        "slogate": {
            "verdict": verdict,
            "slo": {"p90_ttft_ms": 2000.0},
            "breaches": [{"name": "p90_ttft_ms", "measured": 2500.0, "limit": 2000.0}]
            if verdict == "fail"
            else [],
            **extra,
        },
    }


def test_case_rows_from_slogate_and_from_vllms_own_json(tmp_path: Path) -> None:
    results = tmp_path / "reports" / "results"
    results.mkdir(parents=True)
    (results / "serving_benchmark_1_128_128.json").write_text(json.dumps(slogate_json(1, 137.5, 9)))
    # vLLM's benchmark_serving.py --save-result: no lengths, no slogate block; the user's
    # file name carries concurrency and lengths.
    vllm = {"backend": "vllm", "model_id": "m", "max_concurrency": 64, "completed": 64,
            "total_input_tokens": 64 * 256, "total_output_tokens": 64 * 230,
            "mean_ttft_ms": 1037.1, "output_throughput": 441.89, "mean_tpot_ms": 120.8}  # fmt: skip
    (results / "serving_benchmark_64_256_256.json").write_text(json.dumps(vllm))
    (results / "serving_benchmark_8_128_128.json").write_text("{half-written")
    rows = load_cases(tmp_path / "reports")  # a reports dir or its results/ both work
    assert rows == load_cases(results)
    assert [(r.concurrency, r.input_len, r.output_len) for r in rows] == [
        (1, 128, 128),
        (64, 256, 256),
    ]
    assert rows[0].mean_output_len == 128 and rows[0].verdict == "pass"
    assert rows[1].mean_input_len == 256 and rows[1].mean_output_len == 230
    assert rows[1].verdict == "" and rows[1].slo == {}


def test_summary_md_is_the_users_table_per_pair_with_verdicts(tmp_path: Path) -> None:
    rows = [
        case_row(slogate_json(c, ttft, tp, verdict), tmp_path / f"serving_benchmark_{c}_128_128")
        for c, ttft, tp, verdict in ((1, 137.49, 9.04, "pass"), (256, 10997.02, 675.69, "fail"))
    ]
    table = pair_table([r for r in rows if r is not None])
    lines = table.splitlines()
    assert lines[0] == USER_HEADER and len(lines) == 4
    assert lines[2] == "| 1 | 137.49 | 9.04 | 9.04 | 110.00 | 128.00 | 128.00 | pass |"
    assert lines[3].startswith("| 256 | 10997.02 | 675.69 | 675.69 | 110.00 |")
    assert lines[3].endswith("| fail (p90_ttft_ms) |")
    md = render_summary_md([r for r in rows if r is not None], {(128, 128, "concurrency"): "c.png"})
    assert (
        "## input 128 / output 128 tokens" in md and "![input 128 / output 128 tokens](c.png)" in md
    )
    assert "2 case(s): 1 fail, 1 pass" in md
    assert len(MD_COLUMNS) == 8


def test_plots_are_pngs_and_skip_what_has_no_data() -> None:
    hist = distribution_png([10.0, 11.0, 12.5, 30.0], "TTFT", "c1-in32-out16")
    assert hist is not None and png_size(hist) == (640, 360)
    assert distribution_png([], "TTFT", "x") is None
    series = [
        {"t": float(t), "running": t, "waiting": 0, "kv_cache_usage": t / 10} for t in range(5)
    ]
    assert server_metrics_png(series, "x") is not None
    assert server_metrics_png(series[:1], "x") is None  # one sample is no time series
    chart = sweep_png(
        {
            "vllm": [SweepPoint(c, c * 10.0, 100.0 + c, 110.0) for c in (1, 64, 256)],
            "sglang": [SweepPoint(c, c * 12.0, 180.0 + c, 40.0) for c in (1, 64, 256)],
        },
        "title",
    )
    assert chart is not None and png_size(chart) == (1500, 420)
    assert sweep_png({"a": []}, "empty") is None


def allure_tests(reports: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (reports / "allure-results").glob("*-result.json")]


def attachment(reports: Path, test: dict, name: str) -> bytes:
    (att,) = [a for a in test.get("attachments", []) if a["name"] == name]
    return (reports / "allure-results" / att["source"]).read_bytes()


def test_session_writes_summary_md_charts_and_allure_attachments(
    project: pytest.Pytester,
) -> None:
    project.runpytest_subprocess("-m", "smoke", *FAST, "--concurrency", "1,2").assert_outcomes(
        passed=2
    )
    reports = project.path / "reports"

    # summary.md holds the same numbers as summary.csv, in the user's layout.
    md = (reports / "summary.md").read_text()
    with (reports / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        cells = [
            row["concurrency"],
            *(f"{float(row[k]):.2f}" for k in (
                "mean TTFT(ms)", "input_throughput(tokens/s)", "output_throughput(tokens/s)",
                "mean TPOT(ms)", "mean_input_len", "mean_output_len",
            )),
            "pass",
        ]  # fmt: skip
        assert "| " + " | ".join(cells) + " |" in md
    assert USER_HEADER in md and "(charts/sweep_in32_out16.png)" in md
    chart = (reports / "charts" / "sweep_in32_out16.png").read_bytes()
    assert png_size(chart)[0] == 1500

    tests = allure_tests(reports)
    assert sorted(t["name"] for t in tests) == ["c1-in32-out16", "c2-in32-out16"]
    for test in tests:
        names = {a["name"] for a in test["attachments"]}
        assert {"metrics.json", "requests.csv", "TTFT distribution.png"} <= names
        assert {"TPOT distribution.png"} <= names
        requests = list(
            csv.DictReader(io.StringIO(attachment(reports, test, "requests.csv").decode()))
        )
        assert len(requests) == 7 and sum(r["warmup"] == "True" for r in requests) == 1
        assert all(r["status"] == "ok" and float(r["ttft_ms"]) > 0 for r in requests)
        assert png_size(attachment(reports, test, "TTFT distribution.png")) == (640, 360)
        # Stable parameters, and the pytest parameter "case" shown by id, out of the history id.
        params = {p["name"]: p for p in test["parameters"]}
        assert params["case"]["value"] == test["name"] and params["case"]["excluded"] is True
        assert {"concurrency", "input_len", "output_len"} <= set(params)
        assert (
            "<table" in test["descriptionHtml"]
            and "TTFT mean / median / p99" in test["description"]
        )

    # The sweep's table and chart reach every case of the pair as a shared tear-down step.
    containers = [
        json.loads(p.read_text()) for p in (reports / "allure-results").glob("*-container.json")
    ]
    (sweep,) = [c for c in containers if c.get("name") == "sweep summary in32-out16"]
    assert sorted(sweep["children"]) == sorted(t["uuid"] for t in tests)
    (after,) = sweep["afters"]
    kinds = {a["type"]: a for a in after["attachments"]}
    assert set(kinds) == {"text/csv", "image/png"}
    shown = (reports / "allure-results" / kinds["image/png"]["source"]).read_bytes()
    assert shown == chart
    table = (reports / "allure-results" / kinds["text/csv"]["source"]).read_text()
    assert (
        table.splitlines()[0].startswith("Concurrency,Mean TTFT (ms),")
        and len(table.splitlines()) == 3
    )


def history_ids(reports: Path) -> dict[str, str]:
    return {t["name"]: t["historyId"] for t in allure_tests(reports)}


def test_history_ids_survive_slo_changes_and_engine_failures(project: pytest.Pytester) -> None:
    """A case keeps its Allure history when thresholds change and when the engine breaks."""
    base = ["-m", "smoke", *FAST, "--concurrency", "1"]
    project.runpytest_subprocess(*base).assert_outcomes(passed=1)
    first = history_ids(project.path / "reports")
    project.runpytest_subprocess(*base, "--slo", "median_tpot_ms=0.01").assert_outcomes(failed=1)
    assert history_ids(project.path / "reports") == first

    res = project.runpytest_subprocess(*base, "--engine-args=--no-such-flag")
    res.assert_outcomes(errors=1)
    reports = project.path / "reports"
    (test,) = allure_tests(reports)
    assert test["status"] == "broken"
    # Labelled like a case that ran: same title, tree and history id.
    assert {test["name"]: test["historyId"]} == first
    labels = {(lab["name"], lab["value"]) for lab in test["labels"]}
    assert {("epic", "sim"), ("feature", "sim-model"), ("story", "in32-out16")} <= labels
    log = attachment(reports, test, "engine log (tail)").decode()
    assert "sim-server.log (last 200 lines)" in log
    assert "unrecognized arguments: --no-such-flag" in log
    categories = json.loads((reports / "allure-results" / "categories.json").read_text())
    assert categories[-1]["name"] == "Engine or infrastructure trouble"
