"""Native request formats: SGLang's ``/generate`` and Ollama's ``/api/generate``.

Each is one small class registered in ``slogate.loadgen.apis`` (use them with
``endpoint: sglang_generate`` / ``endpoint: ollama_generate`` in a matrix).  Like the
OpenAI parsers, they run after the load has ended, on the body pieces with their
arrival times, and raise only ``SSEError`` on malformed input.

``sglang_generate``
    ``POST /generate`` with ``{"text", "sampling_params", "stream": true}``.  SGLang
    streams SSE ``data: {"text": ..., "meta_info": {...}}`` events and ``data: [DONE]``;
    ``text`` is the *cumulative* output so far (what ``sglang.bench_serving``'s
    ``async_request_sglang_generate`` assumes: ``generated_text = data["text"]``), so a
    chunk carries new text when the cumulative text grew.  ``meta_info`` holds
    ``prompt_tokens``, ``completion_tokens`` and ``finish_reason`` (``{"type": "length",
    ...}`` or ``None``).  Checked against ``python/sglang/srt/entrypoints/http_server.py``
    (``generate_request``: ``b"data: " + orjson.dumps(out) + b"\\n\\n"`` then
    ``data: [DONE]``, errors as ``{"error": {"message": ...}}``) and
    ``tokenizer_manager.py`` (``out_dict = {"text": state.text, ..., "meta_info": ...}``).
    Servers started with ``--incremental-streaming-output`` send deltas instead; use the
    ``completions`` format against them.

``ollama_generate``
    ``POST /api/generate`` with ``{"model", "prompt", "stream": true, "raw": true,
    "options": {"num_predict", "temperature"}}``.  Ollama streams NDJSON
    (``application/x-ndjson``): one JSON object per line, ``{"response": "tok", "done":
    false}`` ... then ``{"done": true, "done_reason", "prompt_eval_count", "eval_count",
    "eval_duration", ...}`` (``api/types.go`` ``GenerateResponse`` + ``Metrics``,
    ``server/routes.go`` ``streamResponse``: ``json.Marshal`` + ``"\\n"``).  ``raw`` skips
    the Modelfile's prompt template, so the prompt is exactly the ``input_len`` tokens
    slogate built, as with ``/v1/completions``.  Ollama has no ``ignore_eos``: a model may
    stop before ``num_predict`` tokens, so run Ollama cases with ``ignore_eos: false`` or
    expect ``truncated`` requests.  Ollama's own timings (``eval_duration`` /
    ``eval_count`` is its server-side TPOT) are kept in ``NativeStreamResult.server_timings``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from slogate.loadgen.apis import Request, register
from slogate.loadgen.sse import SSEError, StreamResult, event_data, iter_events, json_object


@dataclass
class NativeStreamResult(StreamResult):
    """A ``StreamResult`` plus the engine's own timings, when it reports them (Ollama)."""

    server_timings: dict[str, float] = field(default_factory=dict)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error_text(err: Any) -> str:
    msg = err.get("message") if isinstance(err, dict) else err
    return str(msg or err)[:500]


# -- SGLang ----------------------------------------------------------------------------


class SglangGenerate:
    name: ClassVar[str] = "sglang_generate"
    path: ClassVar[str] = "/generate"

    def body(self, req: Request) -> dict[str, Any]:
        # /generate serves the one model the server loaded: there is no model field.
        return {
            "text": req.prompt,
            "sampling_params": {
                "max_new_tokens": req.max_tokens,
                "ignore_eos": req.ignore_eos,
                "temperature": 0.0,
            },
            "stream": req.stream,
        }

    def parse(self, pieces: Iterable[tuple[int, bytes]], content_type: str) -> StreamResult:
        if "text/event-stream" in content_type:
            return parse_sglang_stream(pieces)
        pieces = list(pieces)
        result = NativeStreamResult(done=True)
        _apply_sglang(result, json_object(b"".join(p for _, p in pieces), "response"))
        result.text_chunk_ns = [pieces[-1][0]] if result.text and pieces else []
        return result


