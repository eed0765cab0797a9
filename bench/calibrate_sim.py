"""Check the simulator's calibrated profiles against the user's measured tables.

Starts ``python -m slogate.sim`` for each calibrated profile, replays the seed's method
(vLLM ``benchmark_serving.py`` / ``sglang.bench_serving``: random prompts of fixed length,
``num_prompts == concurrency``, all sent at once, ``ignore_eos`` not set) with a small
streaming client, and prints mean TTFT, mean TPOT and output throughput next to the seed
rows.  Exit status 1 when a TPOT or throughput error exceeds the tolerance.

    python bench/calibrate_sim.py                      # both profiles, time scale 10
    python bench/calibrate_sim.py --check-scale        # first: scale 1 vs 10 at c=1, 64
    python bench/calibrate_sim.py --profile h20-deepseek-r1-vllm --time-scale 1

With ``--time-scale S`` the simulator runs S times faster; latencies are reported
multiplied back by S and throughput divided by S, i.e. in the seed's real time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent

# Seed rows (shared/seeds/000_*.txt, "测试数据"): (profile, in/out, concurrency) ->
# (mean TTFT ms, mean TPOT ms, output throughput tok/s).
SEED: dict[tuple[str, int, int], tuple[float, float, float]] = {
    ("h20-deepseek-r1-vllm", 128, 1): (137.49, 110.35, 9.04),
    ("h20-deepseek-r1-vllm", 128, 64): (638.28, 116.10, 505.68),
    ("h20-deepseek-r1-vllm", 128, 256): (10997.02, 124.53, 675.69),
    ("h20-deepseek-r1-vllm", 256, 1): (377.24, 110.40, 8.97),
    ("h20-deepseek-r1-vllm", 256, 64): (1037.10, 120.80, 441.89),
    ("h20-deepseek-r1-vllm", 256, 256): (42065.50, 137.75, 464.55),
    ("h20-deepseek-r1-sglang", 128, 1): (182.48, 42.00, 23.02),
    ("h20-deepseek-r1-sglang", 128, 64): (2194.33, 104.64, 525.62),
    ("h20-deepseek-r1-sglang", 128, 256): (3240.90, 182.61, 1126.60),
    ("h20-deepseek-r1-sglang", 256, 1): (194.20, 42.24, 23.23),
    ("h20-deepseek-r1-sglang", 256, 64): (2066.74, 107.27, 554.94),
    ("h20-deepseek-r1-sglang", 256, 256): (22308.28, 139.63, 726.58),
}
PROFILES = ("h20-deepseek-r1-vllm", "h20-deepseek-r1-sglang")


@dataclass
class Sim:
    proc: subprocess.Popen[bytes]
    url: str


def start_sim(profile: str, time_scale: float, seed: int) -> Sim:
    """Start the simulator on a socket bound here (no port race) and wait until ready."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    argv = [
        sys.executable,
        "-m",
        "slogate.sim",
        "--fd",
        str(sock.fileno()),
        "--profile",
        profile,
        "--time-scale",
        repr(time_scale),
        "--seed",
        str(seed),
    ]
    proc = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, pass_fds=[sock.fileno()], start_new_session=True
    )
    sock.close()  # the child has its own copy
    assert proc.stdout is not None
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline().decode()
            if line.startswith("slogate-sim ready:"):
                return Sim(proc, line.rsplit("url=", 1)[1].strip())
            if not line:
                break
        if proc.poll() is not None:
            break
    stop_sim(Sim(proc, ""))
    raise RuntimeError(f"simulator did not become ready (exit status {proc.poll()})")


def stop_sim(sim: Sim) -> None:
    if sim.proc.poll() is None:
        os.kill(sim.proc.pid, signal.SIGTERM)
        try:
            sim.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(sim.proc.pid, signal.SIGKILL)
            sim.proc.wait()
    if sim.proc.stdout is not None:
        sim.proc.stdout.close()


@dataclass
class Record:
    sent: float
    first: float | None = None
    last: float | None = None
    tokens: int = 0


class Clock:
    """Shared by a case's requests: how many still wait for their response headers."""

    def __init__(self, pending: int) -> None:
        self.pending = pending
        self.worst_stall = 0.0  # seconds, counted once every request is streaming


