"""Prompts for the ``random`` dataset: exactly ``input_len`` tokens of the model's tokenizer.

vLLM's random dataset decodes random token ids into text, and the text may re-encode to a
different length (vllm #10847).  Here each prompt is decoded, re-encoded and corrected
until it encodes to exactly the requested length.  Lengths follow vLLM's
``--random-range-ratio``: uniform in ``[L*(1-r), L*(1+r)]``.

Without a tokenizer (no ``tokenizer.json`` found), prompts are whitespace-separated words,
counted one token per word.  That is exact for the built-in simulator and approximate for
anything else, which is why the suite warns when it falls back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from slogate.errors import ConfigError


class Tokenizer(Protocol):
    name: str
    exact: bool  # True when it is the engine's own tokenizer

    def count(self, text: str) -> int: ...

    def random_text(self, n_tokens: int, rng: random.Random) -> str: ...


_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
    "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu "
    "river stone cloud maple ember frost quartz meadow harbor lantern summit willow"
).split()


class WhitespaceTokenizer:
    """One token per whitespace-separated word: the simulator's own tokenizer."""

    name = "whitespace"

    def __init__(self, exact: bool = False) -> None:
        self.exact = exact

    def count(self, text: str) -> int:
        return len(text.split())

    def random_text(self, n_tokens: int, rng: random.Random) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(n_tokens))


class HFTokenizer:
    """A Hugging Face ``tokenizer.json`` loaded with the ``tokenizers`` library."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as _Tok

        self.path = path
        self.name = str(path)
        self.exact = True
        try:
            self._tok = _Tok.from_file(str(path))
        except Exception as exc:  # the library raises a bare Exception for bad files
            raise ConfigError(f"{path}: cannot load the tokenizer ({exc})") from None
        vocab = self._tok.get_vocab(with_added_tokens=True)
        special = {t.content for t in self._tok.get_added_tokens_decoder().values() if t.special}
        ordinary = sorted(i for tok, i in vocab.items() if tok not in special)
        if not ordinary:
            raise ConfigError(f"{path}: the tokenizer has no ordinary tokens")
        self._ids = np.array(self._word_tokens(ordinary) or ordinary, dtype=np.int64)

    def _word_tokens(self, ids: list[int], sample: int = 20000) -> list[int]:
        """Tokens that are one whole word with its leading space and encode back to
        themselves: a random sequence of them decodes to text that re-encodes to the same
        sequence, so prompts come out exact at once (random byte-level pieces would merge
        with their neighbours)."""
        rng = random.Random(0)
        candidates = ids if len(ids) <= sample else rng.sample(ids, sample)
        words = []
        for i in candidates:
            text = self._tok.decode([i])
            if len(text) > 1 and text[0] == " " and text[1:].isalpha():
                if self._tok.encode(text, add_special_tokens=False).ids == [i]:
                    words.append(i)
        return sorted(words) if len(words) >= 64 else []

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def random_text(self, n_tokens: int, rng: random.Random) -> str:
        gen = np.random.default_rng(rng.getrandbits(64))
        ids = [int(x) for x in gen.choice(self._ids, size=n_tokens)]
        text = self._tok.decode(ids)
        # Decoding then encoding can merge or split tokens; trim or extend until exact.
        for _ in range(32):
            enc = self.encode(text)
            if len(enc) == n_tokens:
                return text
            if len(enc) > n_tokens:
                text = self._tok.decode(enc[:n_tokens])
            else:
                extra = [int(x) for x in gen.choice(self._ids, size=n_tokens - len(enc))]
                text = self._tok.decode(enc + extra)
        raise ConfigError(
            f"{self.path}: could not make a prompt of exactly {n_tokens} tokens with this "
            f"tokenizer (decode/encode does not round-trip)"
        )


def find_tokenizer(tokenizer: str | None, model: str | None) -> Path | None:
    """``tokenizer.json`` from ``--tokenizer`` (file or dir), else from the model dir."""
    for candidate in (tokenizer, model):
        if not candidate:
            continue
        path = Path(candidate)
        if path.is_file() and path.name.endswith(".json"):
            return path
        if (path / "tokenizer.json").is_file():
            return path / "tokenizer.json"
        if candidate == tokenizer:
            raise ConfigError(
                f"--tokenizer {tokenizer}: no tokenizer.json there; point it at a model "
                f"directory or a tokenizer.json file"
            )
    return None


@dataclass(frozen=True)
class Prompt:
    text: str
    input_len: int
    output_len: int


def sample_lengths(length: int, range_ratio: float, n: int, rng: random.Random) -> list[int]:
    """vLLM's meaning: uniform integers in [L*(1-r), L*(1+r)], at least 1."""
    if range_ratio <= 0:
        return [length] * n
    lo = max(1, int(length * (1 - range_ratio)))
    hi = max(lo, int(length * (1 + range_ratio)))
    return [rng.randint(lo, hi) for _ in range(n)]


def random_prompts(
    tokenizer: Tokenizer,
    n: int,
    input_len: int,
    output_len: int,
    range_ratio: float = 0.0,
    seed: int = 0,
) -> list[Prompt]:
    """``n`` prompts of random tokens; the same seed gives the same prompts."""
    rng = random.Random(f"{seed}-{input_len}-{output_len}-{n}")
    ins = sample_lengths(input_len, range_ratio, n, rng)
    outs = sample_lengths(output_len, range_ratio, n, rng)
    return [Prompt(tokenizer.random_text(i, rng), i, o) for i, o in zip(ins, outs, strict=True)]
