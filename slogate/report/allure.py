"""Allure: labels, parameters and attachments of each case, and the run's environment.

Labels follow Allure's behaviours tree: engine (epic) > model (feature) > lengths (story).
Parameter names are stable (concurrency, input_len, output_len) so history and trends work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import allure

from slogate.outcome import CaseResult
from slogate.report.files import write_json, write_text
from slogate.report.results import requests_jsonl

CATEGORIES = [
    {
        "name": "SLO breaches",
        "description": "The engine was measured correctly and missed a threshold.",
        "matchedStatuses": ["failed"],
        "messageRegex": ".*SLO.*",
    },
    {
        "name": "Invalid measurements",
        "description": "The client, not the engine, limited the numbers; nothing was judged.",
        "matchedStatuses": ["broken"],
        "messageRegex": ".*[Ii]nvalid.*",
    },
    {
        "name": "Engine or infrastructure trouble",
        "description": "The engine did not start, died, or could not be reached.",
        "matchedStatuses": ["broken"],
    },
]


def label_case(case_id: str, engine: str, model: str, params: dict[str, Any]) -> None:
    """Called before the case runs, so a case that breaks still carries its labels."""
    allure.dynamic.epic(engine)
    allure.dynamic.feature(model or engine)
    allure.dynamic.story(f"in{params['input_len']}-out{params['output_len']}")
    allure.dynamic.title(case_id)
    for name, value in params.items():
        if value is not None:
            allure.dynamic.parameter(name, value)


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


def attach_case(result: CaseResult, result_json: dict[str, Any]) -> None:
    allure.dynamic.description(metrics_table(result))
    skip = ("input_lens", "output_lens", "ttfts")
    slim = {k: v for k, v in result_json.items() if k not in skip}
    allure.attach(
        json.dumps(slim, indent=2, default=str),
        name="metrics.json",
        attachment_type=allure.attachment_type.JSON,
    )
    allure.attach(
        requests_jsonl(result), name="requests.jsonl", attachment_type=allure.attachment_type.TEXT
    )
    if result.server_metrics:
        allure.attach(
            json.dumps(result.server_metrics, indent=1),
            name="server metrics (1 s samples).json",
            attachment_type=allure.attachment_type.JSON,
        )


def attach_log_tail(text: str) -> None:
    allure.attach(text, name="engine log (tail)", attachment_type=allure.attachment_type.TEXT)


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