async def one_request(
    session: aiohttp.ClientSession, url: str, prompt: str, out_len: int, clock: Clock
) -> Record:
    body = {
        "prompt": prompt,
        "max_tokens": out_len,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    rec = Record(sent=time.perf_counter())
    buf = b""
    async with session.post(f"{url}/v1/completions", json=body) as resp:
        resp.raise_for_status()
        clock.pending -= 1
        async for piece in resp.content.iter_any():
            now = time.perf_counter()  # arrival, before parsing
            buf += piece
            *events, buf = buf.split(b"\n\n")
            for ev in events:
                if b'"text":"' in ev and b'"text":""' not in ev:
                    if rec.first is None:
                        rec.first = now
                    rec.last = now
                elif b'"usage":{' in ev:
                    rec.tokens = json.loads(ev[len(b"data: ") :])["usage"]["completion_tokens"]
    return rec


@dataclass
class Result:
    ttft_ms: float
    tpot_ms: float
    out_tps: float
    mean_out: float
    lag_resets: int
    max_lag_ms: float  # the simulator's worst step lateness, real ms
    client_lag_ms: float  # the client's worst event-loop stall, real ms


async def run_case(url: str, in_len: int, out_len: int, concurrency: int, scale: float) -> Result:
    prompt = " ".join(["word"] * in_len)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
    ) as session:
        async with session.post(f"{url}/sim/reset_stats") as r:
            r.raise_for_status()
        clock = Clock(concurrency)
        beat = asyncio.create_task(heartbeat(clock))
        try:
            recs = await asyncio.gather(
                *(one_request(session, url, prompt, out_len, clock) for _ in range(concurrency))
            )
        finally:
            beat.cancel()
        async with session.get(f"{url}/sim/stats") as r:
            stats = await r.json()
    if any(r.first is None or r.last is None or r.tokens < 1 for r in recs):
        raise RuntimeError("a request produced no tokens")
    start = min(r.sent for r in recs)
    end = max(r.last for r in recs if r.last is not None)
    tokens = sum(r.tokens for r in recs)
    ttft = statistics.mean((r.first or 0) - r.sent for r in recs)
    tpots = [((r.last or 0) - (r.first or 0)) / (r.tokens - 1) for r in recs if r.tokens > 1]
    return Result(
        ttft_ms=ttft * 1000 * scale,
        tpot_ms=statistics.mean(tpots) * 1000 * scale,
        out_tps=tokens / (end - start) / scale,
        mean_out=tokens / len(recs),
        lag_resets=stats["lag_resets"],
        max_lag_ms=stats["max_step_lag_ms"],
        client_lag_ms=clock.worst_stall * 1000,
    )


async def heartbeat(clock: Clock, period: float = 0.005) -> None:
    """Record how late the client's loop wakes up: a starved client misreads timings.

    The burst of connects at the start stalls the loop by design (it delays TTFT as the
    seed's client does); only stalls while every request is streaming count.
    """
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(period)
        if clock.pending == 0:
            clock.worst_stall = max(clock.worst_stall, loop.time() - t - period)


# A stall longer than this (real ms) in the simulator or the client invalidates a run.
MAX_STALL_MS = 100.0


def measure(url: str, length: int, concurrency: int, scale: float, retries: int = 3) -> Result:
    """One case; re-run it when the simulator or the client was stalled.

    A stall means the host starved one of the processes (other load on the machine), so
    that run's timings say nothing about the profile.
    """
    for attempt in range(retries + 1):
        res = asyncio.run(run_case(url, length, length, concurrency, scale))
        stalled = res.lag_resets > 0 or max(res.max_lag_ms, res.client_lag_ms) > MAX_STALL_MS
        if not stalled or attempt == retries:
            return res
        print(
            f"  (re-running {length}/{length} c={concurrency}: stalled, simulator "
            f"{res.max_lag_ms:.0f} ms, client {res.client_lag_ms:.0f} ms)",
            flush=True,
        )
    raise AssertionError("unreachable")


def err(value: float, ref: float) -> float:
    return 100.0 * (value / ref - 1.0)


