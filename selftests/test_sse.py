"""SSE parsing: vLLM's chunk format, arbitrary read boundaries, and malformed input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slogate.loadgen.sse import SSEError, iter_events, parse_stream


def completion_chunk(text: str) -> bytes:
    obj = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "text": text, "logprobs": None, "finish_reason": None, "stop_reason": None}
        ],
        "usage": None,
    }
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


USAGE = (
    b'data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m",'
    b'"choices":[],"usage":{"prompt_tokens":7,"total_tokens":10,"completion_tokens":3}}\n\n'
)
DONE = b"data: [DONE]\n\n"


def test_vllm_completion_stream() -> None:
    body = [
        (10, completion_chunk(" a")),
        (20, completion_chunk(" b")),
        (30, completion_chunk(" c") + USAGE + DONE),
    ]
    r = parse_stream(body)
    assert r.text == " a b c"
    assert r.text_chunk_ns == [10, 20, 30]
    assert (r.completion_tokens, r.prompt_tokens, r.done) == (3, 7, True)


def test_chat_reasoning_counts_as_generated_text() -> None:
    chunks = [
        {"choices": [{"delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"delta": {"reasoning_content": "think"}}]},
        {"choices": [{"delta": {"content": "answer"}, "finish_reason": "stop"}]},
    ]
    body = [(i, b"data: " + json.dumps(c).encode() + b"\n\n") for i, c in enumerate(chunks)]
    r = parse_stream(body + [(9, DONE)])
    assert r.text_chunk_ns == [1, 2]  # the empty role chunk is not a token
    assert r.text == "thinkanswer" and r.finish_reason == "stop"


def test_event_time_is_when_its_last_byte_arrived() -> None:
    whole = completion_chunk(" a")
    body = [(1, whole[:10]), (2, whole[10:]), (3, DONE)]
    assert parse_stream(body).text_chunk_ns == [2]


@given(st.lists(st.integers(min_value=1, max_value=400), max_size=12))
@settings(max_examples=200, deadline=None)
def test_any_split_of_the_bytes_gives_the_same_events(cuts: list[int]) -> None:
    whole = b"".join(completion_chunk(f" t{i}") for i in range(5)) + USAGE + DONE
    points = sorted({min(c, len(whole)) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(whole)]:
        if p > last:
            pieces.append((p, whole[last:p]))
            last = p
    r = parse_stream(pieces)
    assert r.text == " t0 t1 t2 t3 t4" and r.completion_tokens == 3 and r.done


def test_crlf_line_endings() -> None:
    body = completion_chunk(" a").replace(b"\n", b"\r\n") + DONE.replace(b"\n", b"\r\n")
    assert parse_stream([(1, body[:7]), (2, body[7:])]).text == " a"


@pytest.mark.parametrize(
    "body",
    [
        b"data: {not json}\n\n",
        b"data: [1, 2]\n\n",
        b"garbage line\n\n",
        b'data: {"choices": 5}\n\n',
        completion_chunk(" a")[:-1],
    ],
)
def test_malformed_streams_raise_sse_error(body: bytes) -> None:
    with pytest.raises(SSEError):
        parse_stream([(1, body)])


def test_error_event_is_reported() -> None:
    body = b'data: {"object":"error","message":"boom","code":500}\n\n' + DONE
    assert parse_stream([(1, body)]).error == "boom"


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_fuzz_parser_raises_only_its_own_error(data: bytes) -> None:
    try:
        parse_stream([(1, data)])
    except SSEError:
        pass


def test_iter_events_skips_comments() -> None:
    events = list(iter_events([(5, b": keep-alive\n\ndata: x\n\n")]))
    assert events == [(5, b": keep-alive"), (5, b"data: x")]
