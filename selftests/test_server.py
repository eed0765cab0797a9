"""Engine process lifecycle: fail fast on a dead engine, tear down the whole tree."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from slogate.engines.base import COMMON_FAILURES, diagnose_with
from slogate.errors import EngineDiedError, EngineStartError
from slogate.server import EngineProcess, listening_socket


def script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "engine.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def test_dead_engine_fails_at_once_with_log_tail(tmp_path: Path) -> None:
    argv = script(
        tmp_path,
        """
        import sys
        print("loading weights", flush=True)
        print("OSError: [Errno 98] Address already in use", flush=True)
        sys.exit(3)
    """,
    )
    proc = EngineProcess(
        argv,
        tmp_path / "e.log",
        probe=lambda: "not yet",
        startup_timeout_s=60,
        diagnose=lambda log: diagnose_with(COMMON_FAILURES, log),
    )
    t0 = time.monotonic()
    with pytest.raises(EngineStartError) as info:
        with proc:
            pass
    assert time.monotonic() - t0 < 10  # not the 60 s timeout
    msg = str(info.value)
    assert "exited with code 3" in msg
    assert "the port is already in use" in msg
    assert "loading weights" in msg  # the log tail


def test_never_ready_times_out(tmp_path: Path) -> None:
    argv = script(tmp_path, "import time\ntime.sleep(60)\n")
    proc = EngineProcess(argv, tmp_path / "e.log", probe=lambda: "HTTP 503", startup_timeout_s=1)
    with pytest.raises(EngineStartError, match=r"not ready after 1 s \(last probe: HTTP 503\)"):
        with proc:
            pass
    assert proc.proc is None


def test_teardown_reaches_the_whole_tree(tmp_path: Path) -> None:
    # A child that ignores SIGTERM and a grandchild that left the process group.
    pids = tmp_path / "pids"
    argv = script(
        tmp_path,
        f"""
        import os, signal, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
        escaped = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                   start_new_session=True)
        open({str(pids)!r}, "w").write(f"{{child.pid}} {{escaped.pid}}")
        time.sleep(120)
    """,
    )
    ready = lambda: None if pids.exists() and pids.read_text() else "starting"  # noqa: E731
    proc = EngineProcess(argv, tmp_path / "e.log", probe=ready, grace_s=1)
    with proc:
        child, escaped = map(int, pids.read_text().split())
        leader = proc.pid
        assert psutil.pid_exists(child) and psutil.pid_exists(escaped)
        proc.wait_ready()  # records the descendants again
    for pid in (leader, child, escaped):
        assert not _alive(pid), f"pid {pid} survived teardown ({(leader, child, escaped)})"


def test_check_alive_raises_with_log(tmp_path: Path) -> None:
    argv = script(tmp_path, "print('CUDA out of memory. Tried to allocate', flush=True)\n")
    proc = EngineProcess(
        argv,
        tmp_path / "e.log",
        probe=lambda: None,
        diagnose=lambda log: diagnose_with(COMMON_FAILURES, log),
    )
    proc.start()
    try:
        proc.proc.wait(10)
        with pytest.raises(EngineDiedError, match="CUDA ran out of memory"):
            proc.check_alive()
    finally:
        proc.stop()


def test_listening_socket_is_bound_before_the_engine_starts() -> None:
    sock = listening_socket()
    try:
        port = sock.getsockname()[1]
        assert port > 0 and sock.get_inheritable()
    finally:
        sock.close()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
