"""The simulator's continuous-batching model, free of HTTP.

``Scheduler`` is the engine's bookkeeping with no notion of time: a FIFO waiting queue,
a running set bounded by ``max_num_seqs`` and by KV-cache capacity, and the two halves
of a step, ``plan_step`` (admit work, return the step's duration) and ``commit_step``
(every sequence in the step gets its token).  It can be driven on a virtual clock in
tests and in calibration.

``Engine`` runs a ``Scheduler`` in real time on the asyncio loop: one task, absolute
deadlines, all durations divided by ``time_scale``, asleep on an event when idle.

Tokens leave through a ``Sink`` that the HTTP layer attaches to each request; the engine
calls it synchronously at the end of a step, so streaming a token costs one function
call and no task switch.
"""

from __future__ import annotations

import asyncio
import enum
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from slogate.sim.profiles import Profile


class State(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"
    ABORTED = "aborted"


class Sink(Protocol):
    """Where a request's tokens go (the HTTP response); called at the end of a step."""

    def token(self, req: SimRequest) -> bool:
        """One more token (``req.generated`` counts it); False when the client is gone."""
        ...

    def finish(self, req: SimRequest) -> None:
        """The last token; ``req.finish_reason`` is set."""
        ...


@dataclass(eq=False, slots=True)
class SimRequest:
    """One generation request as the engine sees it."""

    prompt_tokens: int
    max_tokens: int
    ignore_eos: bool = False
    sink: Sink | None = None
    stop_at: int | None = None  # injected fault: finish after this many tokens regardless
    # Filled in by the scheduler.
    output_len: int = 0  # tokens it will produce (EOS drawn at submission)
    kv_tokens: int = 0  # KV reservation held while running
    prefilled: int = 0
    prefill_done: bool = False
    generated: int = 0
    state: State = State.WAITING
    finish_reason: str | None = None  # "length", "stop" or "abort"
    # Resolved by Engine when the request leaves the engine (finished or aborted).
    done: asyncio.Future[None] | None = field(default=None, repr=False)


class Scheduler:
    """Continuous batching without a clock: admission, step composition, token emission."""

    def __init__(self, profile: Profile, *, max_num_seqs: int | None = None, seed: int = 0) -> None:
        self.profile = profile
        self.max_num_seqs = max_num_seqs or profile.max_num_seqs
        # A lookup table: decode_time is needed every step and the batch is bounded.
        self._decode_ms = [profile.decode_time_ms(b) for b in range(self.max_num_seqs + 1)]
        self._rng = random.Random(seed)
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []  # in admission order
        self.kv_used = 0
        self.context_tokens = 0  # prompt + generated tokens held by running requests
        self._dirty = False  # running holds requests that left mid-step
        self._step_decode: list[SimRequest] = []
        self._step_prefill: list[tuple[SimRequest, int]] = []
        # Counters for /metrics and /sim/stats.
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.finished_total: dict[str, int] = {"stop": 0, "length": 0}
        self.aborted_total = 0
        self.peak_running = 0

    # -- requests -----------------------------------------------------------------

    def can_ever_admit(self, prompt_tokens: int, max_tokens: int) -> bool:
        return (
            self.profile.kv_reservation(prompt_tokens, max_tokens)
            <= self.profile.kv_capacity_tokens
        )

    def add(self, req: SimRequest) -> None:
        if req.max_tokens < 1 or req.prompt_tokens < 0:
            raise ValueError("max_tokens must be >= 1 and prompt_tokens >= 0")
        if not self.can_ever_admit(req.prompt_tokens, req.max_tokens):
            raise ValueError("request does not fit in the KV cache even when it is empty")
        req.kv_tokens = self.profile.kv_reservation(req.prompt_tokens, req.max_tokens)
        req.output_len = self._draw_output_len(req)
        req.state = State.WAITING
        self.waiting.append(req)

    def _draw_output_len(self, req: SimRequest) -> int:
        # A per-token EOS probability q gives a geometric length; drawing it once here is
        # the same distribution as a coin per token, at a fraction of the cost.
        if req.stop_at is not None:
            return max(1, min(req.stop_at, req.max_tokens))
        q = self.profile.eos_prob
        if req.ignore_eos or q <= 0.0:
            return req.max_tokens
        u = 1.0 - self._rng.random()  # in (0, 1]
        return min(req.max_tokens, 1 + int(math.log(u) / math.log1p(-q)))

    def abort(self, req: SimRequest) -> bool:
        """Drop a request (client gone, shutdown); False if it had already left."""
        if req.state is State.WAITING:
            try:
                self.waiting.remove(req)
            except ValueError:  # never submitted (the client left before it was)
                return False
        elif req.state is State.RUNNING:
            self.kv_used -= req.kv_tokens
            self.context_tokens -= req.prefilled + req.generated
            self._dirty = True
        else:
            return False
        req.state = State.ABORTED
        req.finish_reason = "abort"
        self.aborted_total += 1
        return True

    @property
    def has_work(self) -> bool:
        return bool(self.waiting) or self.num_running > 0

    @property
    def num_running(self) -> int:
        return (
            sum(1 for r in self.running if r.state is State.RUNNING)
            if self._dirty
            else len(self.running)
        )

    @property
    def kv_usage(self) -> float:
        """Fraction of the KV cache reserved by running requests."""
        return self.kv_used / self.profile.kv_capacity_tokens

    # -- steps --------------------------------------------------------------------

    def plan_step(self) -> float:
        """Admit waiting requests and fix this step's work; return its duration in ms.

        Returns 0.0 when there is nothing to do.
        """
        if self._dirty:
            self.running = [r for r in self.running if r.state is State.RUNNING]
            self._dirty = False
        p = self.profile
        decode = [r for r in self.running if r.prefill_done]
        prefill: list[tuple[SimRequest, int]] = []
        budget = p.max_num_batched_tokens
        # Prompts already being prefilled in chunks go first, in admission order.
        for r in self.running:
            if not r.prefill_done and budget > 0:
                n = min(budget, r.prompt_tokens - r.prefilled)
                prefill.append((r, n))
                budget -= n
        # FCFS admission: the head of the queue blocks the rest, as in vLLM, so a large
        # request cannot be starved by small ones behind it.
        capacity = p.kv_capacity_tokens
        while self.waiting and len(self.running) < self.max_num_seqs and budget > 0:
            r = self.waiting[0]
            if self.kv_used + r.kv_tokens > capacity:
                break
            if p.chunked_prefill:
                n = min(budget, r.prompt_tokens)
            else:
                # Whole prompts only; one larger than the budget still runs, alone.
                if r.prompt_tokens > budget and prefill:
                    break
                n = r.prompt_tokens
            self.waiting.popleft()
            r.state = State.RUNNING
            self.running.append(r)
            self.kv_used += r.kv_tokens
            prefill.append((r, n))
            budget -= n
        if len(self.running) > self.peak_running:
            self.peak_running = len(self.running)
        self._step_decode = decode
        self._step_prefill = prefill
        ms = (
            self._decode_ms[len(decode)] + p.decode_ms_per_context_token * self.context_tokens
            if decode
            else 0.0
        )
        if prefill:
            ms += p.prefill_base_ms + p.prefill_ms_per_token * sum(n for _, n in prefill)
        return ms

    def commit_step(self) -> list[SimRequest]:
        """End the planned step: emit tokens; return the requests that left the engine."""
        left: list[SimRequest] = []
        running = State.RUNNING
        for r in self._step_decode:
            if r.state is running:  # not aborted during the step
                self._emit(r, left)
        for r, n in self._step_prefill:
            if r.state is not running:
                continue
            r.prefilled += n
            self.prompt_tokens_total += n
            self.context_tokens += n
            if r.prefilled >= r.prompt_tokens:
                r.prefill_done = True
                self._emit(r, left)  # the first token comes out of the prefill step
        self._step_decode = []
        self._step_prefill = []
        if left:
            self._dirty = True
        return left

    def _emit(self, r: SimRequest, left: list[SimRequest]) -> None:
        r.generated += 1
        self.generation_tokens_total += 1
        if r.generated >= r.output_len:
            reason = "length" if r.generated >= r.max_tokens else "stop"
            r.state = State.FINISHED
            r.finish_reason = reason
            self.kv_used -= r.kv_tokens
            self.context_tokens -= r.prefilled + r.generated - 1
            self.finished_total[reason] += 1
            if r.sink is not None:
                r.sink.finish(r)
            left.append(r)
        else:
            self.context_tokens += 1
            if r.sink is not None and not r.sink.token(r):
                self.abort(r)
                left.append(r)


class Engine:
    """A ``Scheduler`` stepping in real time on the running asyncio loop."""

    # A step later than this (real seconds) is not caught up: the clock restarts from
    # now, so an overloaded host slows the simulation instead of bursting tokens.
    MAX_CATCH_UP_S = 0.1

    def __init__(
        self,
        profile: Profile,
        *,
        time_scale: float = 1.0,
        max_num_seqs: int | None = None,
        seed: int = 0,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.scheduler = Scheduler(profile, max_num_seqs=max_num_seqs, seed=seed)
        self.profile = profile
        self.time_scale = time_scale
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.steps = 0
        self.max_lag_ms = 0.0  # worst lateness of a step end, real ms
        self.lag_resets = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="slogate-sim-engine"
            )

    async def close(self) -> None:
        """Stop stepping and release every request still inside."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        s = self.scheduler
        for r in [*s.waiting, *s.running]:
            if s.abort(r):
                self._resolve(r)

    def submit(self, req: SimRequest) -> asyncio.Future[None]:
        """Queue a request; the future resolves when it leaves the engine."""
        req.done = asyncio.get_running_loop().create_future()
        self.scheduler.add(req)
        self._wake.set()
        return req.done

    def abort(self, req: SimRequest) -> None:
        if self.scheduler.abort(req):
            self._resolve(req)

    def reset_stats(self) -> None:
        self.scheduler.peak_running = self.scheduler.num_running
        self.max_lag_ms = 0.0
        self.lag_resets = 0

    @staticmethod
    def _resolve(req: SimRequest) -> None:
        if req.done is not None and not req.done.done():
            req.done.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.scheduler
        scale_s = 1.0 / (1000.0 * self.time_scale)  # profile ms -> real seconds
        next_at = loop.time()
        while True:
            ms = s.plan_step()
            if ms <= 0.0:
                # Idle: sleep until a request arrives, then start the clock from then.
                self._wake.clear()
                await self._wake.wait()
                next_at = loop.time()
                continue
            # Absolute deadlines: oversleeping one step shortens the next, so timer
            # granularity never accumulates into drift.
            next_at += ms * scale_s
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag = -delay
                self.max_lag_ms = max(self.max_lag_ms, lag * 1000.0)
                if lag > self.MAX_CATCH_UP_S:
                    next_at = loop.time()
                    self.lag_resets += 1
                await asyncio.sleep(0)  # let the HTTP side run between late steps
            self.steps += 1
            for r in s.commit_step():
                self._resolve(r)
