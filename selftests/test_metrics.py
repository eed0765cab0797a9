"""Metric definitions on hand-built records, where the right answer is known."""

from __future__ import annotations

import pytest

from slogate.metrics import distribution, summarize
from slogate.records import RequestRecord

MS = 1_000_000


def record(
    index: int,
    sent: int,
    chunks_ms: list[int],
    tokens: int | None = None,
    status: str = "ok",
    warmup: bool = False,
) -> RequestRecord:
    chunk_ns = [sent + c * MS for c in chunks_ms]
    return RequestRecord(
        index=index,
        input_len=100,
        max_tokens=len(chunks_ms),
        sent_ns=sent,
        first_token_ns=chunk_ns[0] if chunk_ns else None,
        last_token_ns=chunk_ns[-1] if chunk_ns else None,
        done_ns=(chunk_ns[-1] if chunk_ns else sent) + MS,
        chunk_ns=chunk_ns,
        output_tokens=tokens if tokens is not None else len(chunks_ms),
        output_tokens_source="usage",
        status=status,
        warmup=warmup,
    )


def test_ttft_tpot_itl_e2el() -> None:
    r = record(0, 0, [200, 220, 240, 260, 280])
    assert r.ttft_ns == 200 * MS
    assert r.e2el_ns == 280 * MS
    assert r.tpot_ns == pytest.approx(20 * MS)  # (280 - 200) / (5 - 1)
    assert r.itl_ns == [20 * MS] * 4


def test_tpot_uses_server_token_count_not_chunks() -> None:
    # 3 chunks carrying 9 tokens (e.g. speculative decoding): TPOT is per token, ITL per chunk
    r = record(0, 0, [100, 190, 280], tokens=9)
    assert r.tpot_ns == pytest.approx(180 * MS / 8)
    assert r.tokens_per_chunk == 3
    s = summarize([r])
    assert s["mean_itl_ms"] == pytest.approx(90)
    assert s["mean_tokens_per_chunk"] == 3


def test_tpot_undefined_below_two_tokens() -> None:
    assert record(0, 0, [100], tokens=1).tpot_ns is None


def test_summary_counts_failures_and_excludes_warmup() -> None:
    recs = [
        record(-1, 0, [5000, 6000], warmup=True),  # warm-up: outside the window and stats
        record(0, 10_000 * MS, [100, 120, 140]),
        record(1, 10_000 * MS, [300, 320, 340]),
        record(2, 10_000 * MS, [], status="http_error"),
    ]
    s = summarize(recs, {"ttft": 200})
    assert s["num_prompts"] == 3 and s["completed"] == 2 and s["failed"] == 1
    assert s["errors_by_class"]["http_error"] == 1
    assert s["error_rate"] == pytest.approx(1 / 3)
    assert s["mean_ttft_ms"] == pytest.approx(200)
    assert s["count_ttft"] == 2
    # window: first send (10 s) -> last completion (10.341 s)
    assert s["duration"] == pytest.approx(0.341)
    assert s["output_throughput"] == pytest.approx(6 / 0.341)
    assert s["input_throughput"] == pytest.approx(200 / 0.341)
    # goodput: only request 0 has TTFT <= 200 ms; the failed one is never good
    assert s["good_requests"] == 1
    assert s["good_fraction"] == pytest.approx(1 / 3)
    # lengths as vLLM's result JSON lists them: every measured request, 0 output if it failed
    assert s["input_lens"] == [100, 100, 100] and s["output_lens"] == [3, 3, 0]
    assert s["mean_input_len"] == 100 and s["mean_output_len"] == 2


def test_distribution_matches_numpy_linear_percentiles() -> None:
    d = distribution("ttft", [1.0, 2.0, 3.0, 4.0, 100.0])
    assert d["median_ttft_ms"] == 3.0
    assert d["p90_ttft_ms"] == pytest.approx(4 + 0.6 * 96)
    assert d["max_ttft_ms"] == 100.0 and d["min_ttft_ms"] == 1.0
    assert distribution("x", [])["mean_x_ms"] is None
