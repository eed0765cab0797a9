"""The per-request record: what the load generator measured for one request.

Times are ``time.perf_counter_ns()`` values taken when bytes arrived, before any parsing.
Records are plain data so that metrics can be computed and tested without a server.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Failure classes; every request that is not ``ok`` has exactly one.
ERROR_CLASSES = (
    "http_error",  # the server answered with a non-200 status
    "connection_error",  # could not connect, or the connection dropped before a response
    "timeout",  # the whole request, or a stalled stream, ran past its deadline
    "stream_error",  # malformed SSE, an error event in the stream, a broken stream
    "empty",  # a 200 response that carried no generated text
    "truncated",  # fewer output tokens than asked for while ignore_eos was set
)


@dataclass
class RequestRecord:
    """One request as the client saw it."""

    index: int
    input_len: int  # prompt tokens as counted by the client's tokenizer
    max_tokens: int
    sent_ns: int = 0
    scheduled_ns: int | None = None  # open-loop mode: when the schedule wanted it sent
    first_token_ns: int | None = None  # first chunk carrying generated text
    last_token_ns: int | None = None  # last chunk carrying generated text
    done_ns: int = 0  # response fully read (after [DONE])
    chunk_ns: list[int] = field(default_factory=list)  # arrival of each text-bearing chunk
    output_tokens: int | None = None
    output_tokens_source: str = ""  # "usage" (server) or "tokenizer" (client re-count)
    prompt_tokens_server: int | None = None  # usage.prompt_tokens, when the server sent it
    status: str = "ok"  # "ok" or one of ERROR_CLASSES
    http_status: int | None = None
    error: str = ""
    warmup: bool = False
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def ttft_ns(self) -> int | None:
        if self.first_token_ns is None:
            return None
        return self.first_token_ns - self.sent_ns

    @property
    def e2el_ns(self) -> int | None:
        if self.last_token_ns is None:
            return None
        return self.last_token_ns - self.sent_ns

    @property
    def tpot_ns(self) -> float | None:
        """(E2E - TTFT) / (output_tokens - 1); undefined below 2 output tokens."""
        if self.first_token_ns is None or self.last_token_ns is None:
            return None
        if not self.output_tokens or self.output_tokens < 2:
            return None
        return (self.last_token_ns - self.first_token_ns) / (self.output_tokens - 1)

    @property
    def itl_ns(self) -> list[int]:
        """Gaps between successive text-bearing chunks."""
        c = self.chunk_ns
        return [b - a for a, b in zip(c, c[1:], strict=False)]

    @property
    def tokens_per_chunk(self) -> float | None:
        if not self.output_tokens or not self.chunk_ns:
            return None
        return self.output_tokens / len(self.chunk_ns)

    def to_json(self, origin_ns: int) -> dict[str, Any]:
        """A JSON-friendly line: times in ms relative to ``origin_ns`` (the case's start)."""

        def rel(t: int | None) -> float | None:
            return None if t is None else round((t - origin_ns) / 1e6, 4)

        def ms(t: float | None) -> float | None:
            return None if t is None else round(t / 1e6, 4)

        row = asdict(self)
        del row["chunk_ns"], row["text"]
        for key in ("sent_ns", "scheduled_ns", "first_token_ns", "last_token_ns", "done_ns"):
            row[key.replace("_ns", "_ms")] = rel(row.pop(key))
        row["ttft_ms"] = ms(self.ttft_ns)
        row["tpot_ms"] = ms(self.tpot_ns)
        row["e2el_ms"] = ms(self.e2el_ns)
        row["chunks"] = len(self.chunk_ns)
        row["tokens_per_chunk"] = self.tokens_per_chunk
        if self.scheduled_ns is not None and self.first_token_ns is not None:
            row["ttft_from_schedule_ms"] = ms(self.first_token_ns - self.scheduled_ns)
        return row
