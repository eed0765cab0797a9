"""Two runs side by side: a table per input/output pair, charts, and what the numbers say.

``python -m slogate compare DIR_A DIR_B`` reads two reports directories (or their
``results/``) and writes ``compare.md``, ``compare.csv`` and ``charts/compare_*.png``.
The summary sentences are computed from the table itself (the rounded values it shows),
never from numbers the reader cannot see, so every "up to 37.2% more" can be checked
against a row of the table.  Deltas are B relative to A: (B - A) / A.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from slogate.errors import ConfigError
from slogate.report.files import write_bytes, write_text
from slogate.report.plots import sweep_png
from slogate.report.sweep import CaseRow, fmt, pair_title, require_cases

SIDES = ("A", "B")


@dataclass(frozen=True)
class Metric:
    key: str  # the result JSON's key
    title: str
    unit: str
    higher_is_better: bool
    summarised: bool = True  # gets a "who is better" sentence


BASE_METRICS = (
    Metric("output_throughput", "Output Throughput (tokens/s)", "tok/s", True),
    Metric("mean_ttft_ms", "Mean TTFT (ms)", "ms", False),
    Metric("mean_tpot_ms", "Mean TPOT (ms)", "ms", False),
    Metric("p99_ttft_ms", "P99 TTFT (ms)", "ms", False, summarised=False),
)


@dataclass(frozen=True)
class Row:
    """One load of one pair: each side's values as the table shows them (2 decimals)."""

    input_len: int
    output_len: int
    load_kind: str  # "concurrency" or "request rate (req/s)"
    load: float
    load_text: str
    values: dict[tuple[str, str], float | None]  # (metric key, side) -> value
    verdicts: dict[str, str]  # side -> "pass" / "fail: p90_ttft_ms, ..." / "" (unknown)
    breaches: dict[str, tuple[str, ...]]  # side -> names of the broken SLOs

    def value(self, key: str, side: str) -> float | None:
        return self.values.get((key, side))

    def delta_pct(self, key: str) -> float | None:
        a, b = self.value(key, "A"), self.value(key, "B")
        if a is None or b is None or a == 0:
            return None
        return round((b - a) / a * 100, 1)


@dataclass(frozen=True)
class Statement:
    """One sentence of the summary, with the pair it is about."""

    pair: tuple[int, int]
    kind: str  # "output_throughput", "mean_ttft_ms", "mean_tpot_ms", "peak", "slo", "ttft_growth"
    text: str


@dataclass
class Comparison:
    names: tuple[str, str]
    dirs: tuple[Path, Path]
    metrics: tuple[Metric, ...]
    rows: list[Row]
    slos: dict[str, dict[str, float]]  # side -> SLO thresholds (from its cases)
    time_scales: dict[str, list[float]] = field(default_factory=dict)  # side -> simulator scales
    statements: list[Statement] = field(default_factory=list)

    def pairs(self) -> list[tuple[int, int, str]]:
        seen: dict[tuple[int, int, str], None] = {}
        for r in self.rows:
            seen.setdefault((r.input_len, r.output_len, r.load_kind), None)
        return list(seen)

    def rows_of(self, pair: tuple[int, int, str]) -> list[Row]:
        return [r for r in self.rows if (r.input_len, r.output_len, r.load_kind) == pair]

    def name(self, side: str) -> str:
        return self.names[SIDES.index(side)]


# -- naming ------------------------------------------------------------------------------
def _describe(rows: Sequence[CaseRow]) -> list[str]:
    """Name candidates from the most to the least general: backend, model, sim profile."""
    engines = sorted({r.engine for r in rows if r.engine}) or ["?"]
    models = sorted({r.model for r in rows if r.model})
    profiles = sorted({str(p) for r in rows if (p := r.run.get("engine_sim_profile"))})
    return ["+".join(engines), "+".join(models), "+".join(profiles)]


def engine_names(a: Sequence[CaseRow], b: Sequence[CaseRow], dirs: Sequence[Path]) -> list[str]:
    """Names from each side's backend, adding model, simulator profile or directory
    until the two differ (two simulator profiles are both backend "sim")."""
    da, db = _describe(a), _describe(b)
    names = [da[0], db[0]]
    for i in (1, 2):
        if names[0] != names[1]:
            return names
        if da[i] != db[i] and da[i] and db[i]:
            names = [f"{names[0]}[{da[i]}]", f"{names[1]}[{db[i]}]"]
    if names[0] == names[1]:
        ta, tb = (d.parent.name if d.name == "results" else d.name for d in dirs)
        names = [f"{names[0]}[{ta}]", f"{names[1]}[{tb}]"] if ta != tb else ["A", "B"]
    return names


