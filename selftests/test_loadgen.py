"""The load generator against real servers: in-flight targets, timeouts, open loop."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slogate.loadgen.dataset import WhitespaceTokenizer, random_prompts
from slogate.loadgen.runner import ClientStats, LoadSpec, gamma_schedule, run_load
from slogate.matrix import Case
from slogate.metrics import summarize
from slogate.outcome import validity_problems
from slogate.server import listening_socket

TOK = WhitespaceTokenizer(exact=True)
ROOT = Path(__file__).resolve().parents[1]


def start(module: str, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    sock = listening_socket()
    port = sock.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--fd", str(sock.fileno()), *args],
        pass_fds=[sock.fileno()],
        start_new_session=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sock.close()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{module} did not start")


@pytest.fixture(scope="module")
def timing_server() -> Iterator[str]:
    proc, url = start("slogate.timingserver", "--ttft-ms", "50", "--interval-ms", "10")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize("concurrency", [1, 32, 300])
def test_server_sees_exactly_the_target_in_flight(timing_server: str, concurrency: int) -> None:
    """A silently capped client (a pool of 100, say) would fail here at 300."""
    httpx.post(f"{timing_server}/timing/reset")
    prompts = random_prompts(TOK, concurrency, 8, 20, seed=1)
    spec = LoadSpec(base_url=timing_server, model="timing", concurrency=concurrency)
    result = run_load(spec, prompts, [], TOK)
    server = httpx.get(f"{timing_server}/timing/stats").json()
    assert server["peak_in_flight"] == concurrency
    assert result.client.peak_in_flight == concurrency
    assert all(r.ok and r.output_tokens == 20 for r in result.records)


def test_stalled_stream_ends_at_its_timeout(timing_server: str) -> None:
    # The server sends a chunk every 10 ms; a stall timeout shorter than the 50 ms TTFT
    # must fire on the wait for the first token.
    prompts = random_prompts(TOK, 2, 8, 5, seed=1)
    spec = LoadSpec(base_url=timing_server, model="timing", concurrency=2, stall_timeout_s=0.02)
    result = run_load(spec, prompts, [], TOK)
    assert [r.status for r in result.records] == ["timeout", "timeout"]
    assert "stalled" in result.records[0].error


def test_connection_refused_is_classified() -> None:
    sock = listening_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    spec = LoadSpec(base_url=f"http://127.0.0.1:{port}", model="m", concurrency=2)
    result = run_load(spec, random_prompts(TOK, 3, 4, 4), [], TOK)
    assert [r.status for r in result.records] == ["connection_error"] * 3
    s = summarize(result.records)
    assert s["failed"] == 3 and s["errors_by_class"]["connection_error"] == 3


def test_open_loop_reports_latency_from_the_schedule(timing_server: str) -> None:
    prompts = random_prompts(TOK, 30, 8, 5, seed=1)
    spec = LoadSpec(base_url=timing_server, model="timing", request_rate=100.0, seed=3)
    result = run_load(spec, prompts, [], TOK)
    s = summarize(result.records)
    assert s["completed"] == 30
    assert all(r.scheduled_ns is not None and r.sent_ns >= r.scheduled_ns for r in result.records)
    assert s["mean_sched_ttft_ms"] >= s["mean_ttft_ms"]
    assert result.client.schedule_lag_p99_ms is not None and result.client.schedule_lag_p99_ms < 50


def test_gamma_schedule_has_the_asked_rate_and_burstiness() -> None:
    import numpy as np

    for burstiness in (0.5, 1.0, 4.0):
        offsets = gamma_schedule(20000, rate=50.0, burstiness=burstiness, seed=1)
        gaps = np.diff(offsets)
        assert gaps.mean() == pytest.approx(1 / 50, rel=0.03)
        # gamma(k, θ): coefficient of variation 1/sqrt(k); Poisson (k=1) has CV 1
        assert gaps.std() / gaps.mean() == pytest.approx(1 / burstiness**0.5, rel=0.05)


def _case(**kw: object) -> Case:
    return Case(input_len=8, output_len=8, concurrency=kw.pop("concurrency", 4), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stats", "median_ttft", "expect"),
    [
        (ClientStats(target_in_flight=4, peak_in_flight=4), 100.0, None),
        (ClientStats(target_in_flight=4, peak_in_flight=3), 100.0, "at most 3 of 4"),
        (
            ClientStats(target_in_flight=4, peak_in_flight=4, loop_lag_p99_ms=12),
            100.0,
            "lagged 12.0",
        ),
        (ClientStats(target_in_flight=4, peak_in_flight=4, loop_lag_p99_ms=12), 1000.0, None),
        (ClientStats(target_in_flight=4, peak_in_flight=4, cpu_percent=99), 100.0, "99% of a core"),
        (
            ClientStats(target_in_flight=0, peak_in_flight=9, schedule_lag_p99_ms=30),
            100.0,
            "after their scheduled time",
        ),
    ],
)
def test_validity_rules(stats: ClientStats, median_ttft: float, expect: str | None) -> None:
    problems = validity_problems(_case(), {"num_prompts": 4, "median_ttft_ms": median_ttft}, stats)
    if expect is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expect in problems[0]
