"""Microbenchmarks of the client's hot path, so a slowdown shows up as a number.

    pytest bench                 # table of timings per operation
    pytest bench --benchmark-compare   # against the last saved run (--benchmark-autosave)

What runs while a case's load is in flight is ``StreamingConnection.data_received``
(stamp + de-chunk) for every read; parsing and record building run after the load.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from slogate.loadgen.dataset import Prompt, WhitespaceTokenizer
from slogate.loadgen.http import StreamingConnection
from slogate.loadgen.runner import LoadSpec, _Job, to_record
from slogate.loadgen.sse import parse_stream
from slogate.metrics import summarize

TOKENS = 256


def sse_event(i: int) -> bytes:
    obj = {
        "id": "cmpl-0123456789",
        "object": "text_completion",
        "created": 1700000000,
        "model": "/mnt/models/DeepSeek-R1",
        "choices": [
            {
                "index": 0,
                "text": f" tok{i}",
                "logprobs": None,
                "finish_reason": None,
                "stop_reason": None,
            }
        ],
        "usage": None,
    }
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


EVENTS = [sse_event(i) for i in range(TOKENS)]
USAGE = (
    b'data: {"id":"c","object":"text_completion","created":1,"model":"m","choices":[],'
    b'"usage":{"prompt_tokens":128,"total_tokens":384,"completion_tokens":256}}\n\n'
)
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
READS = [HEAD] + [b"%x\r\n%s\r\n" % (len(e), e) for e in EVENTS + [USAGE, b"data: [DONE]\n\n"]]
READS.append(b"0\r\n\r\n")
PIECES = [(1_000_000 * i, e) for i, e in enumerate(EVENTS + [USAGE, b"data: [DONE]\n\n"])]


class _FakeTransport(asyncio.Transport):
    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def _one_response() -> None:
    conn = _LOOP_CONN
    conn._waiter = _FakeFuture()
    conn._resp = conn._resp.__class__()
    conn._state = 0
    conn._buf = b""
    for read in READS:
        conn.data_received(read)


class _FakeFuture:
    def done(self) -> bool:
        return False

    def set_result(self, value: Any) -> None:
        pass


_LOOP_CONN = StreamingConnection()
_LOOP_CONN.connection_made(_FakeTransport())


def test_data_received_per_response_of_256_chunks(benchmark: Any) -> None:
    """Stamp + de-chunk every read of one 256-token response (one read per chunk)."""
    benchmark(_one_response)
    assert len(_LOOP_CONN._resp.pieces) == TOKENS + 2


def test_parse_stream_256_chunks(benchmark: Any) -> None:
    result = benchmark(parse_stream, PIECES)
    assert result.completion_tokens == 256 and len(result.text_chunk_ns) == TOKENS


def test_record_building_256_chunks(benchmark: Any) -> None:
    from slogate.loadgen.http import Response

    resp = Response(
        status=200,
        headers={"content-type": "text/event-stream"},
        pieces=PIECES,
        headers_ns=1,
        done_ns=PIECES[-1][0],
    )
    job = _Job(0, Prompt("x " * 128, 128, 256), b"", False, sent_ns=0, response=resp)
    spec = LoadSpec(base_url="http://127.0.0.1:1", model="m")
    record = benchmark(to_record, job, WhitespaceTokenizer(), spec)
    assert record.ok and record.output_tokens == 256


def test_summary_of_1024_requests(benchmark: Any) -> None:
    from slogate.loadgen.http import Response

    resp = Response(
        status=200,
        headers={"content-type": "text/event-stream"},
        pieces=PIECES,
        headers_ns=1,
        done_ns=PIECES[-1][0],
    )
    spec = LoadSpec(base_url="http://127.0.0.1:1", model="m")
    records = [
        to_record(
            _Job(i, Prompt("x", 128, 256), b"", False, 0, response=resp),
            WhitespaceTokenizer(),
            spec,
        )
        for i in range(1024)
    ]
    summary = benchmark(summarize, records)
    assert summary["completed"] == 1024
