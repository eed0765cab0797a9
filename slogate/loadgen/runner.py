"""Runs one case's load: warm-up, then the measured requests, closed loop or open loop.

Closed loop (``concurrency``): that many workers, each owning one keep-alive connection
opened before the measured window, each sending its next request as soon as the previous
one ends, until ``num_prompts`` requests have been issued.

Open loop (``request_rate``): send times are drawn up front from a gamma process (shape =
burstiness, 1 = Poisson, mean gap = 1/rate, as vLLM defines it); each request is sent at
its scheduled time on an idle connection or a new one, and latency is reported both from
the actual send and from the scheduled time.

Nothing is parsed while the load runs: responses are kept with their arrival times and
turned into records afterwards.  A ticker watches deadlines (request and stall timeouts),
measures event-loop lag and reports progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from slogate.loadgen.apis import APIS, Request, encode_body
from slogate.loadgen.dataset import Prompt, Tokenizer
from slogate.loadgen.http import (
    Response,
    StreamingConnection,
    Target,
    auth_headers,
    build_request,
    open_connection,
)
from slogate.loadgen.sse import SSEError
from slogate.records import RequestRecord

_perf_ns = time.perf_counter_ns

TICK_S = 0.05
SETTLE_S = 0.02
SETTLE_PER_CONNECTION_S = 0.0002


@dataclass(frozen=True)
class LoadSpec:
    """Everything the load generator needs to know, as plain data."""

    base_url: str
    model: str
    endpoint: str = "completions"  # a name in slogate.loadgen.apis.APIS
    concurrency: int | None = None
    request_rate: float | None = None
    burstiness: float = 1.0
    ignore_eos: bool = True
    request_timeout_s: float = 600.0
    stall_timeout_s: float = 120.0
    api_key: str | None = field(default=None, repr=False)  # never in a failure's locals
    seed: int = 0
    extra_body: dict[str, Any] = field(default_factory=dict)


@dataclass
class Progress:
    done: int
    total: int
    errors: int
    approx_output_tokens: int
    elapsed_s: float


@dataclass
class ClientStats:
    """The client's view of its own health during the measured window."""

    target_in_flight: int = 0
    peak_in_flight: int = 0
    loop_lag_max_ms: float = 0.0
    loop_lag_p99_ms: float = 0.0
    cpu_percent: float = 0.0  # process CPU time / wall time over the window, one core = 100
    schedule_lag_p99_ms: float | None = None  # open loop: actual send - scheduled send
    schedule_lag_max_ms: float | None = None
    connections_opened: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def worst(cls, runs: list[ClientStats]) -> ClientStats:
        """Several runs of one case are as trustworthy as the least trustworthy of them."""
        if len(runs) == 1:
            return runs[0]
        lags = [r.schedule_lag_p99_ms for r in runs if r.schedule_lag_p99_ms is not None]
        lag_max = [r.schedule_lag_max_ms for r in runs if r.schedule_lag_max_ms is not None]
        return cls(
            target_in_flight=max(r.target_in_flight for r in runs),
            peak_in_flight=min(r.peak_in_flight for r in runs),
            loop_lag_max_ms=max(r.loop_lag_max_ms for r in runs),
            loop_lag_p99_ms=max(r.loop_lag_p99_ms for r in runs),
            cpu_percent=max(r.cpu_percent for r in runs),
            schedule_lag_p99_ms=max(lags) if lags else None,
            schedule_lag_max_ms=max(lag_max) if lag_max else None,
            connections_opened=sum(r.connections_opened for r in runs),
        )


@dataclass
class LoadResult:
    records: list[RequestRecord]
    client: ClientStats


@dataclass
class _Job:
    index: int
    prompt: Prompt
    raw: bytes = field(repr=False)  # carries the Authorization header
    warmup: bool
    scheduled_ns: int | None = None
    sent_ns: int = 0
    response: Response | None = None
    connect_error: str = ""


def request_body(spec: LoadSpec, prompt: Prompt) -> bytes:
    req = Request(spec.model, prompt.text, prompt.output_len, spec.ignore_eos)
    return encode_body(APIS[spec.endpoint], req, spec.extra_body)


