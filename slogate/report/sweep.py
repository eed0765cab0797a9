"""The sweep at a glance: ``summary.md`` (the user's table, one per input/output pair) and
``charts/`` (throughput, TTFT and TPOT against concurrency), built from the case files.

Like ``summary.csv`` these are rebuilt from ``results/serving_benchmark_*.json`` on disk,
so they cover every case written so far, by this process or another (pytest-xdist).
``load_cases`` reads the same files for the engine comparison; it also accepts JSON
written by vLLM's or SGLang's own benchmark scripts (no ``slogate`` block), taking the
lengths from the user's file names when the JSON does not carry them.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slogate.errors import ConfigError
from slogate.report.files import write_bytes, write_text
from slogate.report.plots import SweepPoint, sweep_png

_STEM = re.compile(r"serving_benchmark_(?:(\d+)|rate([\d.]+))_(\d+)_(\d+)$")


@dataclass(frozen=True)
class CaseRow:
    """One case as read back from its result JSON: the numbers the tables and charts use."""

    path: Path
    engine: str
    model: str
    input_len: int
    output_len: int
    concurrency: int | None
    request_rate: float | None
    mean_ttft_ms: float | None
    p99_ttft_ms: float | None
    mean_tpot_ms: float | None
    p99_tpot_ms: float | None
    input_throughput: float | None
    output_throughput: float | None
    mean_input_len: float | None
    mean_output_len: float | None
    verdict: str = ""
    slo: dict[str, float] = field(default_factory=dict)
    breaches: tuple[dict[str, Any], ...] = ()
    time_scale: float = 1.0
    run: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def pair(self) -> tuple[int, int]:
        return (self.input_len, self.output_len)

    @property
    def load(self) -> float:
        """Concurrency, or the request rate of an open-loop case (never both)."""
        if self.concurrency is not None:
            return float(self.concurrency)
        return float(self.request_rate or 0.0)

    @property
    def load_kind(self) -> str:
        return "concurrency" if self.concurrency is not None else "request rate (req/s)"

    @property
    def load_text(self) -> str:
        return str(self.concurrency) if self.concurrency is not None else f"{self.load:g}"

    def metric(self, name: str) -> float | None:
        """A summary value by its vLLM key (``p90_ttft_ms`` …), from the table or the JSON."""
        value = getattr(self, name, None)
        if value is None:
            value = self.raw.get(name)
        return float(value) if isinstance(value, (int, float)) else None

    def point(self) -> SweepPoint:
        return SweepPoint(self.load, self.output_throughput, self.mean_ttft_ms, self.mean_tpot_ms)


def results_dir_of(path: Path) -> Path:
    """``path`` itself if it holds case JSON files, else its ``results/`` subdirectory."""
    if any(path.glob("serving_benchmark_*.json")):
        return path
    return path / "results"


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _mean(values: Any) -> float | None:
    if isinstance(values, list) and values:
        return float(sum(values)) / len(values)
    return None


def case_row(data: dict[str, Any], path: Path) -> CaseRow | None:
    """A ``CaseRow`` from one result JSON; None when it is not a serving benchmark result."""
    m = _STEM.match(path.stem)
    input_len = data.get("random_input_len") or (int(m.group(3)) if m else None)
    output_len = data.get("random_output_len") or (int(m.group(4)) if m else None)
    concurrency = data.get("max_concurrency")
    rate = _num(data.get("request_rate"))  # "inf" in closed-loop runs
    if concurrency is None and rate is None and m and m.group(1):
        concurrency = int(m.group(1))
    if input_len is None or output_len is None or (concurrency is None and rate is None):
        return None
    sg = data.get("slogate") or {}
    completed = data.get("completed") or 0
    mean_in = _mean(data.get("input_lens"))
    mean_out = _mean(data.get("output_lens"))
    if mean_in is None and completed:
        mean_in = (data.get("total_input_tokens") or 0) / completed
    if mean_out is None and completed:
        mean_out = (data.get("total_output_tokens") or 0) / completed
    return CaseRow(
        path=path,
        engine=str(data.get("backend") or ""),
        model=str(data.get("model_id") or ""),
        input_len=int(input_len),
        output_len=int(output_len),
        concurrency=int(concurrency) if concurrency is not None else None,
        request_rate=rate if concurrency is None else None,
        mean_ttft_ms=_num(data.get("mean_ttft_ms")),
        p99_ttft_ms=_num(data.get("p99_ttft_ms")),
        mean_tpot_ms=_num(data.get("mean_tpot_ms")),
        p99_tpot_ms=_num(data.get("p99_tpot_ms")),
        input_throughput=_num(data.get("input_throughput")),
        output_throughput=_num(data.get("output_throughput")),
        mean_input_len=mean_in,
        mean_output_len=mean_out,
        verdict=str(sg.get("verdict") or ""),
        slo={k: float(v) for k, v in (sg.get("slo") or {}).items()},
        breaches=tuple(sg.get("breaches") or ()),
        time_scale=float(sg.get("time_scale") or 1.0),
        run=dict(sg.get("run") or {}),
        raw=data,
    )


def load_cases(path: Path) -> list[CaseRow]:
    """Every case in a reports directory (or its ``results/``), sorted by pair then load.

    Unreadable or half-written files are skipped, as in ``summary.csv``.
    """
    rows = []
    for file in sorted(results_dir_of(path).glob("serving_benchmark_*.json")):
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and (row := case_row(data, file)) is not None:
            rows.append(row)
    return sorted(rows, key=lambda r: (r.pair, r.concurrency is None, r.load))


def require_cases(path: Path) -> list[CaseRow]:
    """``load_cases`` for a directory the user named: none found is their mistake, said so."""
    if not path.is_dir():
        raise ConfigError(f"{path}: no such directory")
    rows = load_cases(path)
    if not rows:
        raise ConfigError(
            f"{path}: no serving_benchmark_*.json results found in it or in {path}/results/; "
            f"give a reports directory written by slogate (or a directory of vLLM/SGLang "
            f"result JSON files)"
        )
    return rows


def groups(rows: Iterable[CaseRow]) -> dict[tuple[int, int, str], list[CaseRow]]:
    """Rows by (input_len, output_len, load kind), each sorted by load."""
    out: dict[tuple[int, int, str], list[CaseRow]] = {}
    for row in rows:
        out.setdefault((row.input_len, row.output_len, row.load_kind), []).append(row)
    for group in out.values():
        group.sort(key=lambda r: r.load)
    return out


def fmt(value: float | None, digits: int = 2) -> str:
    """A table cell: fixed decimals, as the user's hand-made tables; empty when missing."""
    return "" if value is None else f"{value:.{digits}f}"