# -- the table ---------------------------------------------------------------------------
def _slo_metrics(slos: dict[str, dict[str, float]]) -> tuple[Metric, ...]:
    """TTFT thresholds the runs were judged by that the base columns do not show."""
    shown = {m.key for m in BASE_METRICS}
    names = sorted({n for s in slos.values() for n in s if n.endswith("_ttft_ms")} - shown)
    return tuple(
        Metric(n, f"{n.split('_')[0].upper()} TTFT (ms)", "ms", False, summarised=False)
        for n in names
    )


def _verdict(row: CaseRow | None) -> tuple[str, tuple[str, ...]]:
    if row is None:
        return "", ()
    names = tuple(str(b.get("name", "")) for b in row.breaches)
    text = row.verdict
    if names:
        text += ": " + ", ".join(names)
    return text, names


def build(dir_a: Path, dir_b: Path, names: Sequence[str] | None = None) -> Comparison:
    """Read both directories and build the table and its summary."""
    cases = {"A": require_cases(dir_a), "B": require_cases(dir_b)}
    if names is None:
        names = engine_names(cases["A"], cases["B"], (dir_a, dir_b))
    if len(names) != 2 or not all(names) or names[0] == names[1]:
        raise ConfigError(
            f"--names {','.join(names)}: expected two different names, e.g. vllm,sglang"
        )
    slos: dict[str, dict[str, float]] = {}
    for side, rows in cases.items():
        merged: dict[str, float] = {}
        for r in rows:
            merged.update(r.slo)
        slos[side] = merged
    metrics = BASE_METRICS + _slo_metrics(slos)
    keyed: dict[tuple[int, int, str, float], dict[str, CaseRow]] = {}
    for side, rows in cases.items():
        for r in rows:
            keyed.setdefault((r.input_len, r.output_len, r.load_kind, r.load), {})[side] = r
    table = []
    for key in sorted(keyed, key=lambda k: (k[0], k[1], k[2] != "concurrency", k[3])):
        by_side = keyed[key]
        values: dict[tuple[str, str], float | None] = {}
        verdicts, breaches = {}, {}
        for side in SIDES:
            case = by_side.get(side)
            for m in metrics:
                v = case.metric(m.key) if case else None
                values[(m.key, side)] = None if v is None else round(v, 2)
            verdicts[side], breaches[side] = _verdict(case)
        any_case = next(iter(by_side.values()))
        table.append(
            Row(key[0], key[1], key[2], key[3], any_case.load_text, values, verdicts, breaches)
        )
    scales = {side: sorted({r.time_scale for r in rows}) for side, rows in cases.items()}
    comparison = Comparison((names[0], names[1]), (dir_a, dir_b), metrics, table, slos, scales)
    comparison.statements = summarize(comparison)
    return comparison


# -- the summary -------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{x:.1f}%"


def _loads(kind: str, loads: Sequence[str]) -> str:
    return f"{kind} {', '.join(loads)}"


def metric_statement(c: Comparison, pair: tuple[int, int, str], m: Metric) -> str | None:
    """Who is better at ``m`` at which loads, and the largest gain with where it is."""
    kind = pair[2]
    wins: dict[str, list[tuple[float, Row, float, float]]] = {"A": [], "B": [], "tie": []}
    for row in c.rows_of(pair):
        a, b = row.value(m.key, "A"), row.value(m.key, "B")
        if a is None or b is None or a <= 0 or b <= 0:
            continue
        if a == b:
            wins["tie"].append((0.0, row, a, b))
            continue
        a_better = a > b if m.higher_is_better else a < b
        side, w, lo = ("A", a, b) if a_better else ("B", b, a)
        gain = (w / lo - 1) * 100 if m.higher_is_better else (1 - w / lo) * 100
        wins[side].append((gain, row, w, lo))
    total = sum(len(v) for v in wins.values())
    if total == 0:
        return None
    word = "higher" if m.higher_is_better else "lower"
    more = "more" if m.higher_is_better else "lower"
    label = m.title.split(" (")[0].lower().replace("ttft", "TTFT").replace("tpot", "TPOT")
    parts = []
    for side in SIDES:
        if not wins[side]:
            continue
        gain, row, w, lo = max(wins[side], key=lambda t: t[0])
        where = (
            f"at every {kind} ({len(wins[side])} of {total})"
            if len(wins[side]) == total
            else f"at {_loads(kind, [r.load_text for _, r, _, _ in wins[side]])}"
        )
        parts.append(
            f"{c.name(side)} has {word} {label} {where}: up to {_pct(gain)} {more} "
            f"at {kind} {row.load_text} ({fmt(w)} vs {fmt(lo)} {m.unit})"
        )
    if wins["tie"]:
        parts.append(f"equal at {_loads(kind, [r.load_text for _, r, _, _ in wins['tie']])}")
    return "; ".join(parts) + "."


