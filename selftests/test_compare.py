"""python -m slogate compare: every sentence of the summary is checked against the table.

``check_statements`` re-derives each claim from ``compare.csv`` on its own (who is better
at which loads, the largest gain and where, the peaks, the first SLO breach), so a
sentence that disagrees with the table it sits above fails the test.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from slogate.report import compare

ROOT = Path(__file__).resolve().parents[1]

METRIC_WORDS = {
    "output throughput": ("output_throughput", True),
    "mean TTFT": ("mean_ttft_ms", False),
    "mean TPOT": ("mean_tpot_ms", False),
}
NUM = r"[\d.]+"
CLAIM = re.compile(
    rf"(?P<name>.+?) has (?P<word>higher|lower) (?P<metric>{'|'.join(METRIC_WORDS)}) at "
    rf"(?:every \w+ \((?P<n>\d+) of \d+\)|\w+ (?P<loads>[\d., ]+)): up to (?P<gain>{NUM})% "
    rf"(?:more|lower) at \w+ (?P<at>{NUM}) \((?P<w>{NUM}) vs (?P<l>{NUM}) (?:tok/s|ms)\)"
)
PEAK = re.compile(
    rf"Peak output throughput: (?P<a>.+?) (?P<va>{NUM}) tok/s \(at \w+ (?P<la>{NUM})\), "
    rf"(?P<b>.+?) (?P<vb>{NUM}) tok/s \(at \w+ (?P<lb>{NUM})\): (?P<hi>.+?)'s peak is "
    rf"(?P<pct>{NUM})% higher than (?P<lo>.+?)'s\."
)
BREAK = re.compile(
    rf"(?P<name>.+?) first breaks its SLO (?P<slo>\w+) <= (?P<limit>{NUM}) ms at \w+ "
    rf"(?P<at>{NUM}) \((?P=slo) = (?P<value>{NUM}) ms\)\."
)
MEETS = re.compile(rf"(?P<name>.+?) meets its SLO (?P<slo>\w+) <= {NUM} ms at every judged .*")
JUMP = re.compile(
    rf"(?P<name>.+?)'s mean TTFT jumps most between \w+ (?P<a>{NUM}) and (?P<b>{NUM}): "
    rf"(?P<va>{NUM}) -> (?P<vb>{NUM}) ms \((?P<ratio>{NUM})x\)\."
)


def read_table(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def value(row: dict[str, str], key: str, name: str) -> float | None:
    text = row.get(f"{key} [{name}]", "")
    return float(text) if text else None


def check_statements(table: list[dict[str, str]], statements: list[str], names: list[str]) -> int:
    """Check each "X has higher/lower M at ...: up to G% at L (w vs l)" clause against the
    CSV: the loads where X is better, the largest gain, where it is and the two values.
    Returns the number of clauses checked."""
    checked = 0
    for text in statements:
        for part in text.rstrip(".").split("; "):
            if part.startswith("equal at"):
                continue
            m = CLAIM.fullmatch(part)
            assert m, f"not a comparison the checker knows: {part}"
            key, higher = METRIC_WORDS[m["metric"]]
            assert (m["word"] == "higher") == higher, part
            me, other = m["name"], names[1 - names.index(m["name"])]
            wins = {}
            for row in table:
                a, b = value(row, key, me), value(row, key, other)
                if a is not None and b is not None and a != b and (a > b) == higher:
                    wins[row["load"]] = ((a / b - 1) * 100 if higher else (1 - a / b) * 100, a, b)
            claimed = [r["load"] for r in table if r["load"] in wins] if m["n"] else m["loads"]
            if not m["n"]:
                claimed = claimed.split(", ")
            assert sorted(claimed) == sorted(wins), (part, wins)
            best = max(wins, key=lambda load: wins[load][0])
            gain, w, lo = wins[best]
            assert m["at"] == best and float(m["gain"]) == round(gain, 1), (part, wins)
            assert (float(m["w"]), float(m["l"])) == (w, lo), part
            checked += 1
    return checked


def check_other_statements(table: list[dict[str, str]], statements: list[str]) -> int:
    """Check the peak, TTFT-jump and SLO sentences against the CSV; returns how many."""
    checked = 0
    for text in statements:
        if m := PEAK.fullmatch(text):
            for name, peak, load in ((m["a"], m["va"], m["la"]), (m["b"], m["vb"], m["lb"])):
                values = {r["load"]: value(r, "output_throughput", name) for r in table}
                assert float(peak) == max(v for v in values.values() if v) == values[load], text
            va, vb = float(m["va"]), float(m["vb"])
            assert float(m["pct"]) == round((max(va, vb) / min(va, vb) - 1) * 100, 1), text
            assert m["hi"] == (m["a"] if va > vb else m["b"]), text
        elif m := BREAK.fullmatch(text):
            verdicts = [(r["load"], r[f"verdict [{m['name']}]"]) for r in table]
            broken = [load for load, verdict in verdicts if m["slo"] in verdict]
            assert broken and broken[0] == m["at"], (text, verdicts)
            (row,) = [r for r in table if r["load"] == m["at"]]
            assert value(row, m["slo"], m["name"]) == float(m["value"]) > float(m["limit"]), text
        elif m := MEETS.fullmatch(text):
            assert not any(m["slo"] in r[f"verdict [{m['name']}]"] for r in table), text
        elif m := JUMP.fullmatch(text):
            ttft = [(r["load"], value(r, "mean_ttft_ms", m["name"]) or 0.0) for r in table]
            steps = [(b[1] / a[1], a[0], b[0]) for a, b in zip(ttft, ttft[1:], strict=False)]
            ratio, a, b = max(steps)
            assert (a, b) == (m["a"], m["b"]) and float(m["ratio"]) == round(ratio, 1), text
        else:
            continue
        checked += 1
    return checked


def write_case(results: Path, engine: str, c: int, tp: float, ttft: float, tpot: float,
               broken: tuple[str, ...] = (), slo: dict | None = None) -> None:  # fmt: skip
    results.mkdir(parents=True, exist_ok=True)
    data = {
        "backend": engine, "model_id": "DeepSeek-R1", "max_concurrency": c,
        "request_rate": "inf", "random_input_len": 128, "random_output_len": 128,
        "completed": c, "output_throughput": tp, "input_throughput": tp,
        "mean_ttft_ms": ttft, "p99_ttft_ms": ttft * 1.5, "mean_tpot_ms": tpot,
        "input_lens": [128] * c, "output_lens": [128] * c,
        "slogate": {
            "verdict": "fail" if broken else "pass",
            "slo": slo if slo is not None else {"p99_ttft_ms": 2000.0},
            "breaches": [{"name": n, "measured": 0, "limit": 0} for n in broken],
        },
    }  # fmt: skip
    (results / f"serving_benchmark_{c}_128_128.json").write_text(json.dumps(data))


# The user's seed tables (DeepSeek-R1 on 8xH20, 128/128): concurrency, output throughput,
# mean TTFT, mean TPOT.  p99 TTFT is taken as 1.5x the mean, judged against 2000 ms.
SEED = {
    "vllm": [(1, 9.04, 137.49, 110.35), (64, 505.68, 638.28, 116.10),
             (256, 675.69, 10997.02, 124.53)],
    "sglang": [(1, 23.02, 182.48, 42.00), (64, 525.62, 2194.33, 104.64),
               (256, 1126.60, 3240.90, 182.61)],
}  # fmt: skip


@pytest.fixture
def seed_dirs(tmp_path: Path) -> tuple[Path, Path]:
    for engine, rows in SEED.items():
        for c, tp, ttft, tpot in rows:
            broken = ("p99_ttft_ms",) if ttft * 1.5 > 2000 else ()
            write_case(tmp_path / engine / "results", engine, c, tp, ttft, tpot, broken)
    return tmp_path / "vllm", tmp_path / "sglang"


def test_the_users_comparison_is_written_for_them(seed_dirs: tuple[Path, Path]) -> None:
    c = compare.build(*seed_dirs)
    assert c.names == ("vllm", "sglang")
    assert [s.text for s in c.statements] == [
        "sglang has higher output throughput at every concurrency (3 of 3): up to 154.6% more "
        "at concurrency 1 (23.02 vs 9.04 tok/s).",
        "vllm has lower mean TTFT at concurrency 1, 64: up to 70.9% lower at concurrency 64 "
        "(638.28 vs 2194.33 ms); sglang has lower mean TTFT at concurrency 256: up to 70.5% "
        "lower at concurrency 256 (3240.90 vs 10997.02 ms).",
        "vllm has lower mean TPOT at concurrency 256: up to 31.8% lower at concurrency 256 "
        "(124.53 vs 182.61 ms); sglang has lower mean TPOT at concurrency 1, 64: up to 61.9% "
        "lower at concurrency 1 (42.00 vs 110.35 ms).",
        "Peak output throughput: vllm 675.69 tok/s (at concurrency 256), sglang 1126.60 tok/s "
        "(at concurrency 256): sglang's peak is 66.7% higher than vllm's.",
        "vllm's mean TTFT jumps most between concurrency 64 and 256: 638.28 -> 10997.02 ms "
        "(17.2x).",
        "sglang's mean TTFT jumps most between concurrency 1 and 64: 182.48 -> 2194.33 ms (12.0x).",
        "vllm first breaks its SLO p99_ttft_ms <= 2000 ms at concurrency 256 "
        "(p99_ttft_ms = 16495.53 ms).",
        "sglang first breaks its SLO p99_ttft_ms <= 2000 ms at concurrency 64 "
        "(p99_ttft_ms = 3291.49 ms).",
    ]


def test_statements_match_the_table_they_summarise(
    seed_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    c = compare.build(*seed_dirs, names=["vLLM", "SGLang"])
    written = compare.write(c, out)
    assert {p.name for p in written} == {"compare.md", "compare.csv", "compare_in128_out128.png"}
    table = read_table(out / "compare.csv")
    texts = [s.text for s in c.statements]
    comparisons = [t for t in texts if " has " in t]
    assert check_statements(table, comparisons, ["vLLM", "SGLang"]) == 5  # clauses
    assert check_other_statements(table, texts) == 5  # the peak, two jumps, two breaches
    md = (out / "compare.md").read_text()
    assert all(f"- {t}" in md for t in texts)
    assert "| 256 | 675.69 | 1126.60 | +66.7% |" in md


def test_mixed_winners_ties_and_missing_loads(tmp_path: Path) -> None:
    for c, tp in ((1, 10.0), (2, 30.0), (4, 40.0), (8, 50.0)):
        write_case(tmp_path / "a", "a", c, tp, 100.0, 10.0)
    for c, tp in ((1, 12.0), (2, 25.0), (4, 40.0)):  # no c=8
        write_case(tmp_path / "b", "b", c, tp, 100.0, 10.0, slo={})
    cmp = compare.build(tmp_path / "a", tmp_path / "b")
    (tp_text,) = [s.text for s in cmp.statements if s.kind == "output_throughput"]
    assert tp_text == (
        "a has higher output throughput at concurrency 2: up to 20.0% more at concurrency 2 "
        "(30.00 vs 25.00 tok/s); b has higher output throughput at concurrency 1: up to 20.0% "
        "more at concurrency 1 (12.00 vs 10.00 tok/s); equal at concurrency 4."
    )
    texts = [s.text for s in cmp.statements]
    assert "a meets its SLO p99_ttft_ms <= 2000 ms at every judged concurrency (up to 8)." in texts
    assert "b was judged by no TTFT SLO." in texts
    table = read_table(compare_csv(cmp, tmp_path))
    assert table[-1]["load"] == "8" and table[-1]["output_throughput [b]"] == ""
    assert check_statements(table, [tp_text], ["a", "b"]) == 2


def compare_csv(c: compare.Comparison, tmp_path: Path) -> Path:
    compare.write(c, tmp_path / "out")
    return tmp_path / "out" / "compare.csv"


def test_cli_errors_say_what_to_do(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "slogate", "compare", str(tmp_path), str(tmp_path / "x")],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 2
    assert "no serving_benchmark_*.json results found" in res.stderr
    assert "Traceback" not in res.stderr


def test_calibrated_profiles_compare_with_a_summary_that_matches_its_table(
    project: pytest.Pytester,
) -> None:
    """vLLM vs SGLang simulator profiles at 1, 64 and 256: the user's comparison, computed."""
    matrix = project.path / "matrices" / "compare.yaml"
    matrix.write_text(
        "name: compare\n"
        "defaults:\n"
        "  ignore_eos: true\n"
        "  min_prompts: 4\n"
        "  warmup_requests: 1\n"
        "  slo: {mean_ttft_ms: 60, error_rate: 0}\n"
        "sweep:\n"
        "  - lengths: [128x128]\n"
        "    concurrency: [1, 64, 256]\n"
    )
    for engine in ("vllm", "sglang"):
        res = project.runpytest_subprocess(
            "-m", "sweep", f"--matrix={matrix}", "--sim-profile", f"h20-deepseek-r1-{engine}",
            "--sim-time-scale", "20", "--concurrency", "1,64,256", f"--reports-dir={engine}",
            "-p", "no:cacheprovider",
        )  # fmt: skip
        outcomes = res.parseoutcomes()
        assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 3, res.stdout.str()
    res = subprocess.run(
        [sys.executable, "-m", "slogate", "compare", "vllm", "sglang", "--out", "cmp"],
        cwd=project.path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    names = ["sim[h20-deepseek-r1-vllm]", "sim[h20-deepseek-r1-sglang]"]
    assert res.stdout.splitlines()[0] == f"{names[0]} (A) vs {names[1]} (B)"
    table = read_table(project.path / "cmp" / "compare.csv")
    assert [r["load"] for r in table] == ["1", "64", "256"]
    md = (project.path / "cmp" / "compare.md").read_text()
    texts = [line[2:] for line in md.split("## Summary")[1].split("\n## ")[0].splitlines()
             if line.startswith("- ")]  # fmt: skip
    comparisons = [t for t in texts if " has " in t]
    assert len(comparisons) == 3 and check_statements(table, comparisons, names) >= 3
    assert check_other_statements(table, texts) == len(texts) - 3
    assert any("first breaks its SLO mean_ttft_ms" in t for t in texts)
    # What the calibration says about the two engines (seed tables): SGLang decodes
    # faster at low load (41 vs 110 ms per token) and serves more tokens at 256.
    row1, _, row256 = table
    assert value(row1, "mean_tpot_ms", names[1]) < value(row1, "mean_tpot_ms", names[0]) / 2
    tp = [value(row256, "output_throughput", name) for name in names]
    assert tp[1] > tp[0]
