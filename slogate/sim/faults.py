"""Fault injection for the simulator: the ways real engines break, on demand.

A performance gate runs unattended; the suite's reliability tests need an engine that
fails the way vLLM or SGLang do (dies mid-sweep, stalls a stream, answers 5xx, sends a
broken chunk, stops short, loads too slowly or not at all) and does so *deterministically*,
so a test can assert exact counts.

Request faults take a selector:

* an integer ``N >= 1``: every Nth generation request, counted from 1 in arrival order
  (``3`` hits requests 3, 6, 9 ...; ``1`` hits every request);
* a number strictly between 0 and 1: that fraction of requests, drawn from a generator
  seeded with ``--fault-seed`` (one generator per fault, so adding a fault does not move
  another one's picks).

Every generation request (``/v1/completions``, ``/v1/chat/completions``) counts, the
client's warm-up requests included; ``/health`` and the other routes do not.  When
several faults pick the same request, the first of ``FAULT_ORDER`` applies.
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import dataclass, field

#: Request faults in order of precedence, with the CLI help for each.
FAULT_ORDER: tuple[tuple[str, str], ...] = (
    ("http_500", "answer HTTP 500 (InternalServerError), as an engine whose request failed"),
    ("http_429", "answer HTTP 429 with Retry-After, as a rate-limiting gateway"),
    (
        "stall",
        "stream half the tokens, then send nothing more and never finish (non-streaming: "
        "never answer), as a hung engine",
    ),
    (
        "malformed_sse",
        "send an invalid chunk (truncated JSON) after the first token, then the rest",
    ),
    (
        "short_output",
        "finish after half the requested tokens (finish_reason stop), even with ignore_eos",
    ),
)

#: What ``--crash-on-start KIND`` prints before exiting 1: the lines real engines print,
#: so the launcher's log diagnosis recognises them.
START_CRASHES: dict[str, str] = {
    "oom": (
        "Traceback (most recent call last):\n"
        '  File "vllm/worker/model_runner.py", line 1124, in load_model\n'
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.76 GiB. GPU 0 has a "
        "total capacity of 95.22 GiB of which 1.02 GiB is free. Including non-PyTorch memory, "
        "this process has 94.19 GiB memory in use."
    ),
    "nccl": (
        "Traceback (most recent call last):\n"
        '  File "vllm/distributed/parallel_state.py", line 1019, in init_distributed_environment\n'
        "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/"
        "NCCLUtils.hpp:317, unhandled system error (run with NCCL_DEBUG=INFO for details)"
    ),
}


@dataclass(frozen=True)
class Selector:
    """Which requests a fault hits: every Nth, or a seeded fraction."""

    every: int | None = None
    rate: float | None = None

    @classmethod
    def parse(cls, text: str) -> Selector:
        """``"3"`` -> every 3rd request; ``"0.25"`` -> a quarter of them (seeded)."""
        text = text.strip()
        if text.isascii() and text.isdigit() and int(text) >= 1:
            return cls(every=int(text))
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if 0 < value < 1:
            return cls(rate=value)
        raise argparse.ArgumentTypeError(
            f"expected N (every Nth request, N >= 1) or a fraction in (0, 1), got {text!r}"
        )

    def __str__(self) -> str:
        return f"every {self.every}" if self.every is not None else f"rate {self.rate:g}"


@dataclass
class Faults:
    """The faults one simulator process injects, and its request counter."""

    selectors: dict[str, Selector] = field(default_factory=dict)  # name in FAULT_ORDER
    crash_after: int | None = None  # exit hard when request crash_after + 1 arrives
    slow_start_s: float = 0.0  # /health answers 503 this long (real seconds)
    crash_on_start: str | None = None  # a key of START_CRASHES
    seed: int = 0
    arrivals: int = field(default=0, init=False)
    _rngs: dict[str, random.Random] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        unknown = set(self.selectors) - {name for name, _ in FAULT_ORDER}
        if unknown:
            raise ValueError(f"unknown faults: {', '.join(sorted(unknown))}")
        # A string seed is hashed deterministically (not with the per-process hash salt).
        self._rngs = {name: random.Random(f"{self.seed}:{name}") for name in self.selectors}

    @property
    def active(self) -> bool:
        return bool(self.selectors) or self.crash_after is not None

    def next_request(self) -> tuple[int, str | None]:
        """Count one arriving generation request; return its number and its fault, if any.

        Every seeded generator draws for every request, whichever fault wins, so each
        fault's picks depend only on the request number and the seed.
        """
        self.arrivals += 1
        n = self.arrivals
        picked: str | None = None
        for name, _ in FAULT_ORDER:
            sel = self.selectors.get(name)
            if sel is None:
                continue
            if sel.every is not None:
                hit = n % sel.every == 0
            else:
                assert sel.rate is not None
                hit = self._rngs[name].random() < sel.rate
            if hit and picked is None:
                picked = name
        return n, picked

    def should_crash(self, n: int) -> bool:
        return self.crash_after is not None and n > self.crash_after

    def describe(self) -> str:
        """One line for the log: which faults this process injects."""
        parts = [f"{name} {sel}" for name, sel in self.selectors.items()]
        if self.crash_after is not None:
            parts.append(f"crash after {self.crash_after} requests")
        if self.slow_start_s:
            parts.append(f"slow start {self.slow_start_s:g} s")
        if self.crash_on_start:
            parts.append(f"crash on start ({self.crash_on_start})")
        return ", ".join(parts) + (f" (seed {self.seed})" if self.selectors else "")


def stop_point(max_tokens: int) -> int:
    """Tokens sent before a stall or a short finish: half the request, at least one."""
    return max(1, max_tokens // 2)