def peak_statement(c: Comparison, pair: tuple[int, int, str]) -> str | None:
    """Each side's highest output throughput and how far apart the peaks are."""
    kind, peaks = pair[2], {}
    for side in SIDES:
        points = [
            (v, r) for r in c.rows_of(pair) if (v := r.value("output_throughput", side)) is not None
        ]
        if points:
            peaks[side] = max(points, key=lambda t: t[0])
    if len(peaks) < 2 or min(v for v, _ in peaks.values()) <= 0:
        return None
    (va, ra), (vb, rb) = peaks["A"], peaks["B"]
    text = (
        f"Peak output throughput: {c.name('A')} {fmt(va)} tok/s (at {kind} {ra.load_text}), "
        f"{c.name('B')} {fmt(vb)} tok/s (at {kind} {rb.load_text})"
    )
    if va == vb:
        return text + ": equal."
    hi, lo = ("A", "B") if va > vb else ("B", "A")
    ratio = (max(va, vb) / min(va, vb) - 1) * 100
    return text + f": {c.name(hi)}'s peak is {_pct(ratio)} higher than {c.name(lo)}'s."


def slo_statements(c: Comparison, pair: tuple[int, int, str]) -> list[str]:
    """For each side: the first load at which each of its TTFT SLOs broke (the table's
    verdict column), with the value the table shows there."""
    kind, out = pair[2], []
    rows = c.rows_of(pair)
    for side in SIDES:
        name = c.name(side)
        ttft_slos = {k: v for k, v in c.slos[side].items() if k.endswith("_ttft_ms")}
        judged = [r for r in rows if r.verdicts.get(side) in ("pass",) or r.breaches.get(side)]
        if not ttft_slos:
            if any(r.verdicts.get(side) for r in rows):
                out.append(f"{name} was judged by no TTFT SLO.")
            else:
                out.append(f"{name}'s results carry no SLO verdicts.")
            continue
        for slo, limit in ttft_slos.items():
            broken = [r for r in rows if slo in r.breaches.get(side, ())]
            if broken:
                first = broken[0]
                value = first.value(slo, side)
                shown = f" ({slo} = {fmt(value)} ms)" if value is not None else ""
                out.append(
                    f"{name} first breaks its SLO {slo} <= {limit:g} ms at {kind} "
                    f"{first.load_text}{shown}."
                )
            elif judged:
                out.append(
                    f"{name} meets its SLO {slo} <= {limit:g} ms at every judged {kind} "
                    f"(up to {judged[-1].load_text})."
                )
            else:
                out.append(f"{name}: no case was judged against {slo}.")
    return out


def ttft_growth_statement(c: Comparison, pair: tuple[int, int, str]) -> list[str]:
    """Where each side's mean TTFT jumps most between two consecutive loads."""
    kind, out = pair[2], []
    for side in SIDES:
        pts = [(r, v) for r in c.rows_of(pair) if (v := r.value("mean_ttft_ms", side))]
        if len(pts) < 2:
            continue
        steps = [(b[1] / a[1], a, b) for a, b in zip(pts, pts[1:], strict=False)]
        ratio, (ra, va), (rb, vb) = max(steps, key=lambda t: t[0])
        if ratio < 2:
            continue
        out.append(
            f"{c.name(side)}'s mean TTFT jumps most between {kind} {ra.load_text} and "
            f"{rb.load_text}: {fmt(va)} -> {fmt(vb)} ms ({ratio:.1f}x)."
        )
    return out


def summarize(c: Comparison) -> list[Statement]:
    out = []
    for pair in c.pairs():
        key = (pair[0], pair[1])
        for m in c.metrics:
            if m.summarised and (text := metric_statement(c, pair, m)):
                out.append(Statement(key, m.key, text))
        if text := peak_statement(c, pair):
            out.append(Statement(key, "peak", text))
        out += [Statement(key, "ttft_growth", t) for t in ttft_growth_statement(c, pair)]
        out += [Statement(key, "slo", t) for t in slo_statements(c, pair)]
    return out


