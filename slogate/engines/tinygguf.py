"""Write a tiny random-weight Llama model as one GGUF file, for real llama.cpp tests.

llama.cpp (``llama-server``, ``llama_cpp.server``) loads one ``.gguf`` file: metadata
(architecture, shapes, tokenizer) and tensors.  slogate cannot download models, so this
module writes one from scratch with the standard library and numpy, following the GGUF
v3 layout (``ggml/docs/gguf.md``): header, key/value metadata, tensor infos, then the
tensor data, each tensor aligned to 32 bytes.  The model is a 2-layer Llama of width 64
with an SentencePiece-style vocabulary (control tokens, the 256 byte-fallback tokens and
a few hundred word pieces), F32 weights drawn from a fixed seed: about 1 MB, loaded in
well under a second on a CPU, and the same bytes every time.

CLI::

    python -m slogate.engines.tinygguf OUT.gguf
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["build_tiny_gguf", "main"]

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32

# gguf_type values (ggml/include/gguf.h)
UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
GGML_TYPE_F32 = 0
# llama_token_type values (llama.cpp: LLAMA_TOKEN_TYPE_*)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_BYTE = 1, 2, 3, 6

N_EMBD = 64
N_HEAD = 4
N_LAYER = 2
N_FF = 128
N_CTX = 2048
FIRST_WORD = 3 + 256  # after <unk>, <s>, </s> and the byte tokens
WORDS = (
    "the of and to in is was for on that with as by at from his her it an were are which "
    "this be or has had not but their they its one new first also been after who time "
    "two more other year can all into some when would there them than only most over "
    "made such about during under city world state high through up many these then each "
    "between where well may part now any while like both three same most second work "
    "people since life known called used national century team including became found "
    "home music great four school later although around system government company war"
).split()
UNIQUE_WORDS = tuple(dict.fromkeys(WORDS))
N_WORDS = len(UNIQUE_WORDS)


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """SentencePiece-style tokens, scores and types: control, bytes, words, letters."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]  # byte fallback: any text encodes
    types += [TOKEN_BYTE] * 256
    pieces = ["\u2581" + w for w in UNIQUE_WORDS] + list("abcdefghijklmnopqrstuvwxyz")
    pieces.append("\u2581")
    tokens += pieces
    types += [TOKEN_NORMAL] * len(pieces)
    scores = [0.0] * FIRST_WORD + [-float(i) for i in range(len(pieces))]
    return tokens, scores, types


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _value(kind: int, value: Any) -> bytes:
    if kind == UINT32:
        return struct.pack("<I", value)
    if kind == INT32:
        return struct.pack("<i", value)
    if kind == FLOAT32:
        return struct.pack("<f", value)
    if kind == BOOL:
        return struct.pack("<?", value)
    if kind == STRING:
        return _string(value)
    raise ValueError(f"unsupported GGUF value type {kind}")


def _kv(key: str, kind: int, value: Any, item: int | None = None) -> bytes:
    out = _string(key) + struct.pack("<I", kind)
    if kind == ARRAY:
        assert item is not None
        out += struct.pack("<IQ", item, len(value))
        return out + b"".join(_value(item, v) for v in value)
    return out + _value(kind, value)


def _pad(n: int) -> int:
    return (ALIGNMENT - n % ALIGNMENT) % ALIGNMENT


def tensors(n_vocab: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """The weights, each as (name, array of numpy shape = reversed GGUF dims)."""
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    ones = np.ones(N_EMBD, dtype=np.float32)
    # Large output rows for the "\u2581word" pieces only, zero for every other token:
    # their logits stay 0 while some word's is far above, so greedy decoding emits whole
    # words (random bytes would mostly be invalid UTF-8, tokens without text), one per
    # token, so a whitespace count equals the token count, and never end-of-sequence.
    output = np.zeros((n_vocab, N_EMBD), dtype=np.float32)
    output[FIRST_WORD : FIRST_WORD + N_WORDS] = w(N_WORDS, N_EMBD) * 40
    out = [("token_embd.weight", w(n_vocab, N_EMBD)), ("output_norm.weight", ones)]
    out.append(("output.weight", output))
    for i in range(N_LAYER):
        b = f"blk.{i}."
        out += [
            (b + "attn_norm.weight", ones),
            (b + "attn_q.weight", w(N_EMBD, N_EMBD)),
            (b + "attn_k.weight", w(N_EMBD, N_EMBD)),
            (b + "attn_v.weight", w(N_EMBD, N_EMBD)),
            (b + "attn_output.weight", w(N_EMBD, N_EMBD)),
            (b + "ffn_norm.weight", ones),
            (b + "ffn_gate.weight", w(N_FF, N_EMBD)),
            (b + "ffn_up.weight", w(N_FF, N_EMBD)),
            (b + "ffn_down.weight", w(N_EMBD, N_FF)),
        ]
    return out


def build_tiny_gguf(path: str | Path, seed: int = 0) -> Path:
    """Write the model to ``path`` (a ``.gguf`` file) and return the path."""
    path = Path(path)
    tokens, scores, types = vocabulary()
    metadata = [
        _kv("general.architecture", STRING, "llama"),
        _kv("general.name", STRING, "slogate-tiny-llama"),
        _kv("general.alignment", UINT32, ALIGNMENT),
        _kv("llama.context_length", UINT32, N_CTX),
        _kv("llama.embedding_length", UINT32, N_EMBD),
        _kv("llama.block_count", UINT32, N_LAYER),
        _kv("llama.feed_forward_length", UINT32, N_FF),
        _kv("llama.attention.head_count", UINT32, N_HEAD),
        _kv("llama.attention.head_count_kv", UINT32, N_HEAD),
        _kv("llama.attention.layer_norm_rms_epsilon", FLOAT32, 1e-5),
        _kv("llama.rope.dimension_count", UINT32, N_EMBD // N_HEAD),
        _kv("tokenizer.ggml.model", STRING, "llama"),
        _kv("tokenizer.ggml.tokens", ARRAY, tokens, STRING),
        _kv("tokenizer.ggml.scores", ARRAY, scores, FLOAT32),
        _kv("tokenizer.ggml.token_type", ARRAY, types, INT32),
        _kv("tokenizer.ggml.bos_token_id", UINT32, 1),
        _kv("tokenizer.ggml.eos_token_id", UINT32, 2),
        _kv("tokenizer.ggml.unknown_token_id", UINT32, 0),
        _kv("tokenizer.ggml.add_bos_token", BOOL, True),
    ]
    weights = tensors(len(tokens), seed)
    infos, blobs, offset = [], [], 0
    for name, array in weights:
        dims = tuple(reversed(array.shape))  # GGUF lists the fastest dimension first
        infos.append(
            _string(name)
            + struct.pack("<I", len(dims))
            + b"".join(struct.pack("<Q", d) for d in dims)
            + struct.pack("<IQ", GGML_TYPE_F32, offset)
        )
        data = np.ascontiguousarray(array).tobytes()
        blobs.append(data + b"\0" * _pad(len(data)))
        offset += len(blobs[-1])
    head = GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(weights), len(metadata))
    head += b"".join(metadata) + b"".join(infos)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(head + b"\0" * _pad(len(head)))
        for blob in blobs:
            fh.write(blob)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the .gguf file to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build_tiny_gguf(args.out, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