def pair_title(input_len: int, output_len: int) -> str:
    return f"input {input_len} / output {output_len} tokens"


def chart_name(input_len: int, output_len: int, kind: str) -> str:
    suffix = "" if kind == "concurrency" else "_rate"
    return f"sweep_in{input_len}_out{output_len}{suffix}.png"


#: The user's table, column for column, then slogate's verdict.
MD_COLUMNS = (
    "Concurrency",
    "Mean TTFT (ms)",
    "Input Throughput (tokens/s)",
    "Output Throughput (tokens/s)",
    "Mean TPOT (ms)",
    "Mean Input Len",
    "Mean Output Len",
    "Verdict",
)


def pair_cells(rows: Sequence[CaseRow]) -> list[list[str]]:
    """The user's table for one pair as cells, header first (shared by markdown and CSV)."""
    header = list(MD_COLUMNS)
    if rows and rows[0].concurrency is None:
        header[0] = "Request Rate (req/s)"
    out = [header]
    for r in rows:
        verdict = r.verdict
        broken = [str(b.get("name", "")) for b in r.breaches]
        if broken:
            verdict += " (" + ", ".join(broken) + ")"
        out.append(
            [
                r.load_text,
                fmt(r.mean_ttft_ms),
                fmt(r.input_throughput),
                fmt(r.output_throughput),
                fmt(r.mean_tpot_ms),
                fmt(r.mean_input_len),
                fmt(r.mean_output_len),
                verdict,
            ]
        )
    return out


