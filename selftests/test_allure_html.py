"""python -m slogate report: the Allure HTML report, looked at in headless Chromium.

The report is built by the real Allure command-line tool (installed by .ci/run into
.tools/), served from 127.0.0.1 (its pages load their data over HTTP), and driven through
the Chrome DevTools protocol with aiohttp's websocket client: the checks read the page a
person would see after the JavaScript ran, and click open an attachment.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from slogate.report import html

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is needed to look at the report: apt-get install chromium")
    return path


@contextmanager
def browser() -> Iterator[int]:
    """Headless Chromium with a fresh profile; yields its DevTools port."""
    profile = tempfile.mkdtemp(prefix="slogate-chromium-")
    proc = subprocess.Popen(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--window-size=1400,1800", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None, "chromium exited at start"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        yield int(port_file.read_text().split()[0])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """Just enough of the DevTools protocol: navigate, evaluate, wait, screenshot."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.last_id = ws, 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.last_id += 1
        await self.ws.send_json({"id": self.last_id, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive_json(), 30)
            if msg.get("id") == self.last_id:
                assert "error" not in msg, msg
                return msg["result"]

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait(self, expression: str, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := await self.js(expression):
                return value
            await asyncio.sleep(0.2)
        raise AssertionError(f"never true in the page: {expression}\n{await self.text()}")

    async def goto(self, url: str, shows: str) -> str:
        """Open ``url`` and wait until the page shows ``shows``; returns its visible text."""
        await self.call("Page.navigate", url=url)
        await self.wait(f"document.body && document.body.innerText.includes({json.dumps(shows)})")
        await asyncio.sleep(0.5)  # let the rest of the panel render
        return await self.text()

    async def text(self) -> str:
        return str(await self.js("document.body ? document.body.innerText : ''"))

    async def click(self, label: str) -> None:
        """Click the innermost element whose text is exactly ``label``."""
        clicked = await self.js(
            f"""(() => {{
                const hits = [...document.querySelectorAll('*')]
                    .filter(e => e.textContent.trim() === {json.dumps(label)});
                if (!hits.length) return false;
                hits[hits.length - 1].click();
                return true;
            }})()"""
        )
        assert clicked, f"nothing labelled {label!r} on the page"

    async def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode((await self.call("Page.captureScreenshot", format="png"))["data"])
        path.write_bytes(data)
        return data


async def open_page(port: int) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    session = aiohttp.ClientSession()
    async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
        targets = await resp.json()
    url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
    return session, await session.ws_connect(url, max_msg_size=0)


def run_cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slogate", *args],
        cwd=cwd, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )  # fmt: skip


def test_missing_tool_names_the_install_command(tmp_path: Path) -> None:
    results = tmp_path / "reports" / "allure-results"
    results.mkdir(parents=True)
    res = run_cli(tmp_path, "report")
    assert res.returncode == 2 and "no Allure results" in res.stderr
    (results / "x-result.json").write_text("{}")
    res = run_cli(tmp_path, "report", SLOGATE_ALLURE=str(tmp_path / "no-such-allure"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "the Allure command-line tool is not installed" in res.stderr
    assert f"    {html.INSTALL_COMMAND}\n" in res.stderr
    assert html.INSTALL_COMMAND == "npm install --prefix .tools allure-commandline@2.46.1"


def test_history_is_carried_into_the_results(tmp_path: Path) -> None:
    report, results = tmp_path / "allure-report", tmp_path / "allure-results"
    assert not html.carry_history(results, report)
    (report / "history").mkdir(parents=True)
    (report / "history" / "history.json").write_text('{"abc": {}}')
    (results / "history").mkdir(parents=True)
    (results / "history" / "stale.json").write_text("{}")
    assert html.carry_history(results, report)
    assert sorted(p.name for p in (results / "history").iterdir()) == ["history.json"]


SCENARIO = """\
name: scenario
description: one case per verdict, for the report
defaults:
  ignore_eos: true
  min_prompts: 8
  warmup_requests: 1
  slo: {median_tpot_ms: 80, error_rate: 0}
sweep:
  - lengths: [32x32]       # slower than the baseline: a regression
    concurrency: [1]
  - lengths: [32x16]       # an SLO no engine meets
    concurrency: [1]
    slo: {mean_tpot_ms: 0.01}
  - lengths: [32x16]       # 8 requests cannot bound a p99: invalid
    concurrency: [2]
    slo: {p99_ttft_ms: 5000}
  - lengths: [32x16]
    concurrency: [4]
"""
EXPECTED = {  # case -> (Allure status, category)
    "c1-in32-out32": ("failed", "Regressions against the baseline"),
    "c1-in32-out16": ("failed", "SLO breaches"),
    "c2-in32-out16": ("broken", "Invalid measurements"),
    "c4-in32-out16": ("passed", None),
    "c1-in16-out8": ("broken", "Engine or infrastructure trouble"),
}


def run_scenario(project: pytest.Pytester) -> None:
    matrix = project.path / "matrices" / "scenario.yaml"
    matrix.write_text(SCENARIO)
    project.runpytest_subprocess(
        "-m", "smoke", f"--matrix={matrix}", "--reports-dir=reports", "--baseline=base",
        "--engine-args=--decode-slowdown 1.15", "-p", "no:cacheprovider",
    ).assert_outcomes(passed=1, failed=3)  # fmt: skip
    # An engine that does not start, its results into the same report.
    project.runpytest_subprocess(
        "-m", "smoke", "--lengths", "16x8", "--concurrency", "1", "--reports-dir=broken",
        "--alluredir=reports/allure-results", "--engine-args=--no-such-flag",
        "-p", "no:cacheprovider",
    ).assert_outcomes(errors=1)  # fmt: skip
    res = run_cli(project.path, "report")
    assert res.returncode == 0, res.stderr
    assert "wrote reports/allure-report/ (Allure report)" in res.stdout


def leaf_tests(report: Path) -> dict[str, dict[str, Any]]:
    """Leaf nodes of the behaviours tree (name, uid, status, parent uid)."""
    out: dict[str, dict[str, Any]] = {}

    def walk(node: dict[str, Any], parent: str) -> None:
        for child in node.get("children", []):
            if "children" in child:
                walk(child, child["uid"])
            else:
                out[child["name"]] = {**child, "parent": parent}

    walk(json.loads((report / "data" / "behaviors.json").read_text()), "")
    return out


def test_report_shows_cases_verdicts_categories_attachments_and_history(
    project: pytest.Pytester, tmp_path: Path
) -> None:
    if html.find_allure() is None:
        pytest.fail(f"the Allure command-line tool is needed: {html.INSTALL_COMMAND}")
    chromium()
    project.runpytest_subprocess(
        "-m", "smoke", "--concurrency", "1", "--lengths", "32x32", "--num-prompts", "8",
        "--reports-dir=base", "-p", "no:cacheprovider",
    ).assert_outcomes(passed=1)  # fmt: skip
    # Two runs of the same cases, a report after each: the second carries the first as history.
    run_scenario(project)
    run_scenario(project)
    report = project.path / "reports" / "allure-report"
    tests = leaf_tests(report)
    assert {name: t["status"] for name, t in tests.items()} == {
        name: status for name, (status, _) in EXPECTED.items()
    }
    categories = json.loads((report / "data" / "categories.json").read_text())
    filed = {  # category > message > test
        t["name"]: c["name"] for c in categories["children"] for m in c["children"]
        for t in m["children"]
    }  # fmt: skip
    assert filed == {name: cat for name, (_, cat) in EXPECTED.items() if cat}
    assert len(json.loads((report / "widgets" / "history-trend.json").read_text())) == 2
    for t in tests.values():
        case = json.loads((report / "data" / "test-cases" / f"{t['uid']}.json").read_text())
        assert case["extra"]["history"]["statistic"]["total"] == 2, case["name"]

    async def look() -> None:
        with html.serve(report) as base, browser() as port:
            session, ws = await open_page(port)
            try:
                page = Page(ws)
                text = await page.goto(f"{base}index.html#categories", "Invalid measurements")
                for _, category in EXPECTED.values():
                    assert category is None or category in text

                # Every case: its title, its verdict and its attachments, as shown.
                for name, (status, _) in EXPECTED.items():
                    t = tests[name]
                    url = f"{base}index.html#behaviors/{t['parent']}/{t['uid']}"
                    text = await page.goto(url, "Execution")
                    assert name in text and status.capitalize() in text, text
                    if name == "c1-in32-out32":
                        assert "mean_tpot_ms regressed: " in text
                        assert "against baseline base" in text
                    if status == "broken" and name.startswith("c1"):
                        await page.click("engine log (tail)")
                        await page.wait(
                            "document.body.innerText.includes('unrecognized arguments')"
                        )
                    elif status != "broken":
                        assert "requests.csv" in text and "TPOT distribution.png" in text

                # Open a plot and make sure the picture really loaded.
                t = tests["c4-in32-out16"]
                await page.goto(f"{base}index.html#behaviors/{t['parent']}/{t['uid']}", "Execution")
                await page.click("TTFT distribution.png")
                width = await page.wait(
                    "[...document.images].map(i => i.naturalWidth).find(w => w >= 640)"
                )
                assert width == 640
                # The sweep chart of the pair, under the shared tear-down step.
                await page.click("Tear down")
                await page.click("sweep summary in32-out16")
                await page.wait("document.body.innerText.includes('sweep chart, input 32')")
                shot = await page.screenshot(tmp_path / "case.png")
                assert len(shot) > 50_000  # a rendered page, not a blank one

                # The case's history tab: both runs.
                url = f"{base}index.html#behaviors/{t['parent']}/{t['uid']}/history"
                text = await page.goto(url, "Success rate")
                assert "Success rate 100% (2 of 2)" in text
            finally:
                await ws.close()
                await session.close()

    asyncio.run(look())