def calibrate(profiles: list[str], scale: float, concurrencies: list[int], tol: float) -> bool:
    header = (
        f"{'profile':24} {'in/out':>7} {'conc':>5} | {'TPOT sim':>8} {'seed':>7} {'err%':>6} | "
        f"{'out tok/s':>9} {'seed':>7} {'err%':>6} | {'TTFT sim':>8} {'seed':>8} | "
        f"{'out len':>7} {'stall':>6}"
    )
    print(f"time scale {scale:g}; errors beyond +-{tol:.0%} marked '!'")
    print(header)
    print("-" * len(header))
    ok = True
    for profile in profiles:
        sim = start_sim(profile, scale, seed=0)
        try:
            for length in (128, 256):
                for c in concurrencies:
                    seed_ttft, seed_tpot, seed_tps = SEED[(profile, length, c)]
                    res = measure(sim.url, length, c, scale)
                    e_tpot = err(res.tpot_ms, seed_tpot)
                    e_tps = err(res.out_tps, seed_tps)
                    bad_tpot = abs(e_tpot) > tol * 100
                    bad_tps = abs(e_tps) > tol * 100
                    ok = ok and not (bad_tpot or bad_tps)
                    # "stall": worst real-time hiccup of simulator or client (ms).
                    mark_tpot = "!" if bad_tpot else " "
                    mark_tps = "!" if bad_tps else " "
                    print(
                        f"{profile:24} {f'{length}/{length}':>7} {c:>5} | "
                        f"{res.tpot_ms:8.1f} {seed_tpot:7.1f} {e_tpot:+5.1f}{mark_tpot}| "
                        f"{res.out_tps:9.1f} {seed_tps:7.1f} {e_tps:+5.1f}{mark_tps}| "
                        f"{res.ttft_ms:8.0f} {seed_ttft:8.0f} | {res.mean_out:7.1f} "
                        f"{max(res.max_lag_ms, res.client_lag_ms):6.1f}",
                        flush=True,
                    )
        finally:
            stop_sim(sim)
    return ok


def check_scale(profiles: list[str], scale: float, concurrencies: list[int]) -> float:
    """Run the same cases at time scale 1 and at ``scale``; return the worst difference %."""
    print(f"time scale 1 vs {scale:g} (TPOT and throughput difference %)")
    worst = 0.0
    for profile in profiles:
        results: dict[float, dict[tuple[int, int], Result]] = {}
        for s in (1.0, scale):
            sim = start_sim(profile, s, seed=0)
            try:
                results[s] = {
                    (length, c): measure(sim.url, length, c, s)
                    for length in (128, 256)
                    for c in concurrencies
                }
            finally:
                stop_sim(sim)
        for key, base in results[1.0].items():
            fast = results[scale][key]
            d_tpot = err(fast.tpot_ms, base.tpot_ms)
            d_tps = err(fast.out_tps, base.out_tps)
            worst = max(worst, abs(d_tpot), abs(d_tps))
            print(
                f"{profile:24} {key[0]}/{key[0]} c={key[1]:<4} TPOT {base.tpot_ms:7.1f} -> "
                f"{fast.tpot_ms:7.1f} ({d_tpot:+.1f}%)  tok/s {base.out_tps:7.1f} -> "
                f"{fast.out_tps:7.1f} ({d_tps:+.1f}%)",
                flush=True,
            )
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", action="append", choices=PROFILES, help="default: both")
    ap.add_argument("--time-scale", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, action="append", choices=(1, 64, 256))
    ap.add_argument("--tolerance", type=float, default=0.20)
    ap.add_argument(
        "--check-scale",
        action="store_true",
        help="first compare time scale 1 with --time-scale at c=1 and 64",
    )
    args = ap.parse_args()
    profiles = args.profile or list(PROFILES)
    started = time.monotonic()
    if args.check_scale:
        worst = check_scale(profiles, args.time_scale, [1, 64])
        print(f"worst difference {worst:.1f}%\n", flush=True)
    ok = calibrate(profiles, args.time_scale, args.concurrency or [1, 64, 256], args.tolerance)
    print(
        f"\n{'all rows within' if ok else 'NOT all rows within'} {args.tolerance:.0%}; "
        f"took {time.monotonic() - started:.0f} s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