def pair_csv(rows: Sequence[CaseRow]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(pair_cells(rows))
    return buf.getvalue()


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def pair_table(rows: Sequence[CaseRow]) -> str:
    """One markdown table for the cases of one input/output pair."""
    header, *body = pair_cells(rows)
    lines = [_md_row(header), _md_row(["---"] * len(header))]
    lines += [_md_row(cells) for cells in body]
    return "\n".join(lines)


def _run_line(rows: Sequence[CaseRow]) -> str:
    engines = sorted({r.engine for r in rows})
    models = sorted({r.model for r in rows})
    parts = [f"engine: {', '.join(engines)}", f"model: {', '.join(models)}"]
    profile = rows[0].run.get("engine_sim_profile")
    if profile:
        parts.append(f"simulator profile: {profile}")
    scales = sorted({r.time_scale for r in rows})
    if scales != [1.0]:
        parts.append(
            "time scale: " + ", ".join(f"{s:g}x" for s in scales) + " (the simulator ran "
            "faster than real time: latencies are that many times shorter)"
        )
    return "; ".join(parts)


def render_summary_md(rows: Sequence[CaseRow], charts: dict[tuple[int, int, str], str]) -> str:
    """``summary.md``: a heading and the user's table for each pair, and its chart if any."""
    lines = ["# Sweep summary", "", _run_line(rows) + ".", ""]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.verdict or "?"] = counts.get(r.verdict or "?", 0) + 1
    lines += [f"{len(rows)} case(s): " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))]
    for key, group in groups(rows).items():
        lines += ["", f"## {pair_title(key[0], key[1])}", "", pair_table(group)]
        if key in charts:
            lines += ["", f"![{pair_title(key[0], key[1])}]({charts[key]})"]
    return "\n".join(lines) + "\n"


def write_charts(rows: Sequence[CaseRow], charts_dir: Path) -> dict[tuple[int, int, str], Path]:
    """One PNG per pair (three panels against load); returns where each was written."""
    written = {}
    for key, group in groups(rows).items():
        name = group[0].engine or "engine"
        png = sweep_png(
            {name: [r.point() for r in group]},
            f"{name} · {group[0].model} · {pair_title(key[0], key[1])}",
            load_label=key[2],
        )
        if png is not None:
            path = charts_dir / chart_name(*key)
            write_bytes(path, png)
            written[key] = path
    return written


def write_sweep_report(reports_dir: Path, charts: bool = True) -> list[Path]:
    """Rebuild ``summary.md`` (and, with ``charts``, ``charts/*.png``) from the case files.

    Returns the files written.  Charts are optional because matplotlib takes a moment:
    the session redraws them once at the end, while the table is refreshed per case.
    """
    rows = load_cases(reports_dir / "results")
    if not rows:
        return []
    charts_dir = reports_dir / "charts"
    chart_paths: dict[tuple[int, int, str], Path] = {}
    if charts:
        chart_paths = write_charts(rows, charts_dir)
        for old in charts_dir.glob("sweep_*.png"):  # pairs of an earlier run
            if old not in chart_paths.values():
                old.unlink(missing_ok=True)
    else:  # keep links to charts an earlier call drew
        for key in groups(rows):
            if (charts_dir / chart_name(*key)).exists():
                chart_paths[key] = charts_dir / chart_name(*key)
    links = {k: p.relative_to(reports_dir).as_posix() for k, p in chart_paths.items()}
    md = reports_dir / "summary.md"
    write_text(md, render_summary_md(rows, links))
    return [md, *chart_paths.values()]