def _apply_sglang(result: NativeStreamResult, obj: dict[str, Any]) -> bool:
    """Fold one SGLang output object into ``result``; True when the text grew."""
    if "error" in obj:
        result.error = _error_text(obj["error"])
        return False
    text = obj.get("text")
    meta = obj.get("meta_info")
    if not isinstance(text, str) or not isinstance(meta, dict):
        # token-id (--skip-tokenizer-init) or embedding outputs carry no text to time
        raise SSEError(f"not an SGLang text output (no 'text'/'meta_info'): {obj!r:.80}")
    grew = len(text) > len(result.text)
    if grew or not result.text:
        result.text = text
    ct, pt = _int(meta.get("completion_tokens")), _int(meta.get("prompt_tokens"))
    if ct is not None:
        result.completion_tokens = ct
    if pt is not None:
        result.prompt_tokens = pt
    reason = meta.get("finish_reason")
    if isinstance(reason, dict):
        kind = reason.get("type")
        result.finish_reason = str(kind) if kind is not None else None
        if kind == "abort":
            # an aborted request (prompt too long, server shutting down) ends "normally"
            result.error = _error_text(reason)
    elif isinstance(reason, str):
        result.finish_reason = reason
    return grew


def parse_sglang_stream(pieces: Iterable[tuple[int, bytes]]) -> NativeStreamResult:
    """Parse a streamed ``/generate`` body. Raises ``SSEError`` if it is malformed."""
    result = NativeStreamResult()
    for t, event in iter_events(pieces):
        data = event_data(event)
        if data is None:
            continue
        if data.strip() == b"[DONE]":
            result.done = True
            continue
        if _apply_sglang(result, json_object(data)):
            result.text_chunk_ns.append(t)
    return result


# -- Ollama ----------------------------------------------------------------------------

#: Counters and durations (ns) Ollama puts on its final object, kept as reported.
OLLAMA_TIMINGS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


class OllamaGenerate:
    name: ClassVar[str] = "ollama_generate"
    path: ClassVar[str] = "/api/generate"

    def body(self, req: Request) -> dict[str, Any]:
        # No ignore_eos in Ollama's options: req.ignore_eos cannot be honoured.
        return {
            "model": req.model,
            "prompt": req.prompt,
            "stream": req.stream,
            "raw": True,
            "options": {"num_predict": req.max_tokens, "temperature": 0.0},
        }

    def parse(self, pieces: Iterable[tuple[int, bytes]], content_type: str) -> StreamResult:
        if "ndjson" in content_type:
            return parse_ollama_stream(pieces)
        # stream: false answers one JSON object without a trailing newline (gin's c.JSON)
        pieces = list(pieces)
        result = NativeStreamResult()
        body = b"".join(p for _, p in pieces)
        if _apply_ollama(result, json_object(body, "response")) and pieces:
            result.text_chunk_ns = [pieces[-1][0]]
        return result


def iter_lines(pieces: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, bytes]]:
    """Yield (arrival ns, line) for every non-empty newline-terminated line."""
    buf = b""
    for t, piece in pieces:
        buf = buf + piece if buf else piece
        start = 0
        while True:
            i = buf.find(b"\n", start)
            if i < 0:
                break
            line = buf[start:i].strip()
            if line:
                yield t, line
            start = i + 1
        buf = buf[start:]
    rest = buf.strip()
    if rest:
        # Ollama ends every object with "\n"; a partial line means the stream was cut.
        raise SSEError(f"stream ended inside a line: {rest[:80]!r}")


def _apply_ollama(result: NativeStreamResult, obj: dict[str, Any]) -> bool:
    """Fold one Ollama object into ``result``; True when it carried generated text."""
    if "error" in obj:
        result.error = _error_text(obj["error"])
        return False
    # "thinking" (Ollama >= 0.9 with think: true) is generated text, as reasoning_content
    # is for the OpenAI formats.
    parts = [obj.get("thinking"), obj.get("response")]
    if any(p is not None and not isinstance(p, str) for p in parts):
        raise SSEError(f"'response' is not a string: {obj!r:.80}")
    text = "".join(p for p in parts if p)
    result.text += text
    if obj.get("done") is True:
        result.done = True
        reason = obj.get("done_reason")
        result.finish_reason = str(reason) if reason is not None else None
        for key in OLLAMA_TIMINGS:
            value = _int(obj.get(key))
            if value is not None:
                result.server_timings[key] = value
        result.completion_tokens = _int(obj.get("eval_count"))
        result.prompt_tokens = _int(obj.get("prompt_eval_count"))
        count, dur = _int(obj.get("eval_count")), _int(obj.get("eval_duration"))
        if count and dur:
            result.server_timings["tpot_ms"] = dur / count / 1e6
    return bool(text)


def parse_ollama_stream(pieces: Iterable[tuple[int, bytes]]) -> NativeStreamResult:
    """Parse a streamed ``/api/generate`` body. Raises ``SSEError`` if it is malformed."""
    result = NativeStreamResult()
    for t, line in iter_lines(pieces):
        if _apply_ollama(result, json_object(line, "line")):
            result.text_chunk_ns.append(t)
    return result


register(SglangGenerate())
register(OllamaGenerate())
