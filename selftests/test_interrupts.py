"""Interrupts: Ctrl-C or SIGTERM mid-case stops the run, tears the engine down, keeps results.

A gate killed by its CI job (SIGTERM) or by a person (Ctrl-C, sometimes twice) must leave
no engine behind (it holds the GPUs and the port the next job needs) and must keep the
cases it finished.  The session tests start the suite as a real process, wait until the
first case is on disk and the second one's load is running, and signal it.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from slogate import server
from slogate.server import EngineProcess, deferred_interrupts

#: A quick first case, then one that would run for minutes.
SLOW_SWEEP = """\
defaults: {ignore_eos: true, warmup_requests: 1, slo: {error_rate: 0}}
sweep:
  - lengths: [32x16]
    concurrency: [1]
    num_prompts: 4
  - lengths: [32x16]
    concurrency: [2]
    num_prompts: 5000
"""


def processes_with(marker: str) -> list[psutil.Process]:
    """Live simulators whose command line holds ``marker`` (this test's engine only)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if (
            "slogate.sim" in cmdline
            and marker in cmdline
            and proc.info["status"] != psutil.STATUS_ZOMBIE
        ):
            found.append(proc)
    return found


def alive(pid: int, created: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize(
    ("sig", "hammer"),
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["ctrl-c", "sigterm", "ctrl-c-hammered"],
)
def test_interrupt_mid_case_stops_everything_and_keeps_finished_cases(
    project: pytest.Pytester, sig: signal.Signals, hammer: bool
) -> None:
    """``hammer``: Ctrl-C again every 0.2 s until it exits, whatever it is doing then."""
    matrix = project.path / "matrices" / "slow.yaml"
    matrix.write_text(SLOW_SWEEP)
    # The served model name is the engine's --model: it marks this session's simulator.
    marker = f"sim-interrupt-{uuid.uuid4().hex[:8]}"
    log = (project.path / "pytest.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "smoke",
         "--matrix", str(matrix), "--model", marker],
        cwd=project.path, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    reports = project.path / "reports"
    first = reports / "results" / "serving_benchmark_1_32_16.json"
    try:
        deadline = time.monotonic() + 60
        while not first.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "first case not written"
            time.sleep(0.05)
        time.sleep(0.5)  # the second case's load is under way
        engines = [(p.pid, p.create_time()) for p in processes_with(marker)]
        assert len(engines) == 1
        t0 = time.monotonic()
        proc.send_signal(sig)
        while hammer and proc.poll() is None and time.monotonic() - t0 < 30:
            time.sleep(0.2)
            proc.send_signal(sig)
        code = proc.wait(30)
        took = time.monotonic() - t0
    finally:
        log.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for leftover in processes_with(marker):  # this test's engine: never leave it behind
            leftover.kill()
    output = (project.path / "pytest.log").read_text()
    assert took < 10, output
    # pytest's "interrupted" status; more Ctrl-C may end the interpreter by SIGINT.
    assert code in ((2, -signal.SIGINT) if hammer else (2,)), output
    assert "KeyboardInterrupt" in output
    assert not any(alive(pid, created) for pid, created in engines)
    with (reports / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["concurrency"], r["verdict"], r["completed"]) for r in rows] == [("1", "pass", "4")]
    assert [p.name for p in (reports / "results").glob("*.json")] == [first.name]
    # No temporary file of slogate's writer (``.NAME.XXXX.tmp``); allure-pytest's own
    # (``NAME.tmp``) may be left when a Ctrl-C lands inside its writer.
    assert not list(reports.rglob(".*.tmp"))


def test_signals_wait_while_deferred() -> None:
    previous = signal.getsignal(signal.SIGINT)
    with deferred_interrupts() as pending:
        os.kill(os.getpid(), signal.SIGINT)  # would be a KeyboardInterrupt right here
        time.sleep(0.05)
    assert pending == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is previous


def engine_ignoring_sigterm(tmp_path: Path) -> EngineProcess:
    """An engine slow to stop: it ignores SIGTERM, so teardown waits out its grace."""
    script = tmp_path / "engine.py"
    script.write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', flush=True)\ntime.sleep(120)\n"
    )
    process = EngineProcess(
        [sys.executable, str(script)], tmp_path / "e.log", probe=lambda: None, grace_s=0.5
    )
    process.start()
    deadline = time.monotonic() + 10
    while b"up" not in (tmp_path / "e.log").read_bytes():  # its handler is installed
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return process


def test_ctrl_c_during_teardown_waits_until_the_engine_is_gone(tmp_path: Path) -> None:
    process = engine_ignoring_sigterm(tmp_path)
    pid = process.pid
    assert pid is not None
    created = psutil.Process(pid).create_time()
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt, match="SIGINT during engine teardown"):
        process.stop()  # grace 0.5 s, then SIGKILL; the Ctrl-C comes at 0.2 s
    timer.join()
    assert not alive(pid, created)


def test_an_engine_left_running_is_stopped_when_the_interpreter_exits(tmp_path: Path) -> None:
    process = engine_ignoring_sigterm(tmp_path)
    pid = process.pid
    assert pid is not None
    created = psutil.Process(pid).create_time()
    server._stop_leftovers()  # what atexit runs
    assert not alive(pid, created)
    assert process.proc is None
