"""Faults: the simulator breaks on demand, and the suite says what broke and keeps the rest.

The first tests drive the simulator's fault options directly; the others run real pytest
sessions of the suite against a faulty simulator (``--engine-args=...``) and check the
verdicts, messages, per-class counts, and the files left on disk.  The last ones check
that a crash while a report is being written never leaves a half-written file.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from slogate.report import files
from slogate.server import listening_socket
from slogate.sim.faults import Faults, Selector

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--lengths", "32x16", "--num-prompts", "6", "-p", "no:cacheprovider"]
BODY = {"model": "sim-model", "prompt": "a b c", "max_tokens": 8, "ignore_eos": True}

StartSim = Callable[..., tuple[subprocess.Popen[bytes], str]]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def allure_tests(reports: Path) -> dict[str, dict]:
    """Load id (c2) -> the case's Allure result."""
    out = {}
    for path in (reports / "allure-results").glob("*-result.json"):
        test = json.loads(path.read_text())
        out[test["name"].split("-")[0]] = test  # named c2-in32-out16, as slogate labels it
    return out


def allure_statuses(reports: Path) -> dict[str, str]:
    """Load id (c2) -> Allure status (passed, failed, broken)."""
    return {load: test["status"] for load, test in allure_tests(reports).items()}


@pytest.fixture
def start_sim() -> Iterator[StartSim]:
    """Start ``python -m slogate.sim`` with extra arguments; stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, ready: bool = True) -> tuple[subprocess.Popen[bytes], str]:
        sock = listening_socket()
        port = sock.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "slogate.sim", "--fd", str(sock.fileno()), *args],
            pass_fds=[sock.fileno()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        sock.close()
        started.append(proc)
        if ready:
            assert proc.stdout is not None
            while b"slogate-sim ready" not in proc.stdout.readline():
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        return proc, f"http://127.0.0.1:{port}"

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=10)


def stream(url: str, **extra: object) -> httpx.Response:
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}, **extra}
    return httpx.post(f"{url}/v1/completions", json=body, timeout=10)


# -- the simulator's faults ----------------------------------------------------------------


def test_selectors_are_deterministic() -> None:
    def picks(sel: str, seed: int = 0) -> list[int]:
        faults = Faults(selectors={"http_500": Selector.parse(sel)}, seed=seed)
        return [n for n, fault in (faults.next_request() for _ in range(200)) if fault]

    assert picks("3")[:4] == [3, 6, 9, 12]
    assert picks("0.25") == picks("0.25")  # same seed, same requests
    assert picks("0.25") != picks("0.25", seed=1)
    assert 30 <= len(picks("0.25")) <= 70
    for bad in ("0", "1.5", "-2", "x", "1.0", "inf", "nan", "²"):
        with pytest.raises(argparse.ArgumentTypeError, match="every Nth request"):
            Selector.parse(bad)


def test_first_listed_fault_wins_and_others_keep_their_picks() -> None:
    faults = Faults(selectors={"stall": Selector(every=2), "http_500": Selector(every=3)})
    got = [faults.next_request()[1] for _ in range(6)]
    assert got == [None, "stall", "http_500", "stall", None, "http_500"]


def test_http_errors_every_nth_request(start_sim: StartSim) -> None:
    _, url = start_sim("--http-500", "2", "--http-429", "3")
    codes = [stream(url) for _ in range(6)]
    assert [r.status_code for r in codes] == [200, 500, 429, 500, 200, 500]
    assert codes[2].headers["Retry-After"] == "1"
    assert codes[1].json()["type"] == "InternalServerError"


def test_malformed_and_short_streams(start_sim: StartSim) -> None:
    _, url = start_sim("--malformed-sse", "1")
    text = stream(url).text
    assert '"choices":[{"text\n\n' in text and text.endswith("data: [DONE]\n\n")

    _, url = start_sim("--short-output", "1")
    events = [json.loads(e[6:]) for e in stream(url).text.split("\n\n") if e[6:7] == "{"]
    assert events[-1]["usage"]["completion_tokens"] == 4  # half of max_tokens=8
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_stalled_stream_stops_mid_way_and_never_ends(start_sim: StartSim) -> None:
    _, url = start_sim("--stall", "1")
    body = {**BODY, "stream": True}
    received = b""
    with pytest.raises(httpx.ReadTimeout):
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=1.5) as resp:
            for chunk in resp.iter_raw():
                received += chunk
    assert received.count(b'"text":" tok"') == 4  # half of the 8 tokens, then silence
    assert b"[DONE]" not in received


def test_crash_after_n_requests_kills_the_process(start_sim: StartSim) -> None:
    proc, url = start_sim("--crash-after", "2")
    assert stream(url).status_code == 200 and stream(url).status_code == 200
    with pytest.raises(httpx.HTTPError):
        stream(url)
    assert proc.wait(5) == -9  # SIGKILL, as the OOM killer would
    assert proc.stderr is not None
    assert b"injected fault --crash-after 2: request 3 arrived" in proc.stderr.read()


def test_slow_start_then_ready(start_sim: StartSim) -> None:
    proc, url = start_sim("--slow-start", "1", ready=False)
    t0 = time.monotonic()
    assert proc.stdout is not None and b"injecting faults" in proc.stdout.readline()
    assert httpx.get(f"{url}/health").status_code == 503
    assert b"slogate-sim ready" in proc.stdout.readline()
    assert time.monotonic() - t0 >= 0.8
    assert httpx.get(f"{url}/health").status_code == 200


@pytest.mark.parametrize(("kind", "line"), [("oom", b"torch.OutOfMemoryError: CUDA out of memory"),
                                            ("nccl", b"NCCL error in:")])  # fmt: skip
def test_crash_on_start(start_sim: StartSim, kind: str, line: bytes) -> None:
    proc, _ = start_sim("--crash-on-start", kind, ready=False)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1 and line in err


# -- the suite under each fault -------------------------------------------------------------


def test_failed_requests_are_counted_by_class_and_judged_by_error_rate(
    project: pytest.Pytester,
) -> None:
    # 13 requests (1 warm-up): 500 hits 4, 8, 12; 429 hits 5, 10; the malformed stream
    # is 6; the short one 7 (every 6th and 7th, less those 500 took first).
    faults = "--http-500 4 --http-429 5 --malformed-sse 6 --short-output 7"
    res = project.runpytest_subprocess(
        "-m", "smoke", *FAST, "--num-prompts", "12", "--concurrency", "2",
        f"--engine-args={faults}",
    )  # fmt: skip
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*AssertionError: c2-in32-out16: 1 SLO(s) broken*",
                              "*- error_rate = 0.5833, limit <= 0*"])  # fmt: skip
    reports = project.path / "reports"
    (row,) = read_csv(reports / "summary.csv")
    assert (row["verdict"], row["broken_slos"], row["failed"]) == ("fail", "error_rate", "7")
    assert (row["http_error"], row["stream_error"], row["truncated"]) == ("5", "1", "1")
    result = json.loads((reports / "results" / "serving_benchmark_2_32_16.json").read_text())
    assert result["slogate"]["errors_by_class"] == {
        "http_error": 5, "connection_error": 0, "timeout": 0,
        "stream_error": 1, "empty": 0, "truncated": 1,
    }  # fmt: skip
    errors = result["errors"]
    assert sum(e.startswith("HTTP 500:") for e in errors) == 3
    assert sum(e.startswith("HTTP 429:") for e in errors) == 2
    assert any(e.startswith("malformed stream: event is not JSON") for e in errors)
    assert "8 output tokens, 16 asked with ignore_eos" in errors
    assert allure_statuses(reports) == {"c2": "failed"}


def test_stalled_stream_ends_at_its_stall_timeout(project: pytest.Pytester) -> None:
    matrix = project.path / "matrices" / "stall.yaml"
    matrix.write_text(
        "defaults: {num_prompts: 6, request_timeout_s: 60, stall_timeout_s: 1,\n"
        "           slo: {median_ttft_ms: 2000, error_rate: 0}}\n"
        "sweep:\n  - lengths: [32x16]\n    concurrency: [2]\n"
    )
    t0 = time.monotonic()
    res = project.runpytest_subprocess(
        "-p", "no:cacheprovider", "-m", "smoke", "--matrix", str(matrix),
        "--engine-args=--stall 3",
    )  # fmt: skip
    assert time.monotonic() - t0 < 30  # the stalls end at 1 s, not at the 60 s deadline
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*- error_rate = 0.3333, limit <= 0*"])
    result = json.loads(
        (project.path / "reports" / "results" / "serving_benchmark_2_32_16.json").read_text()
    )
    # Requests 3 and 6 stall; the connection they leave is not reused by the next request.
    assert result["slogate"]["errors_by_class"]["timeout"] == 2
    assert result["failed"] == 2
    assert result["errors"] == ["timeout: stream stalled, nothing received for 1 s"] * 2
    assert 1.0 < result["duration"] < 10


def test_engine_dying_mid_sweep_breaks_this_and_later_cases_and_keeps_earlier_ones(
    project: pytest.Pytester,
) -> None:
    # 7 requests per case: c1 is served, request 11 (c2's third) kills the engine.
    t0 = time.monotonic()
    res = project.runpytest_subprocess(
        "-m", "smoke", *FAST, "--concurrency", "1,2,4", "--engine-args=--crash-after 10"
    )
    assert time.monotonic() - t0 < 60
    res.assert_outcomes(passed=1, failed=2)
    res.stdout.fnmatch_lines(
        [
            "*EngineDiedError: sim died with exit code -9*",
            "*--- last lines of the log ---*",
            "*injected fault --crash-after 10: request 11 arrived*",
        ]
    )
    assert "AssertionError" not in res.stdout.str()  # broken, never an SLO failure
    reports = project.path / "reports"
    assert allure_statuses(reports) == {"c1": "passed", "c2": "broken", "c4": "broken"}
    for load in ("c2", "c4"):
        attachments = [a["name"] for a in allure_tests(reports)[load]["attachments"]]
        assert "engine log (tail)" in attachments
    rows = {r["concurrency"]: r for r in read_csv(reports / "summary.csv")}
    assert rows["1"]["verdict"] == "pass" and rows["1"]["completed"] == "6"
    assert rows["2"]["verdict"] == "error" and "4" not in rows  # c4 never ran
    kept = json.loads((reports / "results" / "serving_benchmark_1_32_16.json").read_text())
    assert kept["completed"] == 6 and kept["slogate"]["verdict"] == "pass"
    assert (reports / "results" / "requests" / "serving_benchmark_1_32_16.requests.jsonl").stat()
    assert not list(reports.rglob("*.tmp"))


def test_engine_crashing_at_start_fails_at_once_with_the_diagnosis(
    project: pytest.Pytester,
) -> None:
    t0 = time.monotonic()
    res = project.runpytest_subprocess(
        "-m", "smoke", *FAST, "--startup-timeout", "300",
        "--engine-args=--slow-start 1 --crash-on-start oom",
    )  # fmt: skip
    assert time.monotonic() - t0 < 30  # not the 300 s timeout
    res.assert_outcomes(errors=2)
    res.stdout.fnmatch_lines(
        [
            "*EngineStartError: sim exited with code 1*",
            "*CUDA ran out of memory. lower --gpu-memory-utilization*",
            "*torch.OutOfMemoryError: CUDA out of memory*",
        ]
    )


def test_engine_slower_to_start_than_the_timeout(project: pytest.Pytester) -> None:
    t0 = time.monotonic()
    res = project.runpytest_subprocess(
        "-m", "smoke", *FAST, "--startup-timeout", "2", "--engine-args=--slow-start 60"
    )
    assert time.monotonic() - t0 < 30
    res.assert_outcomes(errors=2)
    res.stdout.fnmatch_lines(
        ["*EngineStartError: sim was not ready after 2 s (last probe: GET http*/health: HTTP 503)"]
    )


# -- atomic writes ---------------------------------------------------------------------------


@pytest.mark.parametrize("crash", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_crash_while_writing_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: BaseException
) -> None:
    path = tmp_path / "results" / "serving_benchmark_1_32_16.json"
    files.write_json(path, {"completed": 6})
    real_fdopen = os.fdopen

    class HalfWritten:
        """A file that takes half the data, then fails (a full disk, a Ctrl-C)."""

        def __init__(self, fd: int, mode: str) -> None:
            self.fh = real_fdopen(fd, mode)

        def __enter__(self) -> HalfWritten:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

        def write(self, data: bytes) -> int:
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            raise crash

    monkeypatch.setattr(files.os, "fdopen", HalfWritten)
    with pytest.raises(type(crash)):
        files.write_json(path, {"completed": 7, "padding": "x" * 1000})
    monkeypatch.undo()

    def serializer_fails(obj: object) -> object:
        raise crash

    monkeypatch.setattr(files, "_default", serializer_fails)
    with pytest.raises(type(crash)):
        files.write_json(path, {"completed": 8, "unserialisable": object()})

    assert json.loads(path.read_text()) == {"completed": 6}
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind


#: Files of slogate/ allowed to write without the atomic writer, and why.
NOT_REPORTS = {
    "report/files.py": "the atomic writer itself",
    "server.py": "the engine's log, appended while the engine runs",
    "engines/ollama.py": "the log of `ollama create`",
    "engines/tinymodel.py": "a test model for the vLLM CPU tests",
    "engines/tinygguf.py": "a test model for the llama.cpp tests",
    "report/html.py": "copies Allure's history for `allure generate`",
}
DIRECT_WRITE = re.compile(
    r"""\bopen\([^)]*["'][wax][bt+]*["']|(?<!files)\.write_(?:text|bytes)\(|\bjson\.dump\("""
    r"""|shutil\.copy"""
)


def test_every_report_writer_goes_through_the_atomic_writer() -> None:
    """Results are written only by ``slogate.report.files``: a temp name, then a rename."""
    root = ROOT / "slogate"
    offenders = sorted(
        f"{path.relative_to(root).as_posix()}: {m.group(0)}"
        for path in root.rglob("*.py")
        if path.relative_to(root).as_posix() not in NOT_REPORTS
        for m in DIRECT_WRITE.finditer(path.read_text(encoding="utf-8"))
    )
    assert offenders == []
    # The pattern does find direct writes: it flags the allowed ones.
    assert DIRECT_WRITE.search((root / "server.py").read_text(encoding="utf-8"))