class _Run:
    """The state of one load run; lives for one call of ``run_load``."""

    def __init__(
        self,
        spec: LoadSpec,
        target: Target,
        progress: Callable[[Progress], None] | None,
        total: int,
    ) -> None:
        self.spec = spec
        self.target = target
        self.progress = progress
        self.total = total
        self.active: dict[StreamingConnection, _Job] = {}
        self.finished: list[_Job] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.lags_ns: list[int] = []
        self.connections_opened = 0
        self._counted = 0
        self._approx_tokens = 0
        self._errors = 0
        self._started_ns = _perf_ns()

    async def connect(self) -> StreamingConnection:
        conn = await open_connection(self.target)
        self.connections_opened += 1
        return conn

    async def send(self, conn: StreamingConnection | None, job: _Job) -> StreamingConnection | None:
        """Send one job on ``conn`` (reconnecting if needed) and wait for its response."""
        if conn is None or conn.closed:
            try:
                conn = await self.connect()
            except (OSError, asyncio.TimeoutError) as exc:
                job.sent_ns = _perf_ns()
                job.connect_error = f"cannot connect to {self.target.host_header}: {exc}"
                self._finish(job)
                return None
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
        job.sent_ns, fut = conn.start(job.raw)
        self.active[conn] = job
        try:
            job.response = await fut
        finally:
            self.active.pop(conn, None)
            self.in_flight -= 1
        self._finish(job)
        return None if conn.closed else conn

    def _finish(self, job: _Job) -> None:
        self.finished.append(job)

    async def ticker(self, stop: asyncio.Event) -> None:
        """Deadlines, loop lag and progress, every TICK_S."""
        tick_ns = int(TICK_S * 1e9)
        req_ns = int(self.spec.request_timeout_s * 1e9)
        stall_ns = int(self.spec.stall_timeout_s * 1e9)
        expected = _perf_ns() + tick_ns
        last_report = 0
        while not stop.is_set():
            await asyncio.sleep(TICK_S)
            now = _perf_ns()
            self.lags_ns.append(max(0, now - expected))
            expected = now + tick_ns
            for conn, job in list(self.active.items()):
                if now - job.sent_ns > req_ns:
                    conn.abort(
                        f"timeout: no complete response after {self.spec.request_timeout_s:g} s"
                    )
                elif now - conn.last_activity_ns > stall_ns:
                    conn.abort(
                        f"timeout: stream stalled, nothing received for "
                        f"{self.spec.stall_timeout_s:g} s"
                    )
            if self.progress is not None and now - last_report > 500_000_000:
                last_report = now
                self.progress(self.snapshot(now))

    def snapshot(self, now: int) -> Progress:
        for job in self.finished[self._counted :]:
            resp = job.response
            if job.warmup:
                continue
            if resp is None or resp.error or resp.status != 200:
                self._errors += 1
            else:
                # "data:" lines less the usage chunk and [DONE]: tokens when one per chunk.
                self._approx_tokens += max(0, sum(p.count(b"data:") for _, p in resp.pieces) - 2)
        self._counted = len(self.finished)
        done = sum(1 for j in self.finished if not j.warmup)
        return Progress(
            done, self.total, self._errors, self._approx_tokens, (now - self._started_ns) / 1e9
        )


def gamma_schedule(n: int, rate: float, burstiness: float, seed: int) -> list[float]:
    """Send offsets in seconds: gaps ~ Gamma(shape=burstiness, scale=1/(rate*burstiness))."""
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.gammavariate(burstiness, 1.0 / (rate * burstiness))
    return out


async def _closed_loop(run: _Run, jobs: list[_Job], concurrency: int) -> None:
    n_workers = min(concurrency, len(jobs))
    results = await asyncio.gather(
        *(run.connect() for _ in range(n_workers)), return_exceptions=True
    )
    conns: list[StreamingConnection | None] = [
        c if isinstance(c, StreamingConnection) else None for c in results
    ]
    # The kernel completes a handshake before the server's event loop accepts it; let the
    # server take the new connections in before the first request, or the first requests
    # of the window wait behind a burst of accepts and their TTFT includes it.
    await asyncio.sleep(SETTLE_S + SETTLE_PER_CONNECTION_S * n_workers)
    queue = iter(jobs)

    async def worker(conn: StreamingConnection | None) -> None:
        for job in queue:
            conn = await run.send(conn, job)
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(worker(c) for c in conns))


