"""Random prompts: exact token lengths with a real tokenizer, vLLM's range ratio."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from slogate.errors import ConfigError
from slogate.loadgen.dataset import (
    HFTokenizer,
    WhitespaceTokenizer,
    find_tokenizer,
    random_prompts,
    sample_lengths,
)


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer trained here: decode/encode does not round-trip exactly."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<s>", "</s>"])
    rng = random.Random(0)
    words = ["serve", "token", "latency", "engine", "batch", "the", "of", "GPU", "1024"]
    corpus = [" ".join(rng.choice(words) for _ in range(30)) for _ in range(300)]
    tok.train_from_iterator(corpus, trainer)
    path = tmp_path_factory.mktemp("model")
    tok.save(str(path / "tokenizer.json"))
    return path


@pytest.mark.parametrize("length", [1, 7, 128, 256])
def test_prompts_encode_to_exactly_input_len(bpe_dir: Path, length: int) -> None:
    tok = HFTokenizer(bpe_dir / "tokenizer.json")
    prompts = random_prompts(tok, 20, length, 16, seed=3)
    assert [tok.count(p.text) for p in prompts] == [length] * 20
    if length >= 7:  # no shared prompts (no prefix-cache hits)
        assert len({p.text for p in prompts}) == 20


def test_special_tokens_are_never_sampled(bpe_dir: Path) -> None:
    tok = HFTokenizer(bpe_dir / "tokenizer.json")
    text = " ".join(p.text for p in random_prompts(tok, 10, 200, 1))
    assert "<s>" not in text and "</s>" not in text


def test_same_seed_same_prompts() -> None:
    tok = WhitespaceTokenizer()
    a = random_prompts(tok, 5, 32, 8, seed=1)
    assert a == random_prompts(tok, 5, 32, 8, seed=1)
    assert a != random_prompts(tok, 5, 32, 8, seed=2)
    assert all(tok.count(p.text) == 32 for p in a)


def test_range_ratio_has_vllms_meaning() -> None:
    rng = random.Random(0)
    lens = sample_lengths(100, 0.5, 2000, rng)
    assert min(lens) == 50 and max(lens) == 150
    assert sample_lengths(100, 0.0, 3, rng) == [100, 100, 100]


def test_find_tokenizer(bpe_dir: Path, tmp_path: Path) -> None:
    assert find_tokenizer(None, str(bpe_dir)) == bpe_dir / "tokenizer.json"
    assert find_tokenizer(None, "deepseek-ai/DeepSeek-R1") is None  # a hub name: fall back
    with pytest.raises(ConfigError, match="--tokenizer"):
        find_tokenizer(str(tmp_path), None)
