"""Timing and capacity profiles of the simulated engine.

A ``Profile`` is pure data: every number that shapes the simulator's latency and
throughput lives here, none in ``engine.py``.  ``PROFILES`` maps the names accepted by
``python -m slogate.sim --profile`` to them.

The two ``h20-deepseek-r1-*`` profiles are calibrated to the user's measured tables
(DeepSeek-R1 FP8 on 8xH20, vLLM v0.8.2 and SGLang, random dataset 128/128 and 256/256,
``num_prompts == concurrency``); ``bench/calibrate_sim.py`` re-measures them and prints
the error against the seed rows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """Everything the step model needs to know about one engine on one machine."""

    name: str
    description: str
    # Decode step time in ms as a function of the number of sequences decoding in the
    # step: (batch_size, ms) points, ascending, interpolated linearly and held flat
    # outside the table.
    decode_ms: tuple[tuple[int, float], ...]
    # Attention cost of the KV in use: every step also takes this many ms per token of
    # context (prompt + generated) held by the running sequences, which is why the same
    # batch decodes slower at 256/256 than at 128/128.
    decode_ms_per_context_token: float
    # Prefill cost added to a step that prefills any prompt tokens:
    # prefill_base_ms + prefill_ms_per_token * tokens prefilled in that step.
    prefill_base_ms: float
    prefill_ms_per_token: float
    max_num_seqs: int
    # Prompt tokens a single step may prefill (vLLM --max-num-batched-tokens,
    # SGLang --chunked-prefill-size).
    max_num_batched_tokens: int
    # With chunked prefill a prompt may be split across steps to fill the budget;
    # without it a prompt is prefilled whole in one step.
    chunked_prefill: bool
    max_model_len: int
    # KV cache size in tokens.  A request is admitted only when its reservation,
    # prompt_tokens + max_tokens + kv_seq_overhead_tokens, fits in what is free.
    kv_capacity_tokens: int
    # Fixed KV cost per sequence on top of its tokens.  Physically: block rounding,
    # watermark and scheduler head-room; in the calibrated profiles it is what lets one
    # capacity reproduce both the ~64 concurrent 256/256 and the ~96 concurrent 128/128
    # sequences the vLLM table implies (a pure token count would make that ratio 2).
    kv_seq_overhead_tokens: int
    # Per-token end-of-sequence probability when the request does not set ignore_eos
    # (a geometric output length capped at max_tokens); with ignore_eos every request
    # produces exactly max_tokens.
    eos_prob: float

    def __post_init__(self) -> None:
        if not self.decode_ms:
            raise ValueError(f"profile {self.name}: decode_ms is empty")
        sizes = [b for b, _ in self.decode_ms]
        if sizes != sorted(set(sizes)) or sizes[0] < 1:
            raise ValueError(f"profile {self.name}: decode_ms batch sizes must ascend from >= 1")
        if any(ms <= 0 for _, ms in self.decode_ms):
            raise ValueError(f"profile {self.name}: decode_ms times must be positive")
        if self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ValueError(f"profile {self.name}: limits must be >= 1")
        if self.decode_ms_per_context_token < 0 or self.prefill_ms_per_token < 0:
            raise ValueError(f"profile {self.name}: per-token costs must be >= 0")
        if not 0.0 <= self.eos_prob < 1.0:
            raise ValueError(f"profile {self.name}: eos_prob must be in [0, 1)")

    def decode_time_ms(self, batch_size: int) -> float:
        """Piecewise-linear decode step time for ``batch_size`` decoding sequences."""
        if batch_size <= 0:
            return 0.0
        points = self.decode_ms
        if batch_size <= points[0][0]:
            return points[0][1]
        for (b0, t0), (b1, t1) in zip(points, points[1:], strict=False):
            if batch_size <= b1:
                return t0 + (t1 - t0) * (batch_size - b0) / (b1 - b0)
        return points[-1][1]

    def kv_reservation(self, prompt_tokens: int, max_tokens: int) -> int:
        """KV tokens a request holds from admission until it finishes."""
        return prompt_tokens + max_tokens + self.kv_seq_overhead_tokens


DEFAULT = Profile(
    name="default",
    description="fast generic engine for newcomers and CI: ms-scale steps, roomy KV cache",
    # Steps grow mildly with the batch, so concurrency still shows in TPOT; 12 ms at
    # 256 keeps a full batch near 20k tokens/s, which two cores can stream.
    decode_ms=((1, 4.0), (64, 6.0), (256, 12.0)),
    decode_ms_per_context_token=0.0,
    prefill_base_ms=8.0,
    prefill_ms_per_token=0.01,
    max_num_seqs=256,
    max_num_batched_tokens=8192,
    chunked_prefill=True,
    max_model_len=8192,
    kv_capacity_tokens=1_000_000,
    kv_seq_overhead_tokens=0,
    eos_prob=0.0,
)

# vLLM v0.8.2, DeepSeek-R1 FP8, TP 8 on 8xH20, the seed's server command:
# --max_num_seqs 256 --max-num-batched-tokens 16384 --max_model_len 4096
# --enable-chunked-prefill=False.
H20_DEEPSEEK_R1_VLLM = Profile(
    name="h20-deepseek-r1-vllm",
    description="vLLM v0.8.2, DeepSeek-R1 FP8, TP8 on 8xH20 (seed table 1)",
    # Seed TPOT: 110 ms at c=1, 116 / 121 ms at c=64 for 128/128 / 256/256: the batch
    # table plus the context term (~5 ms for 64 x 192 tokens, ~10 ms for 64 x 384).
    decode_ms=((1, 110.0), (8, 111.0), (32, 111.0), (64, 111.5), (128, 113.0), (256, 122.0)),
    decode_ms_per_context_token=0.0004,
    # TTFT 137 ms for one 128-token prompt, ~640 ms for 64 of them in one step.
    prefill_base_ms=129.0,
    prefill_ms_per_token=0.062,
    max_num_seqs=256,
    max_num_batched_tokens=16384,
    chunked_prefill=False,
    max_model_len=4096,
    # 64 reservations of 256+256+200 fit, and 99 of 128+128+200: the seed's plateaus
    # (~470 tok/s at 256/256, ~700 at 128/128, with TTFT exploding in waves).
    kv_capacity_tokens=45_600,
    kv_seq_overhead_tokens=200,
    # Mean output ~0.95x of 128 and ~0.90x of 256 requested, as in the seed.
    eos_prob=0.0008,
)

# SGLang (lmsysorg/sglang:ea52b45be1a7), DeepSeek-R1 FP8, TP 8 on 8xH20:
# --chunked-prefill-size 4096 --mem-fraction-static 0.90.
H20_DEEPSEEK_R1_SGLANG = Profile(
    name="h20-deepseek-r1-sglang",
    description="SGLang, DeepSeek-R1 FP8, TP8 on 8xH20 (seed table 2)",
    # Seed TPOT: 42 ms at c=1, ~53 at 8, ~85 at 32, ~105 at 64, ~126 at 128, ~180 at 256;
    # at high concurrency part of it is the chunked prefill steps, so the table is lower.
    decode_ms=(
        (1, 41.0),
        (4, 42.0),
        (8, 52.0),
        (16, 65.0),
        (32, 83.0),
        (64, 100.0),
        (128, 135.0),
        (256, 160.0),
    ),
    decode_ms_per_context_token=0.0,
    # TTFT 182 ms for one 128-token prompt.
    prefill_base_ms=155.0,
    prefill_ms_per_token=0.2,
    max_num_seqs=1024,  # SGLang sizes its running batch from memory: the KV limit binds
    max_num_batched_tokens=4096,
    chunked_prefill=True,
    max_model_len=65536,
    # 256 concurrent 128/128 fit, but only ~128 of 256/256 (TTFT 22 s at c=256).
    kv_capacity_tokens=66_000,
    kv_seq_overhead_tokens=0,
    # sglang.bench_serving sets ignore_eos by default, so its table shows full lengths.
    eos_prob=0.0,
)

PROFILES: dict[str, Profile] = {
    p.name: p for p in (DEFAULT, H20_DEEPSEEK_R1_VLLM, H20_DEEPSEEK_R1_SGLANG)
}