async def _open_loop(run: _Run, jobs: list[_Job], spec: LoadSpec, pool_hint: int) -> None:
    assert spec.request_rate is not None
    offsets = gamma_schedule(len(jobs), spec.request_rate, spec.burstiness, spec.seed)
    # Open some connections up front so the first arrivals do not pay for the handshake.
    warm = await asyncio.gather(
        *(run.connect() for _ in range(max(1, pool_hint))), return_exceptions=True
    )
    idle = [c for c in warm if isinstance(c, StreamingConnection)]
    tasks = []

    async def one(job: _Job) -> None:
        conn = idle.pop() if idle else None
        conn = await run.send(conn, job)
        if conn is not None:
            idle.append(conn)

    start = _perf_ns() + 1_000_000
    for job, offset in zip(jobs, offsets, strict=True):
        job.scheduled_ns = start + int(offset * 1e9)
        # Timers may fire early by up to the loop clock's resolution (1 ms on uvloop):
        # sleep to just before the deadline, then yield until it has passed.
        delay = (job.scheduled_ns - _perf_ns()) / 1e9
        if delay > 0.002:
            await asyncio.sleep(delay - 0.002)
        while _perf_ns() < job.scheduled_ns:
            await asyncio.sleep(0)
        tasks.append(asyncio.create_task(one(job)))
    await asyncio.gather(*tasks)
    for conn in idle:
        if conn.transport is not None:
            conn.transport.close()


