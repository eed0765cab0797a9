"""Build a tiny, weight-less Llama-shaped model directory for real-engine tests.

vLLM (and other HF-format engines) need a model *directory*: ``config.json``,
a tokenizer and weights. slogate cannot download models, so this module writes
one from scratch:

* ``config.json``          -- a ``LlamaForCausalLM`` with 2 layers, hidden 128,
  2 query heads / 1 KV head of ``head_dim`` 64, ``max_position_embeddings``
  2048. ``vocab_size`` is set to the tokenizer's exact size, so every id a
  randomly-initialised model can sample decodes to a real token.
* ``generation_config.json`` -- bos/eos ids only (no sampling defaults, so the
  engine's own defaults / the request's parameters apply).
* ``tokenizer.json``       -- a byte-level BPE trained here with the
  ``tokenizers`` library on deterministic generated text (any UTF-8 input can
  be encoded; no ``<unk>``).
* ``tokenizer_config.json`` -- ``PreTrainedTokenizerFast`` with ``<s>``/``</s>``
  bos/eos, a ``<pad>`` token and a small Jinja ``chat_template`` so
  ``/v1/chat/completions`` works.

There are no weight files: start vLLM with ``--load-format dummy`` (random
weights). Outputs are byte-for-byte deterministic for the same arguments and
``tokenizers`` version.

Only ``tokenizers`` and the standard library are used (no ``transformers``).

CLI::

    python -m slogate.engines.tinymodel DIR [--vocab-size N] [--dtype float32]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

__all__ = [
    "BOS_TOKEN",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "CHAT_TEMPLATE",
    "DEFAULT_VOCAB_SIZE",
    "build_tiny_model",
    "model_fingerprint",
    "main",
]

BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"
ROLE_TOKENS: tuple[str, ...] = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS: tuple[str, ...] = (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, *ROLE_TOKENS)

DEFAULT_VOCAB_SIZE = 4096
DEFAULT_MAX_POSITION_EMBEDDINGS = 2048

#: Zephyr-like template. ``{{ bos_token }}`` is emitted by the template because
#: vLLM tokenizes rendered chat prompts with ``add_special_tokens=False``.
#: ``content`` may be a string or an OpenAI list of ``{"type": "text"}`` parts.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"
_PUNCT = (".", ".", ".", "?", "!", ",")


def _corpus(seed: int, n_lines: int = 8000) -> Iterator[str]:
    """Yield deterministic pseudo-English lines (words, numbers, punctuation)."""
    rng = random.Random(seed)
    # A Zipf-ish lexicon: a few hundred syllable words plus some common English.
    lexicon = [
        "the",
        "a",
        "of",
        "and",
        "to",
        "in",
        "is",
        "you",
        "that",
        "it",
        "for",
        "on",
        "with",
        "as",
        "are",
        "this",
        "be",
        "at",
        "by",
        "from",
        "or",
        "have",
        "not",
        "what",
        "all",
        "were",
        "we",
        "when",
        "your",
        "can",
        "said",
        "there",
        "use",
        "an",
        "each",
        "which",
        "do",
        "how",
        "their",
        "if",
        "will",
        "up",
        "other",
        "about",
        "out",
        "many",
        "then",
        "them",
        "token",
        "model",
        "latency",
        "request",
        "server",
        "stream",
        "time",
    ]
    for _ in range(2000):
        n_syl = rng.choice((1, 1, 2, 2, 2, 3, 3, 4))
        lexicon.append("".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(n_syl)))
    cum_weights = list(
        itertools.accumulate(1.0 / (rank + 1) ** 0.9 for rank in range(len(lexicon)))
    )
    for _ in range(n_lines):
        words: list[str] = []
        for _ in range(rng.randint(4, 24)):
            r = rng.random()
            if r < 0.05:
                words.append(str(rng.randint(0, 10_000)))
            else:
                w = rng.choices(lexicon, cum_weights=cum_weights)[0]
                words.append(w.capitalize() if not words or r > 0.97 else w)
        yield " ".join(words) + rng.choice(_PUNCT)


def _train_tokenizer(vocab_size: int, seed: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    bos_id = tok.token_to_id(BOS_TOKEN)
    # Llama-style: completions prompts get a leading <s>.
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS_TOKEN} $A",
                pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
                special_tokens=[(BOS_TOKEN, bos_id)],
            ),
        ]
    )
    return tok


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def build_tiny_model(
    path: Path | str,
    *,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    hidden_size: int = 128,
    intermediate_size: int = 256,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    num_key_value_heads: int = 1,
    head_dim: int = 64,
    max_position_embeddings: int = DEFAULT_MAX_POSITION_EMBEDDINGS,
    dtype: str = "bfloat16",
    seed: int = 0,
) -> Path:
    """Write a tiny Llama model directory (config + tokenizer, no weights).

    Args:
        path: Directory to create (parents too). Existing files written by this
            function are overwritten; other files are left alone.
        vocab_size: Target BPE vocabulary size including special tokens. The
            written ``config.json`` uses the trained tokenizer's exact size,
            which can be a little smaller if the corpus runs out of merges.
        hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
        num_key_value_heads, head_dim, max_position_embeddings: Llama shape.
        dtype: ``torch_dtype`` recorded in ``config.json`` ("bfloat16",
            "float32" or "float16"); vLLM's ``--dtype auto`` follows it.
        seed: Seed of the generated training text.

    Returns:
        The model directory as a :class:`Path`.
    """
    if vocab_size < 300:
        raise ValueError(f"vocab_size must be >= 300 (256 bytes + specials), got {vocab_size}")
    if num_attention_heads % num_key_value_heads:
        raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
    if dtype not in ("bfloat16", "float32", "float16"):
        raise ValueError(f"unsupported dtype {dtype!r}")

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)

    tok = _train_tokenizer(vocab_size, seed)
    real_vocab = tok.get_vocab_size(with_added_tokens=True)
    bos_id = tok.token_to_id(BOS_TOKEN)
    eos_id = tok.token_to_id(EOS_TOKEN)
    pad_id = tok.token_to_id(PAD_TOKEN)

    (out / "tokenizer.json").write_text(tok.to_str(pretty=True) + "\n", encoding="utf-8")

    added_tokens_decoder = {
        str(tok.token_to_id(t)): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t in SPECIAL_TOKENS
    }
    _write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": BOS_TOKEN,
            "eos_token": EOS_TOKEN,
            "pad_token": PAD_TOKEN,
            "add_bos_token": True,
            "add_eos_token": False,
            "added_tokens_decoder": added_tokens_decoder,
            "additional_special_tokens": list(ROLE_TOKENS),
            "chat_template": CHAT_TEMPLATE,
            "clean_up_tokenization_spaces": False,
            "model_max_length": max_position_embeddings,
            "padding_side": "left",
        },
    )
    _write_json(
        out / "special_tokens_map.json",
        {
            "bos_token": BOS_TOKEN,
            "eos_token": EOS_TOKEN,
            "pad_token": PAD_TOKEN,
            "additional_special_tokens": list(ROLE_TOKENS),
        },
    )
    _write_json(
        out / "config.json",
        {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "attention_bias": False,
            "attention_dropout": 0.0,
            "bos_token_id": bos_id,
            "eos_token_id": eos_id,
            "pad_token_id": pad_id,
            "head_dim": head_dim,
            "hidden_act": "silu",
            "hidden_size": hidden_size,
            "initializer_range": 0.02,
            "intermediate_size": intermediate_size,
            "max_position_embeddings": max_position_embeddings,
            "mlp_bias": False,
            "num_attention_heads": num_attention_heads,
            "num_hidden_layers": num_hidden_layers,
            "num_key_value_heads": num_key_value_heads,
            "rms_norm_eps": 1e-05,
            "rope_theta": 10000.0,
            "tie_word_embeddings": False,
            "torch_dtype": dtype,
            "use_cache": True,
            "vocab_size": real_vocab,
        },
    )
    _write_json(
        out / "generation_config.json",
        {"_from_model_config": True, "bos_token_id": bos_id, "eos_token_id": eos_id},
    )
    return out


def model_fingerprint(path: Path | str) -> str:
    """SHA-256 over the files :func:`build_tiny_model` writes (for cache keys)."""
    h = hashlib.sha256()
    for name in (
        "config.json",
        "generation_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        h.update(name.encode())
        h.update((Path(path) / name).read_bytes())
    return h.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: build the model dir and print its path."""
    p = argparse.ArgumentParser(
        prog="python -m slogate.engines.tinymodel",
        description="Write a tiny weight-less Llama model dir (use vLLM --load-format dummy).",
    )
    p.add_argument("dir", type=Path, help="output directory")
    p.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    p.add_argument("--max-position-embeddings", type=int, default=DEFAULT_MAX_POSITION_EMBEDDINGS)
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32", "float16"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = build_tiny_model(
        args.dir,
        vocab_size=args.vocab_size,
        max_position_embeddings=args.max_position_embeddings,
        dtype=args.dtype,
        seed=args.seed,
    )
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
