"""Allure: labels, parameters and attachments of each case, and the run's environment.

Labels follow Allure's behaviours tree: engine (epic) > model (feature) > lengths (story).
Parameter names are stable (concurrency, input_len, output_len) so history and trends work.
Each case carries its metrics table (description), its metrics JSON, its requests as CSV,
PNG plots of its TTFT/TPOT distributions and server time series; a case that broke on the
engine carries the engine log's tail.  At the end of the session every case of an
input/output pair gets the pair's sweep table and chart (a shared "tear down" step), so
the sweep is seen next to any of its cases.
"""

from __future__ import annotations

import csv
import html
import io
import json
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import allure

from slogate.matrix import Case
from slogate.outcome import CaseResult
from slogate.report.files import write_bytes, write_json, write_text
from slogate.report.plots import distribution_png, server_metrics_png

#: Allure matches ``messageRegex`` against the whole message, and a failure message spans
#: several lines (one per broken SLO): ``(?s)`` lets ``.`` cross them.  A result lands in
#: the first category it matches, so the specific ones come first.
CATEGORIES = [
    {
        "name": "Regressions against the baseline",
        "description": "Worse than the same case of the --baseline run, beyond run-to-run noise.",
        "matchedStatuses": ["failed"],
        "messageRegex": "(?s).*regressed: .*",
    },
    {
        "name": "SLO breaches",
        "description": "The engine was measured correctly and missed a threshold.",
        "matchedStatuses": ["failed"],
        "messageRegex": "(?s).*SLO.*",
    },
    {
        "name": "Invalid measurements",
        "description": "The client, not the engine, limited the numbers; nothing was judged.",
        "matchedStatuses": ["broken"],
        "messageRegex": "(?s).*[Ii]nvalid.*",
    },
    {
        "name": "Engine or infrastructure trouble",
        "description": "The engine did not start, died, or could not be reached.",
        "matchedStatuses": ["broken"],
    },
]

#: Columns of the per-request CSV, in reading order (times in ms from the case start).
REQUEST_COLUMNS = (
    "index", "warmup", "status", "error", "http_status",
    "input_len", "max_tokens", "output_tokens", "output_tokens_source",
    "ttft_ms", "tpot_ms", "e2el_ms",
    "sent_ms", "scheduled_ms", "first_token_ms", "last_token_ms", "done_ms",
    "chunks", "tokens_per_chunk", "prompt_tokens_server", "ttft_from_schedule_ms",
)  # fmt: skip


def label_case(case_id: str, engine: str, model: str, params: dict[str, Any]) -> None:
    """Called before the case runs, so a case that breaks still carries its labels."""
    allure.dynamic.epic(engine)
    allure.dynamic.feature(model or engine)
    allure.dynamic.story(f"in{params['input_len']}-out{params['output_len']}")
    allure.dynamic.title(case_id)
    for name, value in params.items():
        if value is not None:
            allure.dynamic.parameter(name, value)
    _stabilise_case_parameter(case_id)


def case_params(case: Case) -> dict[str, Any]:
    """The stable parameters that identify a case (and its Allure history)."""
    return {
        "concurrency": case.concurrency,
        "request_rate": case.request_rate,
        "input_len": case.input_len,
        "output_len": case.output_len,
    }


def label_pending_case(case: Case, engine: str, model: str) -> None:
    """Label a case whose test broke before it ran (the engine did not start)."""
    label_case(case.id, engine, model, case_params(case))


def _current_test() -> Any:
    """The test result allure-pytest is filling in, or None when Allure is not active."""
    import allure_commons

    for plugin in allure_commons.plugin_manager.get_plugins():
        logger = getattr(plugin, "allure_logger", None)
        if logger is not None and hasattr(logger, "get_test"):
            return logger.get_test(None)
    return None


def _stabilise_case_parameter(case_id: str) -> None:
    """Show the pytest parameter ``case`` as its id and keep it out of the history id.

    allure-pytest adds every pytest parameter as shown by ``repr``: for a case that is the
    whole dataclass, SLOs and prompt counts included, so changing a threshold would make
    it a new test with no history.  The stable parameters (concurrency, input_len,
    output_len, request_rate) identify a case; ``case`` becomes a readable, excluded one.
    """
    test = _current_test()
    for param in getattr(test, "parameters", None) or []:
        if param.name == "case":
            param.value = case_id
            param.excluded = True