# -- output ------------------------------------------------------------------------------
def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _delta(d: float | None) -> str:
    return "" if d is None else f"{d:+.1f}%"


def table_md(c: Comparison, pair: tuple[int, int, str]) -> str:
    a, b = c.names
    header = [pair[2].capitalize()]
    for m in c.metrics:
        header += [f"{m.title} {a}", f"{m.title} {b}", "Δ"]
    header += [f"Verdict {a}", f"Verdict {b}"]
    lines = [_md_row(header), _md_row(["---"] * len(header))]
    for r in c.rows_of(pair):
        cells = [r.load_text]
        for m in c.metrics:
            va, vb = r.value(m.key, "A"), r.value(m.key, "B")
            cells += [fmt(va), fmt(vb), _delta(r.delta_pct(m.key))]
        cells += [r.verdicts["A"], r.verdicts["B"]]
        lines.append(_md_row(cells))
    return "\n".join(lines)


def csv_columns(c: Comparison) -> list[str]:
    cols = ["input_len", "output_len", "load_kind", "load"]
    for m in c.metrics:
        cols += [f"{m.key} [{c.names[0]}]", f"{m.key} [{c.names[1]}]", f"{m.key} delta %"]
    return cols + [f"verdict [{c.names[0]}]", f"verdict [{c.names[1]}]"]


def render_csv(c: Comparison) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_columns(c))
    for r in c.rows:
        cells: list[object] = [r.input_len, r.output_len, r.load_kind, r.load_text]
        for m in c.metrics:
            cells += [fmt(r.value(m.key, "A")), fmt(r.value(m.key, "B"))]
            d = r.delta_pct(m.key)
            cells.append("" if d is None else f"{d:.1f}")
        cells += [r.verdicts["A"], r.verdicts["B"]]
        writer.writerow(cells)
    return buf.getvalue()


def chart_name(pair: tuple[int, int, str]) -> str:
    suffix = "" if pair[2] == "concurrency" else "_rate"
    return f"compare_in{pair[0]}_out{pair[1]}{suffix}.png"


def render_md(c: Comparison, charts: dict[tuple[int, int, str], str]) -> str:
    a, b = c.names
    lines = [
        f"# {a} vs {b}",
        "",
        f"- A: **{a}** — {c.dirs[0]}",
        f"- B: **{b}** — {c.dirs[1]}",
        "- Δ is B relative to A: (B − A) / A. Latencies: lower is better.",
    ]
    if any(scales != [1.0] for scales in c.time_scales.values()):
        shown = "; ".join(
            f"{c.name(side)} " + ", ".join(f"{x:g}x" for x in c.time_scales[side]) for side in SIDES
        )
        differ = c.time_scales["A"] != c.time_scales["B"]
        lines.append(
            f"- Simulator time scale: {shown} (latencies are that many times shorter than in "
            f"real time{'; the two differ, so their latencies do not compare' if differ else ''})."
        )
    lines += ["", "## Summary"]
    for pair in c.pairs():
        lines += ["", f"### {pair_title(pair[0], pair[1])}", ""]
        lines += [f"- {s.text}" for s in c.statements if s.pair == (pair[0], pair[1])]
    for pair in c.pairs():
        lines += ["", f"## {pair_title(pair[0], pair[1])}", "", table_md(c, pair)]
        if pair in charts:
            lines += ["", f"![{pair_title(pair[0], pair[1])}]({charts[pair]})"]
    return "\n".join(lines) + "\n"


def write(c: Comparison, out_dir: Path) -> list[Path]:
    """compare.md, compare.csv and one chart per pair under ``out_dir``; returns them."""
    cases = {side: require_cases(d) for side, d in zip(SIDES, c.dirs, strict=True)}
    charts: dict[tuple[int, int, str], str] = {}
    written = []
    for pair in c.pairs():
        series = {
            c.name(side): [
                r.point() for r in cases[side] if (r.input_len, r.output_len, r.load_kind) == pair
            ]
            for side in SIDES
        }
        png = sweep_png(
            series, f"{c.names[0]} vs {c.names[1]} · {pair_title(pair[0], pair[1])}", pair[2]
        )
        if png is not None:
            path = out_dir / "charts" / chart_name(pair)
            write_bytes(path, png)
            charts[pair] = path.relative_to(out_dir).as_posix()
            written.append(path)
    md, csv_path = out_dir / "compare.md", out_dir / "compare.csv"
    write_text(md, render_md(c, charts))
    write_text(csv_path, render_csv(c))
    return [md, csv_path, *written]
