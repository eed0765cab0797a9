"""The browsable HTML report: Allure's command-line tool turns allure-results into a site.

``python -m slogate report`` runs ``allure generate`` on ``reports/allure-results`` into
``reports/allure-report``, first carrying the previous report's ``history/`` over so the
trend charts and each case's history accumulate run after run.  The tool is the npm
package ``allure-commandline`` (Allure 2, a Java program: Java 8+ must be installed),
pinned and installed into the project's ``.tools/`` by ``.ci/run``; nothing is fetched
at run time.  The generated site loads its data with XHR, so it is viewed over HTTP:
``serve`` is a static server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import slogate
from slogate.errors import SlogateError

ALLURE_PACKAGE = "allure-commandline"
ALLURE_VERSION = "2.46.1"
TOOLS_DIR = ".tools"
INSTALL_COMMAND = f"npm install --prefix {TOOLS_DIR} {ALLURE_PACKAGE}@{ALLURE_VERSION}"
#: Generating a few hundred cases takes seconds; this only stops a hung JVM.
GENERATE_TIMEOUT_S = 600


class ReportError(SlogateError):
    """The HTML report could not be built; the message says what to do."""


def project_roots() -> list[Path]:
    """Where a project-local ``.tools/`` may be: the current directory, then the checkout."""
    roots = [Path.cwd(), Path(slogate.__file__).resolve().parents[1]]
    return list(dict.fromkeys(r.resolve() for r in roots))


def find_allure() -> Path | None:
    """``$SLOGATE_ALLURE``, else ``.tools/node_modules/.bin/allure``, else ``allure`` on PATH."""
    explicit = os.environ.get("SLOGATE_ALLURE")
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    for root in project_roots():
        candidate = root / TOOLS_DIR / "node_modules" / ".bin" / "allure"
        if candidate.is_file():
            return candidate
    found = shutil.which("allure")
    return Path(found) if found else None


def _missing_tool() -> ReportError:
    return ReportError(
        "the Allure command-line tool is not installed; from the project directory run:\n"
        f"    {INSTALL_COMMAND}\n"
        "(Allure 2 runs on Java 8 or later: apt-get install default-jre-headless), "
        "or point SLOGATE_ALLURE at an allure executable"
    )


def carry_history(results_dir: Path, report_dir: Path) -> bool:
    """Copy the last report's ``history/`` into the results, where ``allure generate``
    picks it up (``generate --clean`` deletes the old report first)."""
    source = report_dir / "history"
    if not source.is_dir():
        return False
    target = results_dir / "history"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    return True


def generate(results_dir: Path, report_dir: Path, allure: Path | None = None) -> Path:
    """Build the site; returns its ``index.html``.  Raises ``ReportError`` with the fix."""
    if not any(results_dir.glob("*-result.json")):
        raise ReportError(
            f"{results_dir}: no Allure results; run the suite first (pytest -m smoke), "
            f"or give --reports-dir DIR of a run"
        )
    tool = allure or find_allure()
    if tool is None:
        raise _missing_tool()
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise ReportError(
            "Allure 2 needs Java 8 or later and none was found (no java on PATH, no "
            "JAVA_HOME): apt-get install default-jre-headless"
        )
    carry_history(results_dir, report_dir)
    argv = [str(tool), "generate", "--clean", "-o", str(report_dir), str(results_dir)]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=GENERATE_TIMEOUT_S, check=False
        )
    except OSError as exc:
        raise ReportError(f"cannot run {tool}: {exc}; reinstall it: {INSTALL_COMMAND}") from None
    except subprocess.TimeoutExpired:
        raise ReportError(f"allure generate took over {GENERATE_TIMEOUT_S} s; gave up") from None
    index = report_dir / "index.html"
    if proc.returncode != 0 or not index.is_file():
        out = (proc.stdout + proc.stderr).strip().splitlines()[-20:]
        raise ReportError(f"allure generate failed (exit {proc.returncode}): " + "\n".join(out))
    return index


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        pass


@contextlib.contextmanager
def serve(directory: Path, port: int = 0) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