def metrics_table(result: CaseResult) -> str:
    s = result.summary
    rows = [
        ("verdict", result.verdict),
        ("requests", f"{s['completed']} ok / {s['failed']} failed of {s['num_prompts']}"),
        ("output throughput", f"{s['output_throughput']:.1f} tok/s"),
        ("input throughput", f"{s['input_throughput']:.1f} tok/s"),
        ("request goodput", f"{s['request_goodput']:.3f} req/s"),
    ]
    for metric in ("ttft", "tpot", "itl", "e2el"):
        mean, p50, p99 = (s.get(f"{k}_{metric}_ms") for k in ("mean", "median", "p99"))
        if mean is not None:
            rows.append(
                (f"{metric.upper()} mean / median / p99",
                 f"{mean:.2f} / {p50:.2f} / {p99:.2f} ms")
            )  # fmt: skip
    for b in result.breaches:
        rows.append(("broken SLO", str(b)))
    for p in result.problems:
        rows.append(("problem", p))
    lines = ["| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def metrics_table_html(result: CaseResult) -> str:
    """The metrics table as HTML: Allure's markdown tables have no cell padding, so the
    values run into the labels (and it strips inline styles); an em space separates them."""
    rows = []
    for line in metrics_table(result).splitlines()[2:]:
        key, value = (html.escape(c.strip()) for c in line.strip("|").split(" | ", 1))
        rows.append(f"<tr><td>{key}&emsp;&emsp;</td><td>{value}</td></tr>")
    return '<table cellpadding="3">' + "".join(rows) + "</table>"


def requests_csv(result: CaseResult) -> str:
    """One row per request (warm-up included and flagged), as ``requests.jsonl`` has them."""
    origin = min((r.sent_ns for r in result.records), default=0)
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=REQUEST_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for record in result.records:
        row = record.to_json(origin)
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in REQUEST_COLUMNS})
    return buf.getvalue()


def case_plots(result: CaseResult) -> list[tuple[str, bytes]]:
    """(name, PNG) for the case: TTFT and TPOT distributions, server time series."""
    measured = [r for r in result.records if r.ok and not r.warmup]
    ttft = [r.ttft_ns / 1e6 for r in measured if r.ttft_ns is not None]
    tpot = [t / 1e6 for r in measured if (t := r.tpot_ns) is not None]
    plots = [
        ("TTFT distribution.png", distribution_png(ttft, "TTFT", result.case.id)),
        ("TPOT distribution.png", distribution_png(tpot, "TPOT", result.case.id)),
        ("server time series.png", server_metrics_png(result.server_metrics, result.case.id)),
    ]
    return [(name, png) for name, png in plots if png is not None]


#: A label (not shown by Allure) naming the results directory a case was written to, so
#: the sweep summary of one engine configuration goes to its own cases only.
RESULTS_LABEL = "slogate_results"


def attach_case(
    result: CaseResult, result_json: dict[str, Any], results_dir: Path | None = None
) -> None:
    if results_dir is not None:
        allure.dynamic.label(RESULTS_LABEL, str(results_dir.resolve()))
    allure.dynamic.description(metrics_table(result))
    allure.dynamic.description_html(metrics_table_html(result))
    skip = ("input_lens", "output_lens", "ttfts")
    slim = {k: v for k, v in result_json.items() if k not in skip}
    allure.attach(
        json.dumps(slim, indent=2, default=str),
        name="metrics.json",
        attachment_type=allure.attachment_type.JSON,
    )
    allure.attach(
        requests_csv(result), name="requests.csv", attachment_type=allure.attachment_type.CSV
    )
    for name, png in case_plots(result):
        allure.attach(png, name=name, attachment_type=allure.attachment_type.PNG)
    if result.server_metrics:
        allure.attach(
            json.dumps(result.server_metrics, indent=1),
            name="server metrics (1 s samples).json",
            attachment_type=allure.attachment_type.JSON,
        )


def attach_log_tail(text: str) -> None:
    allure.attach(text, name="engine log (tail)", attachment_type=allure.attachment_type.TEXT)


def engine_log_tail(message: str, fallback: Path | None, lines: int = 200) -> str:
    """The engine log's last lines: the file the error names (``log: PATH``), else
    ``fallback``, else the error message itself (which carries a shorter tail)."""
    from slogate.server import tail

    named = [Path(ln[5:].strip()) for ln in message.splitlines() if ln.startswith("log: ")]
    for path in named + ([fallback] if fallback else []):
        if path.is_file():
            return f"{path} (last {lines} lines)\n\n" + tail(path, lines)
    return message