async def run_load_async(
    spec: LoadSpec,
    prompts: list[Prompt],
    warmup: list[Prompt],
    progress: Callable[[Progress], None] | None = None,
) -> tuple[list[_Job], ClientStats]:
    target = Target.from_url(spec.base_url)
    path = APIS[spec.endpoint].path

    def job(i: int, p: Prompt, is_warmup: bool) -> _Job:
        raw = build_request(target, path, request_body(spec, p), auth_headers(spec.api_key))
        return _Job(i, p, raw, is_warmup)

    run = _Run(spec, target, progress, len(prompts))
    stop = asyncio.Event()
    ticker = asyncio.create_task(run.ticker(stop))
    try:
        if warmup:
            warm_jobs = [job(-1 - i, p, True) for i, p in enumerate(warmup)]
            await _closed_loop(run, warm_jobs, spec.concurrency or len(warm_jobs))
        jobs = [job(i, p, False) for i, p in enumerate(prompts)]
        run.lags_ns.clear()
        run.peak_in_flight = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if spec.concurrency is not None:
            await _closed_loop(run, jobs, spec.concurrency)
            target_in_flight = min(spec.concurrency, len(jobs))
        else:
            await _open_loop(run, jobs, spec, pool_hint=min(64, len(jobs)))
            target_in_flight = 0
        cpu = (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
    finally:
        stop.set()
        await ticker
    if progress is not None:
        progress(run.snapshot(_perf_ns()))
    lags = sorted(run.lags_ns)
    stats = ClientStats(
        target_in_flight=target_in_flight,
        peak_in_flight=run.peak_in_flight,
        loop_lag_max_ms=lags[-1] / 1e6 if lags else 0.0,
        loop_lag_p99_ms=lags[int(0.99 * (len(lags) - 1))] / 1e6 if lags else 0.0,
        cpu_percent=100.0 * cpu,
        connections_opened=run.connections_opened,
    )
    measured = [j for j in run.finished if not j.warmup]
    sched = [j.sent_ns - j.scheduled_ns for j in measured if j.scheduled_ns is not None]
    if sched:
        sched.sort()
        stats.schedule_lag_p99_ms = sched[int(0.99 * (len(sched) - 1))] / 1e6
        stats.schedule_lag_max_ms = sched[-1] / 1e6
    return run.finished, stats


def to_record(job: _Job, tokenizer: Tokenizer, spec: LoadSpec) -> RequestRecord:
    """Classify one finished job and turn it into a record (this is where parsing happens)."""
    p = job.prompt
    rec = RequestRecord(
        index=job.index,
        input_len=p.input_len,
        max_tokens=p.output_len,
        sent_ns=job.sent_ns,
        scheduled_ns=job.scheduled_ns,
        warmup=job.warmup,
    )
    resp = job.response
    if resp is None:
        rec.status, rec.error, rec.done_ns = "connection_error", job.connect_error, job.sent_ns
        return rec
    rec.done_ns = resp.done_ns or resp.headers_ns or job.sent_ns
    rec.http_status = resp.status or None
    if resp.error:
        if resp.error.startswith("timeout"):
            rec.status = "timeout"
        elif resp.status == 0:
            rec.status = "connection_error"
        else:
            rec.status = "stream_error"
        rec.error = resp.error
        _fill_partial(rec, resp, spec)
        return rec
    if resp.status != 200:
        rec.status = "http_error"
        rec.error = f"HTTP {resp.status}: {resp.body[:300].decode('utf-8', 'replace')}"
        return rec
    try:
        parsed = APIS[spec.endpoint].parse(resp.pieces, resp.headers.get("content-type", ""))
    except SSEError as exc:
        rec.status, rec.error = "stream_error", f"malformed stream: {exc}"
        return rec
    rec.chunk_ns = parsed.text_chunk_ns
    rec.text = parsed.text
    rec.prompt_tokens_server = parsed.prompt_tokens
    if parsed.text_chunk_ns:
        rec.first_token_ns = parsed.text_chunk_ns[0]
        rec.last_token_ns = parsed.text_chunk_ns[-1]
    if parsed.completion_tokens is not None:
        rec.output_tokens, rec.output_tokens_source = parsed.completion_tokens, "usage"
    elif parsed.text:
        rec.output_tokens, rec.output_tokens_source = tokenizer.count(parsed.text), "tokenizer"
    if parsed.error:
        rec.status, rec.error = "stream_error", f"error event in the stream: {parsed.error}"
    elif not parsed.text_chunk_ns:
        rec.status, rec.error = "empty", "HTTP 200 but no generated text in the response"
    elif not parsed.done:
        rec.status, rec.error = "stream_error", "stream ended without data: [DONE]"
    elif spec.ignore_eos and (rec.output_tokens or 0) < p.output_len:
        rec.status = "truncated"
        rec.error = f"{rec.output_tokens} output tokens, {p.output_len} asked with ignore_eos"
    return rec


def _fill_partial(rec: RequestRecord, resp: Response, spec: LoadSpec) -> None:
    """Keep what arrived before a failure (useful in the per-request log)."""
    try:
        parsed = APIS[spec.endpoint].parse(resp.pieces, resp.headers.get("content-type", ""))
    except SSEError:
        return
    if parsed.text_chunk_ns:
        rec.chunk_ns = parsed.text_chunk_ns
        rec.first_token_ns = parsed.text_chunk_ns[0]
        rec.last_token_ns = parsed.text_chunk_ns[-1]


def run_load(
    spec: LoadSpec,
    prompts: list[Prompt],
    warmup: list[Prompt],
    tokenizer: Tokenizer,
    progress: Callable[[Progress], None] | None = None,
) -> LoadResult:
    """Run the load in a fresh event loop and return the records of every request."""
    if spec.concurrency is None and spec.request_rate is None:
        raise ValueError("give concurrency or request_rate")
    with quiet_gc():
        jobs, stats = event_loop_runner()(run_load_async(spec, prompts, warmup, progress))
    records = [to_record(j, tokenizer, spec) for j in jobs]
    records.sort(key=lambda r: (not r.warmup, r.index))
    return LoadResult(records, stats)


def event_loop_runner() -> Callable[[Any], Any]:
    """uvloop when installed: its transports cost a fraction of asyncio's per read."""
    try:
        import uvloop

        return uvloop.run  # type: ignore[no-any-return]
    except ImportError:
        return asyncio.run


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """No garbage-collection pauses while the load runs.

    Everything allocated before the run is frozen out of the collector's sight, and
    automatic collection is off until the load ends: a full collection over hundreds of
    thousands of body pieces would stall the event loop, and every stream with it.
    """
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def raise_fd_limit(wanted: int) -> None:
    """Each in-flight request holds a socket; lift the soft file limit as far as allowed."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = hard if hard != resource.RLIM_INFINITY else max(wanted, soft)
        if soft < min(wanted, limit):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(wanted, soft), limit), hard))
    except (ImportError, ValueError, OSError):
        pass


__all__ = ["LoadSpec", "LoadResult", "ClientStats", "Progress", "run_load", "raise_fd_limit"]
