"""Matrix loading: expansion, ids, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from slogate.errors import ConfigError
from slogate.matrix import Overrides, load_matrix

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_default_matrix_is_the_users_sweep() -> None:
    m = load_matrix(ROOT / "matrices" / "default.yaml")
    conc = [1, 2, 4, 8, 16, 32, 64, 128, 200, 256, 512, 1024]
    assert [(c.input_len, c.output_len, c.concurrency) for c in m.cases] == [
        (i, i, c) for i in (128, 256) for c in conc
    ]
    assert m.cases[6].id == "c64-in128-out128"
    assert m.cases[6].file_stem == "serving_benchmark_64_128_128"
    assert all(c.slo["p90_ttft_ms"] == 2000 for c in m.cases)
    assert m.cases[0].num_prompts == 32 and m.cases[-1].num_prompts == 1024


def test_block_settings_override_defaults_and_merge_slo(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
defaults: {slo: {p99_ttft_ms: 2000, error_rate: 0}, min_prompts: 4}
sweep:
  - lengths: 512x64
    concurrency: [2]
    slo: {p99_ttft_ms: 5000}
    endpoint: chat
""",
    )
    (case,) = load_matrix(path).cases
    assert case.slo == {"p99_ttft_ms": 5000, "error_rate": 0}
    assert case.endpoint == "chat" and case.num_prompts == 4
    assert (case.input_len, case.output_len) == (512, 64)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "sweep:\n  - lengths: [128x128]\n    concurency: [1]\n",
            ": sweep[0]: unknown key 'concurency'",
        ),
        ("sweep:\n  - lengths: [128x128]\n    concurrency: [0]\n", "positive"),
        ("sweep:\n  - lengths: [128x128]\n    concurrency: [-4]\n", "positive"),
        ("sweep:\n  - lengths: [12-8]\n    concurrency: [1]\n", "INPUTxOUTPUT"),
        (
            "defaults: {ignore_eos: 'yes'}\nsweep: []\n",
            ": defaults.ignore_eos: expected true or false",
        ),
        ("defaults: {slo: {p99_ttft: 1}}\nsweep: []\n", "unknown SLO 'p99_ttft'"),
        ("defaults: {range_ratio: 1.0}\nsweep: []\n", "fixed lengths are r=0"),
        ("sweep: [\n", "malformed YAML at line"),
        ("sweep:\n  - lengths: [128x128]\n", "exactly one of 'concurrency' or 'request_rate'"),
        ("- 1\n- 2\n", "must be a YAML mapping"),
        ("bogus: 1\nsweep: []\n", "unknown key 'bogus'"),
    ],
)
def test_bad_matrices_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_matrix(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_matrix(tmp_path / "nope.yaml")


def test_command_line_axes_replace_the_matrix_axes() -> None:
    m = load_matrix(
        ROOT / "matrices" / "default.yaml",
        Overrides(concurrency=(3, 64), lengths=((128, 128),), num_prompts=5),
    )
    assert [(c.id, c.num_prompts) for c in m.cases] == [
        ("c3-in128-out128", 5),
        ("c64-in128-out128", 5),
    ]
