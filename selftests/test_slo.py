"""SLO parsing and checking."""

from __future__ import annotations

import pytest

from slogate.errors import ConfigError
from slogate.slo import check, parse_slo_option, per_request_limits


def test_parse_slo_option() -> None:
    assert parse_slo_option("p90_ttft_ms=2000") == ("p90_ttft_ms", 2000.0)
    assert parse_slo_option(" error_rate = 0.01") == ("error_rate", 0.01)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p90_ttft_ms", "expected NAME=VALUE"),
        ("p90_ttft_ms=fast", "'fast' is not a number"),
        ("ttft=100", "unknown SLO 'ttft'"),
        ("error_rate=2", "fraction between 0 and 1"),
        ("p99_tpot_ms=-1", ">= 0"),
        ("=5", "expected NAME=VALUE"),
    ],
)
def test_parse_slo_option_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="--slo") as info:
        parse_slo_option(text)
    assert message in str(info.value)


def test_check_directions_and_messages() -> None:
    summary = {
        "p99_ttft_ms": 2500.0,
        "mean_tpot_ms": 40.0,
        "output_throughput": 900.0,
        "error_rate": 0.0,
    }
    slos = {
        "p99_ttft_ms": 2000.0,
        "mean_tpot_ms": 50.0,
        "output_throughput": 1000.0,
        "error_rate": 0.0,
    }
    breaches = check(summary, slos)
    assert [b.name for b in breaches] == ["p99_ttft_ms", "output_throughput"]
    assert str(breaches[0]) == "p99_ttft_ms = 2,500.00 ms, limit <= 2,000.00 ms"
    assert str(breaches[1]) == "output_throughput = 900.00 tok/s, limit >= 1,000.00 tok/s"


def test_missing_value_is_a_breach() -> None:
    (breach,) = check({"p99_tpot_ms": None}, {"p99_tpot_ms": 10.0})
    assert "no value was measured" in str(breach)


def test_per_request_limits_take_the_loosest_percentile() -> None:
    limits = per_request_limits(
        {"p90_ttft_ms": 1000, "p99_ttft_ms": 2000, "mean_tpot_ms": 50, "error_rate": 0}
    )
    assert limits == {"ttft": 2000, "tpot": 50}
