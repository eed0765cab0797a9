"""The built-in engine simulator: an OpenAI-compatible server that behaves like vLLM.

``python -m slogate.sim`` serves ``/v1/completions`` and ``/v1/chat/completions``
(streaming or not, in vLLM's exact wire format), ``/health``, ``/v1/models``,
``/version``, vLLM-style Prometheus ``/metrics``, and its own ``/sim/stats`` and
``/sim/reset_stats``.  It lets the suite run end to end without a GPU, and since its
timing is known it is the ground truth for the client's accuracy tests.

CLI::

    python -m slogate.sim [--host 127.0.0.1] [--port 8000 | --fd FD] [--profile default]
                          [--time-scale 1.0] [--model sim-model] [--max-num-seqs N] [--seed 0]

It prints ``slogate-sim ready: profile=<p> time_scale=<x> url=http://host:port`` once
listening and exits promptly on SIGTERM/SIGINT.

For the suite's reliability tests it injects faults on demand (``faults.py``, options in
``python -m slogate.sim --help``): HTTP 500/429, stalled streams, malformed SSE, short
output, a crash after N requests, a slow start, a crash at start with a real engine's
error; every Nth request or a seeded fraction, so the counts are deterministic.  With
``SLOGATE_SIM_API_KEY`` set, ``/v1/*`` requires that bearer key, as vLLM's ``VLLM_API_KEY``.

Model (``engine.py``)
---------------------
One asyncio task steps a continuous-batching engine:

* Requests wait in a FIFO queue.  At the start of each step the head is admitted while
  the running set is below ``max_num_seqs``, the step's prompt-token budget
  (``max_num_batched_tokens``) is not spent, and the request's KV reservation
  ``prompt_tokens + max_tokens + kv_seq_overhead_tokens`` fits in the free KV capacity.
  The head blocks the rest (FCFS).  The KV limit is what makes throughput plateau and
  TTFT explode in waves past some concurrency, as on the real engines.
* Without chunked prefill a prompt is prefilled whole in its admission step; with it,
  prompts are split across steps to fill the budget.
* Step duration = ``decode_time(b) + decode_ms_per_context_token * context`` (``b``
  sequences decoding, ``context`` the tokens held by running sequences), plus
  ``prefill_base_ms + prefill_ms_per_token * n`` when the step prefills ``n`` prompt
  tokens.  ``decode_time`` interpolates linearly in a (batch size, ms) table.
* At the end of a step every decoding sequence emits one token, and a sequence whose
  prefill completed in that step emits its first token.  Output length is
  ``max_tokens`` with ``ignore_eos``; otherwise a per-token EOS probability may end it
  early (``finish_reason`` "stop").
* Steps run on absolute deadlines (``loop.time()``), so timer overshoot never adds up;
  every duration is divided by ``--time-scale``.  A step more than 100 ms late is not
  caught up (the clock restarts); ``/sim/stats`` reports ``max_step_lag_ms`` and
  ``lag_resets`` so a caller can tell whether the host kept up.
* A client that disconnects has its request aborted, freeing its slot and KV.

Tokens are whitespace words: a prompt has one token per word (chat: summed over message
contents) and every generated token is the word ``" tok"``, so re-counting the output by
whitespace equals ``usage.completion_tokens``.

Profiles (``profiles.py``)
--------------------------
``default``
    Fast, for newcomers and CI: decode 4 ms (batch 1) .. 6 ms (64) .. 12 ms (256),
    prefill 8 ms + 0.01 ms/token with chunked prefill (8192 tokens/step),
    ``max_num_seqs`` 256, 1M-token KV cache, no early EOS.  A sweep of 128/128 and
    256/256 over concurrency 1..1024 takes about a minute.
``h20-deepseek-r1-vllm``
    vLLM v0.8.2, DeepSeek-R1 FP8 on 8xH20 with the seed's server arguments
    (``max_num_seqs`` 256, ``max-num-batched-tokens`` 16384, chunked prefill off,
    ``max_model_len`` 4096): decode 110 ms (batch 1) .. 111.5 ms (64) .. 122 ms (256)
    plus 0.0004 ms per context token, prefill 129 ms + 0.062 ms/token, KV 45.6k tokens
    with a 200-token overhead per sequence (64 concurrent 256/256, ~100 concurrent
    128/128), EOS probability 0.0008 per token (mean output ~0.95x of 128, ~0.9x of 256).
``h20-deepseek-r1-sglang``
    SGLang, same model and machine (``--chunked-prefill-size 4096``): decode 41 ms
    (batch 1) .. 100 ms (64) .. 135 ms (128) .. 160 ms (256), prefill
    155 ms + 0.2 ms/token in 4096-token chunks, KV 66k tokens (all 256 of 128/128 fit,
    ~128 of 256/256), no early EOS (``sglang.bench_serving`` sets ``ignore_eos``).

The calibrated profiles reproduce the seed tables' mean TPOT and output throughput at
concurrency 1, 64 and 256 for 128/128 and 256/256 within 20%;
``bench/calibrate_sim.py`` measures that through HTTP and prints the table.  Mean TTFT is
reported there too but not calibrated beyond c=1: the seed's TTFT at high concurrency
depends on scheduler details (preemption, admission order) that this model leaves out,
and with ``--time-scale`` the real HTTP overhead is magnified by the scale.
"""
