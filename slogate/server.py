"""Engine process lifecycle shared by all engines: start, readiness, logs, teardown.

The engine runs in its own session (so its whole process group can be signalled), with
stdout and stderr going to a log file (never an undrained pipe).  Readiness is a probe
with a deadline, and the process is polled between probes: an engine that dies while
starting fails at once with the tail of its log, not after the timeout.  Teardown sends
SIGTERM to the group, waits a grace period, then SIGKILLs the group and any descendant
that left it.  A second Ctrl-C (or SIGTERM) waits until teardown is over, and an engine
still running when the interpreter exits is stopped then, so no engine outlives the run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from slogate.errors import EngineDiedError, EngineStartError


@dataclass(frozen=True)
class LogDiagnosis:
    """A known failure recognised in an engine log: what happened and what to try."""

    what: str
    hint: str

    def __str__(self) -> str:
        return f"{self.what}. {self.hint}"


#: A probe returns None when the engine is ready, else a short reason it is not (yet).
Probe = Callable[[], "str | None"]


def tail(path: Path, lines: int = 40, since: int = 0) -> str:
    """The last lines of a log file after byte ``since`` (empty if it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(since, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def listening_socket(host: str = "127.0.0.1") -> socket.socket:
    """A socket bound to a free port and listening: hand its fd to an engine that accepts one.

    Binding here and passing the open socket leaves no window in which another process
    could take the port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now, for engines that must bind it themselves.

    The port could be taken before the engine binds it; the caller recognises "address
    already in use" in the log and retries with another port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM back for the block; yields the signals that arrived.

    A teardown cut short by a second Ctrl-C would leave the engine running (holding the
    GPUs and the port for the next job); the caller decides what to do with the signal
    once the engine is gone.  Only the main thread can install handlers; elsewhere the
    block runs unprotected.
    """
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, lambda signum, _frame: pending.append(signum))
    try:
        yield pending
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


#: Engines started and not yet stopped, by id: the interpreter's exit stops them.
_RUNNING: dict[int, EngineProcess] = {}


@atexit.register
def _stop_leftovers() -> None:
    """Last resort: an interrupt that killed the session before teardown."""
    for process in list(_RUNNING.values()):
        with contextlib.suppress(BaseException):  # exiting anyway: stop the rest
            process.stop()


@dataclass
class EngineProcess:
    """A started engine; a context manager that always tears the process group down."""

    argv: Sequence[str]
    log_path: Path
    probe: Probe
    env: Mapping[str, str] | None = field(default=None, repr=False)  # may hold secrets
    startup_timeout_s: float = 600.0
    grace_s: float = 10.0
    pass_fds: Sequence[int] = ()
    diagnose: Callable[[str], LogDiagnosis | None] = lambda _log: None
    name: str = "engine"
    cwd: str | None = None
    stop_argv: Sequence[str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    # Where this start's output begins in the (appended) log: an earlier run's errors
    # must not be diagnosed as this one's.
    _log_offset: int = field(default=0, init=False)
    _descendants: dict[int, float] = field(default_factory=dict, init=False)

    def __enter__(self) -> EngineProcess:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"# slogate: starting {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                self.proc = subprocess.Popen(
                    list(self.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                    pass_fds=tuple(self.pass_fds),
                    cwd=self.cwd,
                )
            except OSError as exc:
                raise EngineStartError(
                    f"cannot start {self.name}: {exc} (command: {self.argv[0]})"
                ) from None
        _RUNNING[id(self)] = self

    def wait_ready(self) -> None:
        """Probe until ready; fail at once if the process exits, or at the deadline."""
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        reason = "no probe answered yet"
        delay = 0.1
        while True:
            self._remember_descendants()
            code = self.proc.poll()
            if code is not None:
                raise EngineStartError(self._failure(f"{self.name} exited with code {code}"))
            reason = self.probe() or ""
            if not reason:
                return
            if time.monotonic() > deadline:
                raise EngineStartError(
                    self._failure(
                        f"{self.name} was not ready after {self.startup_timeout_s:g} s "
                        f"(last probe: {reason})"
                    )
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def check_alive(self) -> None:
        """Raise ``EngineDiedError`` (with the log tail) if the engine has exited."""
        if self.proc is not None and (code := self.proc.poll()) is not None:
            raise EngineDiedError(self._failure(f"{self.name} died with exit code {code}"))

    def _failure(self, headline: str) -> str:
        log = tail(self.log_path, 200, since=self._log_offset)
        diagnosis = self.diagnose(log)
        parts = [headline]
        if diagnosis:
            parts.append(str(diagnosis))
        parts.append(f"log: {self.log_path}")
        parts.append("--- last lines of the log ---\n" + "\n".join(log.splitlines()[-30:]))
        return "\n".join(parts)

    def _remember_descendants(self) -> None:
        # Workers that call setsid() leave the process group; remember them by pid so
        # teardown can still reach them.
        if self.proc is None:
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self._descendants[child.pid] = child.create_time()

    def stop(self) -> None:
        """SIGTERM the group, wait ``grace_s``, then SIGKILL whatever is left.

        SIGINT/SIGTERM arriving meanwhile are held until the engine is gone, then raised
        as ``KeyboardInterrupt``.
        """
        if self.proc is None:
            return
        with deferred_interrupts() as pending:
            self._stop()
        if pending:
            raise KeyboardInterrupt(f"{signal.Signals(pending[0]).name} during engine teardown")

    def _stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self._remember_descendants()
        if self.stop_argv:
            # A container is not our child: stopping the docker client would leave it running.
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    list(self.stop_argv),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=self.grace_s + 30,
                )
        pgid = proc.pid  # start_new_session: the group id is the leader's pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=self.grace_s)
        except subprocess.TimeoutExpired:
            pass
        # Give the rest of the group a moment to follow the leader, then force it.
        end = time.monotonic() + min(self.grace_s, 5.0)
        while time.monotonic() < end and self._group_alive(pgid):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        for pid, created in self._descendants.items():
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                # Only our own descendants: the pid must not have been reused since.
                if p.create_time() == created:
                    p.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        # SIGKILL is asynchronous: wait until the processes are really gone, so the next
        # engine (or the next CI job) finds the port and the GPU memory free.
        end = time.monotonic() + 5.0
        while time.monotonic() < end and (self._group_alive(pgid) or self._any_descendant()):
            time.sleep(0.05)
        self.proc = None
        _RUNNING.pop(id(self), None)

    def _any_descendant(self) -> bool:
        for pid, created in self._descendants.items():
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                    return True
        return False

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        """True while a live (non-zombie) process remains in the group."""
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        for p in psutil.process_iter(["status"]):
            with contextlib.suppress(psutil.Error):
                if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.pid) == pgid:
                    return True
        return False
