"""PNG charts: a case's latency distributions and server time series, and sweep curves.

Each function takes plain numbers and returns PNG bytes, so callers decide where the
picture goes (a file under ``reports/charts/``, an Allure attachment, a comparison).
Figures are built with matplotlib's object API on the Agg canvas, never ``pyplot``:
no global figure state, no display needed, nothing leaks between calls.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Small figures: they are looked at in a browser next to a table, a few per page.
DPI = 100


def _figure(width: float, height: float) -> Figure:
    # Imported on first use: matplotlib takes half a second to import, and most pytest
    # sessions (option errors, --show-engine-command) never draw anything.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def distribution_png(values_ms: Sequence[float], metric: str, title: str) -> bytes | None:
    """Histogram of one per-request latency (``metric`` e.g. "TTFT") with mean/p50/p99 marked."""
    values = np.asarray([v for v in values_ms if v is not None and math.isfinite(v)], float)
    if values.size == 0:
        return None
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    bins = min(50, max(5, int(math.sqrt(values.size)) * 2))
    ax.hist(values, bins=bins, color="#4c78a8", alpha=0.85)
    marks = (
        ("mean", float(values.mean()), "#e45756", "-"),
        ("p50", float(np.percentile(values, 50)), "#54a24b", "--"),
        ("p99", float(np.percentile(values, 99)), "#f58518", ":"),
    )
    for label, x, color, style in marks:
        ax.axvline(x, color=color, linestyle=style, linewidth=1.5, label=f"{label} {x:,.2f} ms")
    ax.set_xlabel(f"{metric} per request (ms)")
    ax.set_ylabel("requests")
    ax.set_title(f"{title}: {metric} distribution ({values.size} requests)", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


#: Server-side series (slogate.scrape) and how they are drawn: queue lengths share one
#: axis, the KV cache fill (a fraction) gets its own.
_QUEUE_SERIES = (("running", "#4c78a8"), ("waiting", "#e45756"))


def server_metrics_png(samples: Sequence[Mapping[str, Any]], title: str) -> bytes | None:
    """Running / waiting requests and KV-cache usage against time, from 1 s scrapes."""
    if len(samples) < 2:
        return None
    t = [float(s.get("t", i)) for i, s in enumerate(samples)]
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    drawn = False
    for name, color in _QUEUE_SERIES:
        ys = [s.get(name) for s in samples]
        if any(y is not None for y in ys):
            values = [np.nan if y is None else y for y in ys]
            ax.plot(t, values, color=color, marker="o", markersize=3, label=name)
            drawn = True
    ax.set_xlabel("seconds since the case started")
    ax.set_ylabel("requests")
    kv = [s.get("kv_cache_usage") for s in samples]
    if any(v is not None for v in kv):
        ax2 = ax.twinx()
        pct = [np.nan if v is None else 100.0 * v for v in kv]
        ax2.plot(
            t,
            pct,
            color="#54a24b",
            linestyle="--",
            marker="o",
            markersize=3,
            label="KV cache usage",
        )
        ax2.set_ylabel("KV cache usage (%)")
        ax2.set_ylim(0, max(100.0, float(np.nanmax(pct)) if drawn else 100.0))
        ax2.legend(loc="upper right", fontsize=8)
        drawn = True
    if not drawn:
        return None
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"{title}: server state (1 s samples)", fontsize=10)
    return _png(fig)


@dataclass(frozen=True)
class SweepPoint:
    """One case of a sweep as the charts see it: the load and three metrics."""

    load: float  # concurrency, or request rate in open-loop sweeps
    output_throughput: float | None
    mean_ttft_ms: float | None
    mean_tpot_ms: float | None


#: The three panels of a sweep chart: attribute, axis label.
SWEEP_PANELS = (
    ("output_throughput", "output throughput (tokens/s)"),
    ("mean_ttft_ms", "mean TTFT (ms)"),
    ("mean_tpot_ms", "mean TPOT (ms)"),
)


def sweep_png(
    series: Mapping[str, Sequence[SweepPoint]], title: str, load_label: str = "concurrency"
) -> bytes | None:
    """Output throughput, mean TTFT and mean TPOT against load, one line per series.

    The load axis is log2 (concurrency doubles from step to step in a sweep), with the
    measured loads as ticks so every point can be read off.
    """
    if not any(series.values()):
        return None
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    fig = _figure(15, 4.2)
    axes = fig.subplots(1, len(SWEEP_PANELS))
    loads = sorted({p.load for points in series.values() for p in points})
    markers = "osD^v"
    for ax, (attr, label) in zip(axes, SWEEP_PANELS, strict=True):
        for i, (name, points) in enumerate(series.items()):
            pts = sorted((p.load, getattr(p, attr)) for p in points)
            pts = [(x, y) for x, y in pts if y is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker=markers[i % len(markers)], label=name)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(LogLocator(base=2) if len(loads) > 12 else NullLocator())
        if len(loads) <= 12:
            # Label a load only when it is not crowded against the previous label (200
            # between 128 and 256 would print "128200256"); every point keeps its marker.
            shown: list[float] = []
            for x in sorted(loads):
                if not shown or x / shown[-1] >= 1.6:
                    shown.append(x)
            ax.set_xticks(shown)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
        ax.set_xlabel(f"{load_label} (log2 scale)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if attr == "mean_ttft_ms" and _spans_decades(series, attr):
            ax.set_yscale("log")  # TTFT explodes past saturation: a linear axis hides the knee
    axes[0].legend(fontsize=9)
    fig.suptitle(title, fontsize=11)
    return _png(fig)


def _spans_decades(series: Mapping[str, Sequence[SweepPoint]], attr: str) -> bool:
    values = [v for pts in series.values() for p in pts if (v := getattr(p, attr)) and v > 0]
    return bool(values) and max(values) / min(values) > 100
