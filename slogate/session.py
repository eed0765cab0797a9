"""The run's session: owns the settings, runs each case, and writes its results at once.

One ``SlogateSession`` per pytest session, registered as a plugin.  Each case is written
as soon as it finishes (its JSON, its requests, a fresh ``summary.csv``), so a sweep that
is interrupted keeps everything it measured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from slogate.capacity import CapacityResult
from slogate.capacity import search as capacity_search
from slogate.config import Settings
from slogate.engines.base import Endpoint
from slogate.environment import gpu_environment, host_environment, redact_argv
from slogate.errors import EngineDiedError
from slogate.loadgen.dataset import Tokenizer, random_prompts
from slogate.loadgen.http import auth_headers
from slogate.loadgen.runner import ClientStats, LoadSpec, Progress, raise_fd_limit, run_load
from slogate.matrix import CapacityTarget, Case, Matrix, load_matrix
from slogate.metrics import summarize_repeats
from slogate.outcome import CaseResult, validity_problems
from slogate.report import allure as allure_report
from slogate.report.capacity import capacity_json, history_table, write_capacity
from slogate.report.results import result_json, write_case
from slogate.report.summary import write_summary
from slogate.scrape import MetricsScraper
from slogate.slo import Breach, check, per_request_limits

ProgressSink = Callable[[str, bool], None]


class SlogateSession:
    def __init__(self, settings: Settings, variants: list[Settings] | None = None) -> None:
        self.settings = settings
        #: the engine configurations of the run; several when comparing engines
        self.variants = variants or [settings]
        self.children: dict[str, SlogateSession] = {}
        self.parent: SlogateSession | None = None
        self.results: list[CaseResult] = []
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.run_info: dict[str, Any] = {
            "run_id": self.run_id,
            "engine": settings.engine,
            "model": settings.served_model,
            **host_environment(),
            "user": _user(),
            "command": " ".join(redact_argv(sys.argv)),
        }
        self._matrices: dict[Path, Matrix] = {}
        self._prepared = False
        self.endpoint: Endpoint | None = None

    def for_label(self, label: str) -> SlogateSession:
        """The session of one engine configuration (this one when there is only one)."""
        if not label or len(self.variants) == 1:
            return self
        if label not in self.children:
            variant = next(v for v in self.variants if v.label == label)
            child = SlogateSession(dataclasses.replace(variant, worker=self.settings.worker))
            child._matrices = self._matrices
            child.run_id = self.run_id
            child.parent = self
            self.children[label] = child
        return self.children[label]

    # -- paths ----------------------------------------------------------------------------
    @property
    def reports_dir(self) -> Path:
        return self.settings.reports_dir

    @property
    def results_dir(self) -> Path:
        return self.reports_dir / "results"

    @property
    def allure_dir(self) -> Path:
        if self.parent is not None:  # one Allure report for every engine configuration
            return self.parent.allure_dir
        return self.reports_dir / "allure-results"

    @property
    def summary_path(self) -> Path:
        return self.reports_dir / "summary.csv"

    # -- matrices -------------------------------------------------------------------------
    def matrix(self, path: Path) -> Matrix:
        path = path.resolve()
        if path not in self._matrices:
            matrix = load_matrix(path, self.settings.overrides)
            if self.settings.slo_overrides:
                cases = tuple(c.with_slo(self.settings.slo_overrides) for c in matrix.cases)
                matrix = Matrix(matrix.name, matrix.description, matrix.path, cases)
            self._matrices[path] = matrix
        return self._matrices[path]

    # -- running --------------------------------------------------------------------------
    def prepare(self) -> None:
        """Before the first case: clear the previous run's results (only then)."""
        if self._prepared:
            return
        self._prepared = True
        if self.results_dir.exists():
            shutil.rmtree(self.results_dir)
        self.summary_path.unlink(missing_ok=True)
        self.results_dir.mkdir(parents=True, exist_ok=True)

    def attach_endpoint(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.run_info.update({f"engine_{k}": v for k, v in endpoint.info.items()})
        self.run_info["base_url"] = endpoint.base_url
        self.run_info["model"] = endpoint.model
        if self.settings.engine not in ("sim", "external"):
            self.run_info.update(gpu_environment())
            profile = self.settings.profile
            if self.settings.image or (profile and profile.image):
                self.run_info["image"] = self.settings.image or (profile and profile.image)
        allure_report.write_environment(self.allure_dir, self.run_info)

    def run(
        self,
        case: Case,
        endpoint: Endpoint,
        tokenizer: Tokenizer,
        progress: ProgressSink | None = None,
        record: bool = True,
    ) -> CaseResult:
        """Measure one case and write its results; the verdict is in the returned result.

        With ``record=False`` (a point of a capacity search) nothing is written and the
        current Allure test is not relabelled: the caller reports the point.
        """
        self.prepare()
        if record:  # before the liveness check: a case the dead engine breaks is labelled too
            self._label(case, endpoint)
        endpoint.check_alive()
        spec = LoadSpec(
            base_url=endpoint.base_url,
            model=endpoint.model,
            endpoint=case.endpoint,
            concurrency=case.concurrency,
            request_rate=case.request_rate,
            burstiness=case.burstiness,
            ignore_eos=case.ignore_eos,
            request_timeout_s=case.request_timeout_s,
            stall_timeout_s=case.stall_timeout_s,
            api_key=endpoint.api_key,
            seed=case.seed,
        )
        raise_fd_limit((case.concurrency or 256) * 2 + 256)
        started = time.time()

        def on_progress(p: Progress) -> None:
            if progress is not None:
                progress(_progress_line(case, p, self.settings.label), False)

        scraper = None
        if endpoint.metrics and endpoint.metrics_path:
            url = endpoint.base_url + endpoint.metrics_path
            # The headers inline: a local holding the key would show in --showlocals.
            scraper = MetricsScraper(
                url, endpoint.metrics, headers=auth_headers(endpoint.api_key)
            ).start()
        loads = []
        try:
            for k in range(self.settings.repeat):
                # Fresh prompts each repeat: no prefix-cache hits from the previous run.
                seed = case.seed + 7919 * k
                prompts = random_prompts(
                    tokenizer, case.num_prompts, case.input_len, case.output_len,
                    case.range_ratio, seed,
                )  # fmt: skip
                warmup = random_prompts(
                    tokenizer, case.warmup_requests, case.input_len, min(case.output_len, 16),
                    case.range_ratio, seed + 1,
                )  # fmt: skip
                loads.append(run_load(spec, prompts, warmup, tokenizer, on_progress))
                if k + 1 < self.settings.repeat:
                    endpoint.check_alive()
        finally:
            server_metrics = scraper.stop() if scraper else []
        for k, load in enumerate(loads):  # keep request indexes unique across repeats
            for r in load.records:
                r.index += k * case.num_prompts
        records = [r for load in loads for r in load.records]
        limits = per_request_limits(case.slo)
        summary = summarize_repeats([load.records for load in loads], limits)
        client = ClientStats.worst([load.client for load in loads])
        result = CaseResult(
            case=case,
            engine=endpoint.engine,
            model=endpoint.model,
            summary=summary,
            records=records,
            client=client,
            started_at=started,
            time_scale=float(endpoint.info.get("time_scale") or 1.0),
            server_metrics=server_metrics,
        )
        try:
            endpoint.check_alive()
        except EngineDiedError as exc:
            result.verdict, result.problems = "error", [str(exc).splitlines()[0]]
            if record:
                self._record(result)
            raise
        problems = validity_problems(case, summary, client, self.settings.max_client_lag_ms)
        if summary["completed"] == 0 and summary["errors_by_class"]["connection_error"]:
            result.verdict = "error"
            result.problems = ["no request could reach the engine: " + _first_error(records)]
        elif problems:
            # Too few samples for a percentile, but failed requests are facts: the error
            # rate is judged, or failures that thin the sample would hide behind "invalid".
            result.breaches = _error_rate_breach(case, summary, client, self.settings)
            result.verdict = "fail" if result.breaches else "invalid"
            result.problems = problems
        else:
            result.breaches = check(summary, case.slo)
            if self.settings.baseline is not None:  # worse than last time fails like an SLO
                from slogate.report.baseline import regressions

                result.breaches += regressions(result, self.settings.baseline)
            result.verdict = "fail" if result.breaches else "pass"
        if record:
            self._record(result)
        if progress is not None:
            progress(_final_line(result, self.settings.label), True)
        return result

    def search_capacity(
        self,
        target: CapacityTarget,
        endpoint: Endpoint,
        tokenizer: Tokenizer,
        progress: ProgressSink | None = None,
    ) -> tuple[CapacityResult, dict[str, Any]]:
        """Find the highest load meeting the SLOs; writes capacity.csv and capacity/*.json."""
        self.prepare()
        allure_report.label_capacity(target, endpoint.engine, endpoint.model)

        def measure(load: float) -> tuple[str, dict[str, Any]]:
            result = self.run(target.case(load), endpoint, tokenizer, progress, record=False)
            return result.verdict, result.summary

        result = capacity_search(
            measure,
            target.low,
            target.high,
            integer=target.kind == "concurrency",
            resolution=target.resolution,
        )
        verdict = "pass"
        if result.capacity is None or (
            target.require is not None and result.capacity < target.require
        ):
            verdict = "fail"
        data = capacity_json(target, result, endpoint.engine, endpoint.model, verdict)
        write_capacity(self.reports_dir, data)
        with contextlib.suppress(Exception):  # Allure is an extra; never lose a result to it
            allure_report.attach_capacity(data, history_table(data))
        return result, data

    def _label(self, case: Case, endpoint: Endpoint) -> None:
        allure_report.label_case(
            case.id,
            endpoint.engine,
            endpoint.model,
            {
                "concurrency": case.concurrency,
                "request_rate": case.request_rate,
                "input_len": case.input_len,
                "output_len": case.output_len,
            },
        )

    def _record(self, result: CaseResult) -> None:
        self.results = [r for r in self.results if r.case.id != result.case.id] + [result]
        info = dict(self.run_info, tokenizer=self.run_info.get("tokenizer"))
        write_case(self.results_dir, result, info)
        write_summary(self.summary_path, self.results_dir)
        from slogate.report.sweep import write_sweep_report

        # summary.md is cheap to refresh per case; the charts are drawn at session finish.
        with contextlib.suppress(Exception):  # extras; never lose a result to them
            write_sweep_report(self.reports_dir, charts=False)
        with contextlib.suppress(Exception):  # Allure is an extra; never lose a result to it
            allure_report.attach_case(result, result_json(result, info), self.results_dir)

    # -- pytest hooks ---------------------------------------------------------------------
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[Any]) -> None:
        """A test the engine broke (at start, in a fixture, or mid-case) gets the log tail.

        Runs inside allure-pytest's report hook, while the test's Allure result is open,
        so the attachment lands on that test, fixture-setup errors included.
        """
        from slogate.errors import InfrastructureError

        if call.excinfo is None or not call.excinfo.errisinstance(InfrastructureError):
            return
        process = self.endpoint.process if self.endpoint else None
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("case") if callspec else None
        with contextlib.suppress(Exception):  # Allure is an extra
            if call.when == "setup" and isinstance(case, Case):
                # The case never ran, so it was never labelled: label it here, or the
                # engine failure would sit outside the case's history and behaviours tree.
                allure_report.label_pending_case(
                    case, self.settings.engine, self.settings.served_model
                )
            allure_report.attach_engine_log(
                str(call.excinfo.value), process.log_path if process else None
            )

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Draw the sweep charts, rewrite summary.md, and show both in Allure."""
        from slogate.report.sweep import write_sweep_report

        if hasattr(session.config, "workerinput"):
            return  # pytest-xdist: the controller draws once, from every worker's files
        alluredir = getattr(session.config.option, "allure_report_dir", None)
        if alluredir and not (Path(alluredir) / "categories.json").exists():
            # The engine never came up (attach_endpoint writes these): the report still
            # needs the categories that file its failures under engine trouble.
            allure_report.write_environment(Path(alluredir), self.run_info)
        # Each engine configuration's reports, of this run only: one whose engine never
        # started ran no case, and its files on disk are an earlier run's (under xdist the
        # workers ran the cases, so the controller trusts the files).
        xdist = session.config.pluginmanager.hasplugin("dsession")
        ran = {s.reports_dir for s in (self, *self.children.values()) if s._prepared}
        for variant in self.variants:
            reports = variant.reports_dir
            if not (xdist or reports in ran) or not any(
                (reports / "results").glob("serving_benchmark_*.json")
            ):
                continue
            write_sweep_report(reports)
            if alluredir:
                with contextlib.suppress(Exception):  # Allure is an extra
                    allure_report.attach_sweep_summary(Path(alluredir), reports)
        self._compare_variants()

    def _compare_variants(self) -> None:
        """Two engine configurations in one run: write their comparison (reports/compare/)."""
        if len(self.variants) != 2:
            return
        from slogate.report import compare

        dirs = [v.reports_dir for v in self.variants]
        if not all(any((d / "results").glob("serving_benchmark_*.json")) for d in dirs):
            return
        comparison = compare.build(dirs[0], dirs[1], [v.label for v in self.variants])
        compare.write(comparison, self.reports_dir / "compare")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for child in self.children.values():
            child.pytest_terminal_summary(terminalreporter)
        if len(self.variants) == 2 and (self.reports_dir / "compare" / "compare.md").exists():
            terminalreporter.write_line(
                f"comparison: {self.reports_dir / 'compare' / 'compare.md'}"
            )
        if not self.results:
            return
        tr = terminalreporter
        tr.section(f"slogate {self.settings.label}".strip())
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
        tr.write_line(
            f"{len(self.results)} case(s): "
            + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        )
        tr.write_line(f"summary:   {self.summary_path}")
        tr.write_line(f"per case:  {self.results_dir}/serving_benchmark_*.json")
        tr.write_line(f"requests:  {self.results_dir / 'requests'}/*.requests.jsonl")
        if (self.reports_dir / "summary.md").exists():
            tr.write_line(f"tables:    {self.reports_dir / 'summary.md'}")
        if any((self.reports_dir / "charts").glob("sweep_*.png")):
            tr.write_line(f"charts:    {self.reports_dir / 'charts'}/sweep_*.png")
        tr.write_line(f"allure:    {self.allure_dir}")
        tr.write_line(f"html:      python -m slogate report --reports-dir {self.reports_dir}")
        if self.settings.baseline is not None:
            regressed = [
                r for r in self.results if any(b.name.startswith("regression:") for b in r.breaches)
            ]
            tr.write_line(
                f"baseline:  {self.settings.baseline}: {len(regressed)} case(s) regressed"
            )
        if self.endpoint and self.endpoint.process:
            tr.write_line(f"engine log: {self.endpoint.process.log_path}")


def _progress_line(case: Case, p: Progress, label: str = "") -> str:
    rate = p.approx_output_tokens / p.elapsed_s if p.elapsed_s > 0 else 0.0
    name = f"{label} {case.id}" if label else case.id
    return (
        f"  {name:<22} {p.done:>5}/{p.total:<5} requests  {p.errors} errors  "
        f"~{rate:,.0f} out tok/s  {p.elapsed_s:5.1f}s"
    )


def _final_line(r: CaseResult, label: str = "") -> str:
    s = r.summary
    ttft = s["mean_ttft_ms"]
    tpot = s["mean_tpot_ms"]
    name = f"{label} {r.case.id}" if label else r.case.id
    return (
        f"  {name:<22} {s['completed']:>5}/{s['num_prompts']:<5} ok  "
        f"{s['failed']} failed  {s['output_throughput']:,.0f} out tok/s  "
        f"TTFT {ttft if ttft is None else round(ttft, 1)} ms  "
        f"TPOT {tpot if tpot is None else round(tpot, 2)} ms  -> {r.verdict}"
    )


def _error_rate_breach(
    case: Case, summary: dict[str, Any], client: ClientStats, settings: Settings
) -> list[Breach]:
    """The error-rate breach, when the only doubt about the case is its sample size.

    A client that could not keep up (lag, CPU, file limit) may have caused the failures
    itself, so then nothing is judged.
    """
    if "error_rate" not in case.slo:
        return []
    client_problems = validity_problems(
        replace(case, slo={}), summary, client, settings.max_client_lag_ms
    )
    if client_problems:
        return []
    return check(summary, {"error_rate": case.slo["error_rate"]})


def _first_error(records: list[Any]) -> str:
    return next((r.error for r in records if r.error), "unknown error")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@contextlib.contextmanager
def suspend_capture(config: pytest.Config) -> Iterator[None]:
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        yield
        return
    with capman.global_and_fixture_disabled():
        yield


def make_progress_sink(config: pytest.Config) -> ProgressSink:
    """Live progress on the terminal: one rewritten line on a tty, periodic lines otherwise."""
    tr = config.pluginmanager.getplugin("terminalreporter")
    tty = bool(tr and tr.isatty())
    last = [0.0]

    def sink(line: str, final: bool) -> None:
        if tr is None or config.option.verbose < 0:
            return
        now = time.monotonic()
        if not final and not tty and now - last[0] < 10:
            return
        last[0] = now
        with suspend_capture(config):
            if tty:
                tr._tw.write("\r" + line.ljust(100)[:120], flush=True)
                if final:
                    tr._tw.write("\n")
            else:
                tr.write_line(line)

    return sink


__all__ = ["SlogateSession", "make_progress_sink"]