def attach_engine_log(message: str, fallback: Path | None) -> None:
    """Attach the engine log's tail to the current test (the engine broke it)."""
    attach_log_tail(engine_log_tail(message, fallback))


def write_environment(allure_dir: Path, run_info: dict[str, Any]) -> None:
    """environment.properties, executor.json and categories.json for the report."""
    lines = []
    for key, value in run_info.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        text = str(value).replace("\\", "\\\\").replace("\n", " ")
        lines.append(f"{key}={text}")
    write_text(allure_dir / "environment.properties", "\n".join(lines) + "\n")
    write_json(allure_dir / "categories.json", CATEGORIES)
    write_json(
        allure_dir / "executor.json",
        {"name": "slogate", "type": "pytest", "buildName": run_info.get("run_id", "")},
    )


def _stories(allure_dir: Path, results_dir: Path) -> dict[str, list[str]]:
    """Uuids of the tests in ``allure_dir`` whose cases went to ``results_dir``, by story
    (the ``in…-out…`` label)."""
    out: dict[str, list[str]] = {}
    for path in sorted(allure_dir.glob("*-result.json")):
        try:
            test = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        labels = {lab["name"]: lab["value"] for lab in test.get("labels", [])}
        if labels.get(RESULTS_LABEL) != str(results_dir.resolve()):
            continue
        if labels.get("story") and test.get("uuid"):
            out.setdefault(labels["story"], []).append(test["uuid"])
    return out


def attach_sweep(
    allure_dir: Path,
    results_dir: Path,
    story: str,
    attachments: Iterable[tuple[str, str, bytes]],
) -> bool:
    """Add ``attachments`` (name, MIME type, content) to every case of ``story`` written
    to ``results_dir``.

    Written as an Allure container whose "after" step carries them: Allure shows it in
    the tear-down part of each child test, so the pair's chart and table are one click
    from any of its cases, and the run's test count stays the number of cases.
    Returns False when no test of that story is in ``allure_dir``.
    """
    children = _stories(allure_dir, results_dir).get(story)
    if not children:
        return False
    now = int(time.time() * 1000)
    refs = []
    for name, mime, body in attachments:
        ext = {"image/png": "png", "text/csv": "csv", "text/markdown": "md"}.get(mime, "txt")
        source = f"{uuid.uuid4()}-attachment.{ext}"
        write_bytes(allure_dir / source, body)
        refs.append({"name": name, "source": source, "type": mime})
    container = {
        "uuid": str(uuid.uuid4()),
        "name": f"sweep summary {story}",
        "children": children,
        "afters": [
            {
                "name": f"sweep summary {story}",
                "status": "passed",
                "stage": "finished",
                "start": now,
                "stop": now,
                "attachments": refs,
            }
        ],
        "start": now,
        "stop": now,
    }
    write_json(allure_dir / f"{container['uuid']}-container.json", container)
    return True


def attach_sweep_summary(allure_dir: Path, reports_dir: Path) -> list[str]:
    """Give every case the sweep table (CSV) and chart (PNG) of its input/output pair.

    Returns the stories (``in…-out…``) that received them.
    """
    from slogate.report.sweep import chart_name, groups, load_cases, pair_csv, pair_title

    done = []
    for (inp, out, kind), rows in groups(load_cases(reports_dir / "results")).items():
        title = pair_title(inp, out)
        files: list[tuple[str, str, bytes]] = [
            (f"sweep table, {title}.csv", "text/csv", pair_csv(rows).encode())
        ]
        chart = reports_dir / "charts" / chart_name(inp, out, kind)
        if chart.is_file():
            files.append((f"sweep chart, {title}.png", "image/png", chart.read_bytes()))
        story = f"in{inp}-out{out}"
        if attach_sweep(allure_dir, reports_dir / "results", story, files):
            done.append(story)
    return done


def label_capacity(target: Any, engine: str, model: str) -> None:
    allure.dynamic.epic(engine)
    allure.dynamic.feature(model or engine)
    allure.dynamic.story(f"in{target.input_len}-out{target.output_len}")
    allure.dynamic.title(f"capacity {target.id}")
    allure.dynamic.parameter("search", target.kind)
    allure.dynamic.parameter("input_len", target.input_len)
    allure.dynamic.parameter("output_len", target.output_len)


def attach_capacity(data: dict[str, Any], table: str) -> None:
    allure.dynamic.description(table)
    allure.attach(
        json.dumps(data, indent=2, default=str),
        name="capacity search.json",
        attachment_type=allure.attachment_type.JSON,
    )
